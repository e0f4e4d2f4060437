"""Where searches run: the `Backend` seam, and this machine's processes (`LocalBackend`).

A backend decides *how* work runs (in this process, on a process pool, on a Ray cluster:
`vpmu.explore.ray_backend`); the searches decide *what* is found, identically on every
backend. Backends acquire their workers on first use and release them in `close()`; whoever
creates a backend closes it.
"""

from __future__ import annotations

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


class LocalBackend:
    """`jobs` worker processes on this machine (spawned on first use, only when jobs > 1).
    With one job everything runs in this process, states kept in memory."""

    def __init__(self, jobs: int) -> None:
        self.partitions = max(1, jobs)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.partitions, mp_context=get_context("spawn"))
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
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
