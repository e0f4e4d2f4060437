"""The searches (TLC's *search*): seeded swarm random search, and one breadth-first driver.

`bfs` owns what a model checker's driver owns: the visited set, the statistics, the
findings and the deadline. How a level is expanded is an `Expander`'s business: the
`InMemoryExpander` here keeps each frontier state as a `Node` and clones it per action
(fast, one process); `vpmu.explore.units.ReplayExpander` ships frontier states as index
paths to worker processes or a Ray cluster, which rebuild them by replay. Either way the
driver admits successors in index-path order, so both give the same states, transitions
and findings.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from vpmu.divergence import Divergence

from .causes import Candidates
from .judge import Finding, Judge, Node, Target
from .space import Bounds, alphabet, counters_in_use, setup_prefix


@dataclass
class Stats:
    """Counters every search reports. For random search `states` counts the states it
    visited (with repeats); for exhaustive search, distinct states.

    How an exhaustive search ended: `exhausted` — a level produced no new state (a fixpoint:
    nothing more is reachable within the other bounds); `depth_limited` — the depth bound
    cut it; `stopped_by_budget` — the time budget did. `frontier_left`: states found but not
    expanded when it stopped.
    """

    states: int = 0
    transitions: int = 0
    depth_reached: int = 0
    sequences: int = 0
    exhausted: bool = False
    elapsed: float = 0.0
    stopped_by_budget: bool = False
    depth_limited: bool = False
    frontier_left: int = 0

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed if self.elapsed > 0 else 0.0

    def __add__(self, other: Stats) -> Stats:
        """Two searches' statistics together: counts and time add up, the deeper depth and
        any stop by the budget or the depth bound win, and an exhausted (exhaustive) search
        stays exhausted."""
        return Stats(
            states=self.states + other.states,
            transitions=self.transitions + other.transitions,
            depth_reached=max(self.depth_reached, other.depth_reached),
            sequences=self.sequences + other.sequences,
            exhausted=self.exhausted or other.exhausted,
            elapsed=self.elapsed + other.elapsed,
            stopped_by_budget=self.stopped_by_budget or other.stopped_by_budget,
            depth_limited=self.depth_limited or other.depth_limited,
            frontier_left=self.frontier_left + other.frontier_left,
        )


@dataclass
class SearchResult:
    mode: str
    stats: Stats
    findings: list[Finding] = field(default_factory=list)


#: Called now and then with the statistics so far and the number of divergence kinds found.
Progress = Callable[[Stats, int], None]

#: Within a level, the BFS driver reports progress about every this many transitions.
PROGRESS_EVERY = 2048


def past_deadline(deadline: float | None) -> bool:
    """Wall-clock time, comparable across processes and (roughly) across cluster nodes."""
    return deadline is not None and time.time() > deadline


# --- random search ---------------------------------------------------------------------------


#: A walk's state (an object engine `Node`, or the compact kernel's state and window).
W = TypeVar("W")


class Walk(Protocol[W]):
    """How the random search steps: where each restart starts, and one letter (by its index
    in the alphabet) from a state: the next state and the path's findings if it diverged
    (None while it did not)."""

    def start(self) -> W: ...

    def step(self, state: W, letter: int) -> tuple[W, list[Finding] | None]: ...


def random_search(
    target: Target,
    bounds: Bounds,
    seed: int,
    restarts: range,
    deadline: float | None = None,
    progress: Progress | None = None,
    walk: Walk[Any] | None = None,
) -> SearchResult:
    """Swarm search over the restarts in `restarts`: restart r draws (from seed and r alone)
    a random subset of the action kinds and a random sequence of up to `depth` actions from
    it. Splitting the range over workers therefore does not change what is found. `walk`
    (default: the object engine's `InMemoryExpander`) steps the paths; the compact kernel brings its
    own, and the same draws give it the same paths."""
    walker: Walk[Any] = walk if walk is not None else InMemoryExpander(target, bounds)
    letter_kinds = [k for k, _ in alphabet(target.cfg, bounds)]
    kinds = sorted(set(letter_kinds))
    stats = Stats()
    found: Candidates[Finding] = Candidates()
    start = time.perf_counter()
    for r in restarts:
        if past_deadline(deadline):
            stats.stopped_by_budget = True
            break
        rng = random.Random(f"{seed}:{r}")
        enabled = [k for k in kinds if rng.random() < 0.5] or [rng.choice(kinds)]
        choices = [i for i, k in enumerate(letter_kinds) if k in enabled]
        state = walker.start()
        for depth in range(1, bounds.depth + 1):
            state, findings = walker.step(state, rng.choice(choices))
            stats.transitions += 1
            stats.states += 1
            stats.depth_reached = max(stats.depth_reached, depth)
            if findings is not None:
                for f in findings:
                    found.add(f)
                break
        stats.sequences += 1
        if progress is not None and stats.sequences % 50 == 0:
            stats.elapsed = time.perf_counter() - start
            progress(stats, found.kinds)
    stats.elapsed = time.perf_counter() - start
    return SearchResult("random", stats, found.findings())


def split_restarts(restarts: int, workers: int) -> list[range]:
    """Contiguous, nearly equal ranges of restart indices, one per worker."""
    per, extra = divmod(restarts, workers)
    out, lo = [], 0
    for w in range(workers):
        hi = lo + per + (1 if w < extra else 0)
        out.append(range(lo, hi))
        lo = hi
    return [r for r in out if r]


def merge_random(parts: Sequence[SearchResult]) -> SearchResult:
    """Combine swarm workers' results in restart order (so the merge is deterministic). The
    parts ran side by side: the elapsed time is the longest part's."""
    stats = sum((p.stats for p in parts), Stats())
    stats.elapsed = max((p.stats.elapsed for p in parts), default=0.0)
    found = Candidates(f for part in parts for f in part.findings)
    return SearchResult("random", stats, found.findings())


# --- breadth-first search ----------------------------------------------------------------------

#: A search state as an expander holds it (a `Node`, or an index path) ...
S = TypeVar("S")
#: ... and its key in the visited set (both machines' state keys, or their digest).
K = TypeVar("K", bound=Hashable)


class Successor(NamedTuple, Generic[S, K]):
    """One judged transition: the child state, its key (None when the transition diverged:
    a diverged path is not expanded further), and the findings it produced."""

    state: S
    key: K | None
    findings: list[Finding]


class Expander(Protocol[S, K]):
    """How the BFS driver's levels are expanded.

    `states_per_call`: frontier states handed to one `expand` call: 1 (the driver then
    checks the deadline after every state) or None (the whole level at once, so that units
    can run side by side; the deadline is checked between levels).
    """

    @property
    def states_per_call(self) -> int | None: ...

    def root(self) -> tuple[S, K]:
        """The state after the set-up prefix, and its key."""
        ...

    def expand(self, states: Sequence[tuple[S, K]]) -> Iterable[Successor[S, K]]:
        """Every transition from `states` (each with its key), in index-path order."""
        ...


class InMemoryExpander:
    """Frontier states kept as `Node`s; each transition clones both machines. The fast
    single-process expander, and the one units use after rebuilding a state; also the
    random search's walk (`Walk`: a node cloned once per restart, stepped in place)."""

    states_per_call: int | None = 1

    def __init__(self, target: Target, bounds: Bounds) -> None:
        self.judge = Judge(target)
        self.cfg = target.cfg
        self.counters = counters_in_use(target.cfg, bounds)
        self.events = bounds.event_map(target.cfg)
        self.prefix = setup_prefix(target.cfg, self.counters, self.events)
        self.letters = [a for _, a in alphabet(target.cfg, bounds)]
        self._start: Node | None = None

    def root(self) -> tuple[Node, Hashable]:
        node, _ = self.judge.root(self.prefix)
        return node, node.key()

    def replay(self, path: Sequence[int]) -> Node:
        """The state after the set-up and the letters at positions `path`, from fresh machines."""
        node, _ = self.judge.root(self.prefix + tuple(self.letters[i] for i in path))
        return node

    def expand(self, states: Sequence[tuple[Node, Hashable]]) -> Iterator[Successor[Node, Hashable]]:
        for node, _ in states:
            for action in self.letters:
                child, divs = self.judge.advance(node, action)
                if divs:
                    yield Successor(child, None, self.findings(child, divs))
                else:
                    yield Successor(child, child.key(), [])

    def findings(self, node: Node, divs: Sequence[Divergence]) -> list[Finding]:
        """The findings of a path that diverged with `divs`."""
        suffix = node.path[len(self.prefix):]
        return [Finding.of(self.cfg, self.counters, suffix, d, self.events) for d in divs]

    def start(self) -> Node:
        """`Walk.start`: a copy of the state after the set-up prefix."""
        if self._start is None:
            self._start = self.root()[0]
        return self._start.copy()

    def step(self, node: Node, letter: int) -> tuple[Node, list[Finding] | None]:
        """`Walk.step`: one letter, in place."""
        node, divs = self.judge.advance(node, self.letters[letter], copy=False)
        return node, (self.findings(node, divs) if divs else None)


class Reporter:
    """An exhaustive search's progress reports (`bfs`, and the compiled kernel's
    `compiled_bfs`): at the end of every level, and within one every PROGRESS_EVERY
    transitions (`due`); its clock starts with it."""

    def __init__(self, stats: Stats, found: Candidates[Finding], progress: Progress | None) -> None:
        self.stats, self.found, self.progress = stats, found, progress
        self.start = time.perf_counter()
        self.reported = 0  # transitions at the last report

    @property
    def due(self) -> bool:
        return self.stats.transitions - self.reported >= PROGRESS_EVERY

    def __call__(self) -> None:
        self.reported = self.stats.transitions
        if self.progress is not None:
            self.stats.elapsed = time.perf_counter() - self.start
            self.progress(self.stats, self.found.kinds)


def bfs(
    expander: Expander[S, K],
    depth: int,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Level-synchronous breadth-first search over distinct states up to `depth`.

    A state is expanded once (its key enters the visited set when first met); every
    transition is judged, so a divergence reached by a second path to a known state is
    still found. A path that diverged is not expanded further: BFS already made it a
    shortest witness of its kind. The search is exhausted only when a level produces no new
    state (a fixpoint); when the depth bound ends it first it is depth-limited, with the
    last level's new states left unexpanded. A level cut short by the deadline does not
    count as reached.
    """
    stats = Stats(states=1)
    found: Candidates[Finding] = Candidates()
    report = Reporter(stats, found, progress)
    root = expander.root()
    visited = {root[1]}
    frontier = [root]
    for level in range(1, depth + 1):
        per_call = expander.states_per_call or len(frontier)
        calls = [frontier[i:i + per_call] for i in range(0, len(frontier), per_call)]
        next_frontier: list[tuple[S, K]] = []
        expanded = 0
        for n, states in enumerate(calls):
            if past_deadline(deadline):
                stats.stopped_by_budget = True
                break
            for child, key, findings in expander.expand(states):
                stats.transitions += 1
                for f in findings:
                    found.add(f)
                if key is None or key in visited:
                    continue
                visited.add(key)
                stats.states += 1
                next_frontier.append((child, key))
            expanded += len(states)
            if n + 1 < len(calls) and report.due:
                report()
        if stats.stopped_by_budget:
            stats.frontier_left = len(frontier) - expanded + len(next_frontier)
            break
        stats.depth_reached = level
        report()
        frontier = next_frontier
        if not frontier:
            stats.exhausted = True
            break
    else:
        stats.depth_limited = True
        stats.frontier_left = len(frontier)
    stats.elapsed = time.perf_counter() - report.start
    return SearchResult("exhaustive", stats, found.findings())
