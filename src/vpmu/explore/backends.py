"""Where searches run: the `Backend` seam, and this machine's processes (`LocalBackend`).

A backend decides *how* work runs (in this process, on a process pool, on a Ray cluster:
`vpmu.explore.ray_backend`); the searches decide *what* is found, identically on every
backend. Backends acquire their workers on first use and release them in `close()`; whoever
creates a backend closes it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Protocol

from .judge import Target
from .search import Expander, InMemoryExpander, Progress, SearchResult, Successor
from .space import Bounds
from .units import IndexPath, RandomJob, ReplayExpander, Unit, random_unit, run_unit


class Backend(Protocol):
    """What `explore()` needs from a place to run searches.

    partitions:  workers to split the random restarts over (and, for a unit expander, the
                 number of owner partitions of the exhaustive search).
    expander:    how the exhaustive search's levels are expanded.
    random_parts: run random-search jobs, results in job order (`progress` may be ignored
                 by backends whose jobs run elsewhere).
    """

    @property
    def partitions(self) -> int: ...

    def expander(self, target: Target, bounds: Bounds) -> Expander[Any, Any]: ...

    def random_parts(self, jobs: Sequence[RandomJob], progress: Progress | None = None) -> list[SearchResult]: ...

    def close(self) -> None:
        """Release the workers (idempotent)."""
        ...


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class LocalBackend:
    """`jobs` worker processes on this machine (spawned on first use, only when jobs > 1).
    With one job everything runs in this process, states kept in memory."""

    def __init__(self, jobs: int) -> None:
        self.partitions = max(1, jobs)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        """The pool, its workers started with Ctrl-C ignored (an ignored signal stays ignored
        across the spawn): the terminal's SIGINT reaches the whole process group, and only
        this process acts on it (`close()` stops the workers). A Ctrl-C in the moment the
        workers start is ignored too."""
        if self._pool is None:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
            try:
                self._pool = ProcessPoolExecutor(max_workers=self.partitions, mp_context=get_context("spawn"))
                # every worker now, not one per submit later: the stdlib's switch for it is private
                self._pool._safe_to_dynamically_spawn_children = False  # type: ignore[attr-defined]
                self._pool.submit(int).result()
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)
        return self._pool

    def _run_units(self, units: list[Unit]) -> list[list[Successor[IndexPath, bytes]]]:
        return list(self._executor().map(run_unit, units))

    def expander(self, target: Target, bounds: Bounds) -> Expander[Any, Any]:
        if self.partitions == 1:
            return InMemoryExpander(target, bounds)
        return ReplayExpander(target, bounds, self.partitions, self._run_units)

    def random_parts(self, jobs: Sequence[RandomJob], progress: Progress | None = None) -> list[SearchResult]:
        if self.partitions == 1:
            return [random_unit(j, progress) for j in jobs]
        return list(self._executor().map(random_unit, jobs))

    def close(self) -> None:
        """Stop the workers at once, busy or not (after Ctrl-C a unit may still be running:
        its result is not wanted). Idempotent."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            workers = list((getattr(pool, "_processes", None) or {}).values())  # no public handle on them
            pool.shutdown(wait=False, cancel_futures=True)
            for w in workers:
                w.terminate()
            for w in workers:
                w.join()
