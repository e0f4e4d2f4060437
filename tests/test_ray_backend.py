"""The Ray backend gives the same answers as the local one, survives a dying worker, and
leaves nothing running (issue: exploring beyond one machine on Ray).

One local Ray instance with 2 CPUs serves the whole module (starting Ray takes seconds).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip(
    "ray", reason="the Ray backend tests need the ray extra: pip install -e '.[test,ray]'")

from processes import descendants, interrupt_running_search, wait_gone  # noqa: E402
from vpmu.config import preset  # noqa: E402
from vpmu.explore import (  # noqa: E402
    Bounds,
    ExploreReport,
    Target,
    explore,
    random_unit,
    run_unit,
)
from vpmu.explore.ray_backend import RayBackend  # noqa: E402

CFG = preset("intel-v2").with_width(4)
TARGET = Target(CFG, "6.6")
SMALL = Bounds(depth=3)
RESTARTS = 120
#: the process checks read /proc
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="module")
def backend() -> Iterator[RayBackend]:
    if ray.is_initialized():  # pragma: no cover - another module left Ray running
        ray.shutdown()
    b = RayBackend(num_cpus=2)
    b.start()
    yield b
    b.close()


def searches(report: ExploreReport) -> list[tuple[Any, ...]]:
    """What must not depend on the backend: every count and every raw finding."""
    return [(s.mode, s.stats.states, s.stats.transitions, s.stats.sequences, s.stats.depth_reached,
             s.stats.exhausted, s.stats.depth_limited, s.stats.frontier_left,
             [(f.kind, f.visibility, f.suffix, f.step) for f in s.findings])
            for s in report.searches]


def shrunk(report: ExploreReport) -> list[tuple[Any, ...]]:
    return [(f.kind, f.visibility, f.actions, f.step) for f in report.counterexamples]


@pytest.fixture(scope="module")
def local_reports() -> dict[tuple[str, int], ExploreReport]:
    out = {}
    for jobs in (1, 2):
        for mode in ("exhaustive", "random"):
            out[mode, jobs] = explore(TARGET, SMALL, mode=mode, seed=3, jobs=jobs, restarts=RESTARTS)
    return out


def test_backend_uses_the_cluster_cpus(backend: RayBackend) -> None:
    assert backend.partitions == 2
    assert int(ray.cluster_resources()["CPU"]) == 2


@pytest.mark.parametrize("mode", ["exhaustive", "random"])
def test_ray_equals_local(backend: RayBackend, local_reports: dict[tuple[str, int], ExploreReport],
                          mode: str) -> None:
    # exhaustive: Ray's partitioned units run the object engine; the local runs use the kernel
    on_ray = explore(TARGET, SMALL, mode=mode, seed=3, restarts=RESTARTS, backend=backend,
                     engine="object" if mode == "exhaustive" else "kernel")
    one, two = local_reports[mode, 1], local_reports[mode, 2]
    assert searches(on_ray) == searches(one) == searches(two)
    assert shrunk(on_ray) == shrunk(one) == shrunk(two)
    assert on_ray.counterexamples, "nothing found: the comparison is too weak"
    if mode == "exhaustive":
        assert on_ray.searches[0].stats.depth_limited
        # the seed bug is among them, shrunk to set-up, WRMSR PMC0=-2, batch of two
        lost = next(f for f in on_ray.counterexamples if (f.kind, f.visibility) == ("lost-overflow", "guest"))
        assert len(lost.suffix) == 2


def _dies_once(fn: Callable[[Any], Any], marker: str) -> Callable[[Any], Any]:
    """`fn`, except that the first call anywhere (the marker file is created atomically)
    kills its own worker process, as an OOM kill or a lost node would."""

    def unit(arg: Any) -> Any:
        import os

        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return fn(arg)
        os._exit(1)

    return unit


@pytest.mark.parametrize("mode", ["exhaustive", "random"])
def test_a_unit_whose_worker_dies_is_retried(
    backend: RayBackend, local_reports: dict[tuple[str, int], ExploreReport], mode: str, tmp_path: Path
) -> None:
    marker = str(tmp_path / "died")
    # joins the running instance (`backend`'s); only the task function differs
    if mode == "exhaustive":
        dying = RayBackend(unit_fn=_dies_once(run_unit, marker))
    else:
        dying = RayBackend(random_fn=_dies_once(random_unit, marker))
    # the object engine: the kernel's exhaustive search runs in this process, not in Ray units
    report = explore(TARGET, SMALL, mode=mode, seed=3, restarts=RESTARTS, backend=dying,
                     engine="object" if mode == "exhaustive" else "kernel")
    assert os.path.exists(marker), "no worker died: the test tested nothing"
    assert searches(report) == searches(local_reports[mode, 1])
    assert shrunk(report) == shrunk(local_reports[mode, 1])


def test_time_budget_stops_a_ray_search_cleanly(backend: RayBackend) -> None:
    report = explore(TARGET, Bounds(depth=12), mode="exhaustive", time_budget=0.3, backend=backend)
    stats = report.searches[0].stats
    assert stats.stopped_by_budget and not stats.exhausted and stats.depth_reached < 12


def test_progress_is_reported_per_level(backend: RayBackend) -> None:
    seen: list[tuple[int, int]] = []
    explore(TARGET, SMALL, mode="exhaustive", backend=backend, engine="object",  # Ray's units, not the kernel
            progress=lambda stats, found: seen.append((stats.depth_reached, stats.states)))
    assert [d for d, _ in seen] == [1, 2, 3]
    assert seen == sorted(seen)


def test_a_joined_instance_is_left_running(backend: RayBackend) -> None:
    joined = RayBackend()  # Ray is already initialized: this backend did not start it
    assert joined.partitions == 2
    joined.close()
    assert ray.is_initialized()
    assert explore(TARGET, Bounds(depth=1), mode="exhaustive", backend=backend).searches[0].stats.depth_limited


@linux_only
def test_close_shuts_down_the_instance_it_started(backend: RayBackend) -> None:
    """Last test of the module: it closes the shared backend."""
    ours = {pid: cmd for pid, cmd in descendants(os.getpid()).items() if "ray" in cmd}
    assert any("raylet" in cmd for cmd in ours.values())
    backend.close()
    assert not ray.is_initialized()
    assert wait_gone(ours) == {}
    backend.close()  # idempotent


@linux_only
def test_interrupted_cli_leaves_no_process_behind(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while units run:
    exit 130, and the Ray instance the command started is gone with everything it ran."""
    code, err, seen = interrupt_running_search(tmp_path, [
        "explore", "--backend", "ray", "--jobs", "2", "--kvm", "6.8", "--mode", "exhaustive", "--depth", "9",
        "--engine", "object",  # the object engine runs its levels as Ray units (the kernel in-process)
        "--no-save"], "ray::run_unit")
    assert code == 130, err
    assert wait_gone(seen, timeout=120) == {}


def test_json_output_is_the_result_alone(tmp_path: Path) -> None:
    """`--backend ray --json`: stdout is one JSON object and stderr stays empty (Ray's start-up
    notices, such as its token-authentication warning, are silenced)."""
    import json
    import subprocess

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    env.pop("RAY_AUTH_MODE", None)  # Ray's default: it announces token authentication on start-up
    r = subprocess.run([sys.executable, "-m", "vpmu.cli", "explore", "--backend", "ray", "--json", "--depth", "1",
                        "--restarts", "4", "--no-save"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode in (0, 1) and r.stderr == ""
    assert json.loads(r.stdout)["bounds"]["depth"] == 1
