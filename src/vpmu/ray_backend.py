"""Run the explorer's work units on a Ray cluster (`vpmu explore --backend ray`).

The units are the same pure functions the local backend runs (vpmu.explore): swarm
workers for random search, and per-owner frontier units for the exhaustive search, whose
frontier and visited set are partitioned by a stable state hash. Units are Ray tasks with
retries, so a worker that dies loses nothing: its unit runs again and, being a pure
function of its arguments, returns the same answer.
"""

from __future__ import annotations

from typing import Any

from vpmu.errors import VpmuError
from vpmu.explore import (
    Backend,
    Bounds,
    Expansion,
    IndexPath,
    SearchResult,
    Target,
    UnitRunner,
    _random_worker,
    _run_unit,
)

#: How often a unit is retried when its worker dies.
MAX_RETRIES = 3


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise VpmuError("the Ray backend needs the extra: pip install 'vpmu[ray]'") from None
    return ray


class RayBackend(Backend):
    """Joins the cluster at `address`, or starts a local Ray instance with `num_cpus`."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        ray = _import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address is not None:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=num_cpus, **kwargs)
                self._started = True
        self.partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._random = ray.remote(max_retries=MAX_RETRIES)(_random_worker)
        self._expand = ray.remote(max_retries=MAX_RETRIES)(_run_unit)

    def random_parts(self, args: list[tuple[Target, Bounds, int, int, int, float | None]]) -> list[SearchResult]:
        result: list[SearchResult] = self._ray.get([self._random.remote(a) for a in args])
        return result

    def unit_runner(self) -> UnitRunner:
        def run(units: list[tuple[Target, Bounds, list[IndexPath]]]) -> list[list[Expansion]]:
            result: list[list[Expansion]] = self._ray.get([self._expand.remote(u) for u in units])
            return result

        return run

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False
