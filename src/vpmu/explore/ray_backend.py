"""Run the explorer's work units on a Ray cluster (`vpmu explore --backend ray`).

The units are the same pure functions the local backend runs (`vpmu.explore.units`):
`random_unit` for the swarm workers of random search, and `run_unit` for the per-owner
frontier units of the exhaustive search (`ReplayExpander`), whose states are partitioned by
a stable state hash. Units are Ray tasks with retries, so a worker that dies loses nothing:
its unit runs again and, being a pure function of its arguments, returns the same answer.

Ray is joined or started on first use (so bad input costs no start-up) or by `start()`.
The driver never leaves work or processes behind: `close()` shuts down a Ray instance
this backend started, with every unit still running on it (the CLI calls it in a
`finally`, so Ctrl-C cleans up too), and a Ctrl-C during start-up is held until Ray has
recorded what it started. Ray's own start-up output (log lines such as its token
authentication notice, anything its native code writes to stderr) is silenced, so that
`--json` prints nothing but the result (`quiet`). docs/scaling.md has the design,
measurements and how to run on a multi-node cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vpmu.errors import VpmuError

from .judge import Target
from .search import Expander, Progress, SearchResult, Successor
from .space import Bounds
from .units import IndexPath, RandomJob, ReplayExpander, Unit, random_unit, run_unit

#: How often a unit is retried when its worker dies (a Python exception in a unit is a
#: bug, not a transient failure: it is not retried).
MAX_RETRIES = 3


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise VpmuError("the Ray backend needs the extra: pip install 'vpmu[ray]'") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a `host:port` nobody listens on: Ray's own connect loop retries for
    minutes in native code, where even Ctrl-C does not reach it."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # "auto", a ray:// client address...: left to Ray
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as e:
        raise VpmuError(f"cannot join the Ray cluster at {address}: {e.strerror or e}") from None


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block is done, then raise KeyboardInterrupt.

    An interrupt that lands inside ray.init, before Ray has recorded the node it is
    starting, cannot be cleaned up by ray.shutdown(): its agent processes outlive the
    driver. Deferring it lets init finish, so that close() can shut everything down.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    if pending:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _silenced(quiet: bool) -> Iterator[None]:
    """With `quiet`, what Ray prints while the block runs goes nowhere: its Python log records
    (it logs through the standard logging module, whose last-resort handler writes warnings
    to stderr) and whatever its native code writes to file descriptor 2. A failure still
    reaches the caller as the exception ray.init raises (a one-line VpmuError)."""
    if not quiet:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        logging.disable(previous)


class RayBackend:
    """A `vpmu.explore.backends.Backend` on Ray: joins the cluster at `address`, or starts a
    local Ray instance with `num_cpus`, on first use.

    Without an address a *new* local instance is started (address "local"), even when
    RAY_ADDRESS is set or a `ray start` cluster runs on this machine: joining a cluster is
    always explicit. When Ray is already initialized in this process, that connection is
    used (and left alone by `close()`). The number of partitions is the cluster's CPU count.
    `unit_fn` and `random_fn` are what the tasks run (default `run_unit`, `random_unit`).
    `quiet` (the default) silences Ray's own output while it starts and shuts down: its
    notices are not vpmu's, and `--json` promises nothing but the result.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, *,
                 unit_fn: Callable[[Unit], list[Successor[IndexPath, bytes]]] = run_unit,
                 random_fn: Callable[[RandomJob], SearchResult] = random_unit, quiet: bool = True) -> None:
        self._ray = _import_ray()
        self._address, self._num_cpus = address, num_cpus
        self._quiet = quiet
        self._fns = (unit_fn, random_fn)
        #: the Ray tasks (expand, random) once started, and the cluster's CPU count
        self._tasks: tuple[Any, Any] | None = None
        self._partitions = 1
        #: this backend called ray.init: close() shuts down (a started local instance) or
        #: disconnects (a joined cluster, which keeps running)
        self._connected = False

    def start(self) -> None:
        """Join or start Ray now (the first search does it otherwise). Idempotent."""
        if self._tasks is not None:
            return
        ray, address = self._ray, self._address
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            self._connected = True
            try:
                if address is not None:
                    _check_reachable(address)
                with _sigint_deferred(), _silenced(self._quiet):
                    ray.init(address=address or "local", num_cpus=None if address else self._num_cpus, **kwargs)
            except BaseException as e:
                # interrupted or failed half-way: leave no half-started instance behind
                with contextlib.suppress(Exception):
                    self.close()
                if isinstance(e, Exception) and not isinstance(e, VpmuError):
                    what = f"join the Ray cluster at {address}" if address else "start a local Ray instance"
                    raise VpmuError(f"cannot {what}: {e}") from e
                raise
        self._partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))
        unit_fn, random_fn = self._fns
        self._tasks = (self.remote(unit_fn), self.remote(random_fn))

    @property
    def partitions(self) -> int:
        self.start()
        return self._partitions

    def remote(self, fn: Callable[..., Any]) -> Any:
        """`fn` as a Ray task, the way every unit is sent: retried when its worker dies."""
        return self._ray.remote(max_retries=MAX_RETRIES)(fn)

    def _started_tasks(self) -> tuple[Any, Any]:
        self.start()
        assert self._tasks is not None
        return self._tasks

    def _gather(self, refs: list[Any]) -> list[Any]:
        """Results in submission order.

        Units in flight when the driver is interrupted are not cancelled one by one
        (`ray.cancel(force=True)` racing a finishing task aborted the driver with Ray 2.60):
        `close()` ends them with the instance, and a joined cluster kills a driver's
        tasks when the driver disconnects or dies.
        """
        result: list[Any] = self._ray.get(refs)
        return result

    def _run_units(self, units: list[Unit]) -> list[list[Successor[IndexPath, bytes]]]:
        expand, _ = self._started_tasks()
        return self._gather([expand.remote(u) for u in units])

    def expander(self, target: Target, bounds: Bounds) -> Expander[Any, Any]:
        return ReplayExpander(target, bounds, self.partitions, self._run_units)

    def random_parts(self, jobs: Sequence[RandomJob], progress: Progress | None = None) -> list[SearchResult]:
        _, random_task = self._started_tasks()
        return self._gather([random_task.remote(j) for j in jobs])

    def close(self) -> None:
        """Shut down the local Ray instance this backend started, or disconnect from the
        cluster it joined (which keeps running). A Ray connection the caller made before
        creating the backend is left alone. Idempotent."""
        if self._connected:
            self._connected = False
            self._tasks = None
            with _silenced(self._quiet):
                self._ray.shutdown()
