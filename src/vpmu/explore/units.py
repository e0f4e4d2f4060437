"""Work units: pure, picklable pieces of a search that any process can run (TLC's trail
and distributed fingerprint set).

A frontier state travels as its index path (positions of its actions in the alphabet,
like a SPIN trail) and is rebuilt by replay; the driver keeps only 128-bit digests of state
keys, and each digest has one owner partition. A unit's answer depends on its arguments
only, so a unit can run anywhere, twice, or again after its worker died. Local process
pools and Ray (`vpmu.explore.backends`, `vpmu.explore.ray_backend`) run the same units.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from .compact import Plan, kernel_random, plan
from .judge import Target
from .search import InMemoryExpander, Progress, SearchResult, Successor, random_search
from .space import Bounds

#: A search state as the positions of its actions in `alphabet(cfg, bounds)`.
IndexPath = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unit:
    """Expand the frontier states at `paths` (one owner partition's share of a level)."""

    target: Target
    bounds: Bounds
    paths: tuple[IndexPath, ...]


@dataclass(frozen=True, slots=True)
class RandomJob:
    """Run the random search's restarts `restarts` (one worker's contiguous share)."""

    target: Target
    bounds: Bounds
    seed: int
    restarts: range
    deadline: float | None = None
    #: "kernel": on the compact kernel where it covers the target (vpmu.explore.compact).
    engine: str = "object"


def state_digest(key: Hashable) -> bytes:
    """A 128-bit digest of a state key, stable across processes and runs (Python's own str
    hash is salted per process). Units ship digests, not keys: ~20x less data to the driver,
    with a collision chance (~n^2 / 2^129) far below any state count we reach."""
    return hashlib.blake2b(repr(key).encode(), digest_size=16).digest()


def owner_of(digest: bytes, partitions: int) -> int:
    """The partition that owns the state with this digest."""
    return int.from_bytes(digest[:8], "little") % partitions


def expand_unit(target: Target, bounds: Bounds, paths: Sequence[IndexPath]) -> list[Successor[IndexPath, bytes]]:
    """Every transition from the states at `paths`: each state is rebuilt by replaying its
    path, expanded in memory, and its successors are returned as index paths and digests."""
    memory = InMemoryExpander(target, bounds)
    out: list[Successor[IndexPath, bytes]] = []
    for path in paths:
        node = memory.replay(path)
        for a, (_, key, findings) in enumerate(memory.expand([(node, None)])):
            out.append(Successor(path + (a,), None if key is None else state_digest(key), findings))
    return out


def run_unit(unit: Unit) -> list[Successor[IndexPath, bytes]]:
    """`expand_unit` for a `Unit`: the task a worker process or Ray runs."""
    return expand_unit(unit.target, unit.bounds, unit.paths)


def random_unit(job: RandomJob, progress: Progress | None = None) -> SearchResult:
    """`random_search` for a `RandomJob`: the task a worker process or Ray runs (on the
    compact kernel when the job asks for it and the kernel covers the target)."""
    if job.engine == "kernel":
        p = plan(job.target, job.bounds)
        if isinstance(p, Plan):
            return kernel_random(p, job.seed, job.restarts, job.deadline, progress)
    return random_search(job.target, job.bounds, job.seed, job.restarts, job.deadline, progress)


#: Runs units and returns their successors, one list per unit in the same order. Local
#: processes and Ray both provide one.
UnitRunner = Callable[[list[Unit]], list[list[Successor[IndexPath, bytes]]]]


class ReplayExpander:
    """Expands a whole BFS level as one `Unit` per owner partition, run by `run_units`.

    The units of a level may finish in any order; their successors are sorted by index
    path, the order in which the in-memory expander meets them, so the search's states,
    transitions and findings do not depend on the number of partitions.
    """

    states_per_call: int | None = None

    def __init__(self, target: Target, bounds: Bounds, partitions: int, run_units: UnitRunner) -> None:
        self.target, self.bounds = target, bounds
        self.partitions = partitions
        self.run_units = run_units

    def root(self) -> tuple[IndexPath, bytes]:
        _, key = InMemoryExpander(self.target, self.bounds).root()
        return (), state_digest(key)

    def expand(self, states: Sequence[tuple[IndexPath, bytes]]) -> list[Successor[IndexPath, bytes]]:
        shares: list[list[IndexPath]] = [[] for _ in range(self.partitions)]
        for path, digest in states:
            shares[owner_of(digest, self.partitions)].append(path)
        units = [Unit(self.target, self.bounds, tuple(paths)) for paths in shares if paths]
        return sorted((s for part in self.run_units(units) for s in part), key=lambda s: s.state)
