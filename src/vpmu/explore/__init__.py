"""The explorer: search guest-action interleavings for divergences, shrink what it finds.

Laid out like a model checker (TLC's model / search / trail split):

* `space`    — the model: `Bounds` (checked once, by `Bounds.fit`), the set-up prefix and
               the action alphabet;
* `judge`    — `Target`, `Node`, `Finding` and the `Judge` that runs and judges a path;
* `search`   — `random_search` (seeded swarm) and the one breadth-first driver `bfs`,
               which expands levels through an `Expander`;
* `units`    — index paths, state digests, owner partitions and picklable work units;
* `backends` — where work runs (`LocalBackend`; `ray_backend.RayBackend` for a cluster);
* `shrink`   — minimising each counterexample;
* `causes`   — candidates, cause signatures and one shrunk counterexample per cause;
* `trail`    — saving counterexamples as scenario files that `vpmu run` replays.

`explore()` runs the chosen searches and shrinks one counterexample per cause.
docs/explorer.md and docs/scaling.md describe the whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vpmu.actions import action_to_dict
from vpmu.errors import VpmuError
from vpmu.pmc_map import counter_name

from .backends import Backend, LocalBackend
from .causes import MAX_COUNTEREXAMPLES, Candidates, select_causes, signature
from .compact import Plan, kernel_search
from .compact.machine import OBSERVATION_FULL_WHY, ObservationFull
from .fastguard import guarded_plan
from .judge import Finding, Judge, Node, Target
from .search import (
    Expander,
    InMemoryExpander,
    Progress,
    SearchResult,
    Stats,
    Successor,
    bfs,
    merge_random,
    past_deadline,
    random_search,
    split_restarts,
)
from .shrink import first_of_kind, shrink, shrink_finding
from .space import (
    ACTION_KINDS,
    Bounds,
    CountedEvent,
    EventMap,
    alphabet,
    counters_in_use,
    default_width,
    kind_of,
    setup_prefix,
    touches,
)
from .units import (
    IndexPath,
    RandomJob,
    ReplayExpander,
    Unit,
    UnitRunner,
    expand_unit,
    owner_of,
    random_unit,
    run_unit,
    state_digest,
)

__all__ = [
    "ACTION_KINDS", "ENGINES", "MAX_COUNTEREXAMPLES", "MODES", "Backend", "Bounds", "Candidates", "CountedEvent",
    "EventMap", "Expander", "ExploreReport", "Finding", "InMemoryExpander", "IndexPath", "Judge", "LocalBackend",
    "Node", "Progress", "RandomJob", "ReplayExpander", "SearchResult", "Stats", "Successor", "Target", "Unit",
    "UnitRunner", "alphabet", "bfs", "counters_in_use", "default_width", "expand_unit", "explore",
    "first_of_kind", "kind_of", "merge_random", "owner_of", "past_deadline", "random_search", "random_unit",
    "run_unit", "select_causes", "setup_prefix", "shrink", "shrink_finding", "signature", "split_restarts",
    "state_digest", "touches",
]

MODES = ("random", "exhaustive", "auto")
#: Exhaustive-search engines (`--engine`): the compact kernel where it covers the
#: configuration (`vpmu.explore.compact`), else the object models; or the object models.
ENGINES = ("kernel", "object")


@dataclass
class ExploreReport:
    """What `vpmu explore` prints: the bounds, the searches' statistics, and the shrunk
    counterexamples (one per cause, at most the cap; `causes_found` counts every cause)."""

    target: Target
    bounds: Bounds
    mode: str
    seed: int
    searches: list[SearchResult]
    counterexamples: list[Finding]
    causes_found: int = 0
    #: The engine the searches ran on ("kernel" or "object"), and when the kernel was asked
    #: for but does not cover the configuration, why (one line).
    engine: str = "object"
    engine_note: str = ""
    #: The exhaustive search on the kernel: compiled (True) or in pure Python (False, the
    #: reason in `kernel_note`); None when it did not run on the kernel.
    kernel_compiled: bool | None = None
    kernel_note: str = ""

    @property
    def untolerated(self) -> bool:
        return bool(self.counterexamples)

    @property
    def stats(self) -> Stats:
        """The searches' statistics added up."""
        return sum((s.stats for s in self.searches), Stats())

    def to_dict(self, files: Sequence[str | None]) -> dict[str, Any]:
        """The `vpmu explore --json` object (docs/json.md); `files[i]` is counterexample i's
        scenario file (`vpmu.explore.trail`), None when not saved."""
        t = self.target
        total = self.stats
        return {
            "mode": self.mode,
            "kvm": t.era,
            "design": t.design,
            "cpu": t.cfg.to_dict(),
            "seed": self.seed,
            "engine": self.engine,
            "engine_note": self.engine_note or None,
            "kernel_compiled": self.kernel_compiled,
            "kernel_note": self.kernel_note or None,
            "bounds": self.bounds.to_dict(),
            "options": t.checker_options.to_dict(),
            "states": total.states,
            "transitions": total.transitions,
            "states_per_second": round(total.states_per_second, 1),
            "elapsed_seconds": round(total.elapsed, 3),
            "depth_reached": total.depth_reached,
            "exhausted": total.exhausted,
            "depth_limited": total.depth_limited,
            "frontier_left": total.frontier_left,
            "stopped_by_budget": total.stopped_by_budget,
            "searches": [
                {"mode": s.mode, "states": s.stats.states, "transitions": s.stats.transitions,
                 "sequences": s.stats.sequences, "depth_reached": s.stats.depth_reached,
                 "exhausted": s.stats.exhausted, "depth_limited": s.stats.depth_limited,
                 "frontier_left": s.stats.frontier_left, "elapsed_seconds": round(s.stats.elapsed, 3),
                 "kinds_found": sorted({f"{f.kind}/{f.visibility}" for f in s.findings})}
                for s in self.searches
            ],
            "causes_found": self.causes_found,
            "counterexamples": [
                {"kind": f.kind, "visibility": f.visibility, "step": f.step, "message": f.detail,
                 "counter": f.counter, "signature": signature(f), "assumptions": list(f.assumptions),
                 "counters": [counter_name(c) for c in f.counters],
                 "setup_steps": len(setup_prefix(t.cfg, f.counters, f.events)),
                 "steps": [action_to_dict(a) for a in f.actions],
                 "scenario_file": path}
                for f, path in zip(self.counterexamples, files, strict=True)
            ],
        }


def explore(
    target: Target,
    bounds: Bounds,
    mode: str = "auto",
    seed: int = 0,
    jobs: int = 1,
    restarts: int = 2000,
    time_budget: float | None = None,
    progress: Progress | None = None,
    backend: Backend | None = None,
    max_counterexamples: int = MAX_COUNTEREXAMPLES,
    engine: str = "kernel",
    announce: Callable[[str], None] | None = None,
) -> ExploreReport:
    """Check the request, run the chosen searches, then shrink one counterexample per
    cause (at most `max_counterexamples`, `vpmu.explore.causes`).

    mode "random", "exhaustive", or "auto" (random first, then exhaustive). The bounds are
    checked against `target.cfg`, whose counters are narrowed to `bounds.width`. `backend`
    (default: a `LocalBackend(jobs)` created and closed here) is first used after the
    checks, so bad input costs no worker, and the time budget starts once it is connected
    (a Ray start-up does not count). Restart r of the random search depends on
    (seed, r) only and the exhaustive search's numbers do not depend on the expander, so
    the result depends on (seed, bounds, restarts), not on `jobs` or the backend (unless
    the time budget cuts a search short).

    engine "kernel" runs the searches on the compact kernel when it covers the configuration
    (the exhaustive search in this process, whatever `jobs`; the random restarts in the
    workers), else on the object models with the reason in `ExploreReport.engine_note`;
    "object" always uses the object models. `announce` hears a one-line message before a long
    pause that is not searching (loading, or the first time compiling, the compiled kernel).
    """
    if engine not in ENGINES:
        raise VpmuError(f"unknown --engine {engine!r} (known: {', '.join(ENGINES)})")
    if mode not in MODES:
        raise VpmuError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    if restarts < 1:
        raise VpmuError(f"--restarts must be >= 1, not {restarts}")
    if max_counterexamples < 1:
        raise VpmuError(f"--max-counterexamples must be >= 1, not {max_counterexamples}")
    target = replace(target, cfg=bounds.fit(target.cfg), world=replace(target.world, skid=bounds.skid))
    kernel: Plan | str | None = None
    if engine == "kernel":
        kernel = guarded_plan(target, bounds)
    note = kernel if isinstance(kernel, str) else ""
    used_engine = "kernel" if isinstance(kernel, Plan) else "object"
    owned = backend is None
    run_on = LocalBackend(jobs) if backend is None else backend
    kernel_compiled: bool | None = None
    kernel_note = ""
    searches: list[SearchResult] = []
    try:
        partitions = run_on.partitions  # a Ray backend joins or starts here, before the clock runs
        deadline = None if time_budget is None else time.time() + time_budget
        if mode in ("random", "auto"):
            parts = split_restarts(restarts, partitions)
            searches.append(merge_random(run_on.random_parts(
                [RandomJob(target, bounds, seed, r, deadline, used_engine) for r in parts], progress)))
            if progress is not None:
                progress(searches[-1].stats, len(searches[-1].findings))
        if mode in ("exhaustive", "auto") and not past_deadline(deadline):
            done = None
            if isinstance(kernel, Plan):
                try:
                    done, kernel_note = kernel_search(kernel, bounds.depth, deadline, progress, announce)
                    kernel_compiled = not isinstance(kernel.compiled, str)
                except ObservationFull:  # a step the kernel cannot show: the object models can
                    used_engine, note = "object", OBSERVATION_FULL_WHY
            if done is None:
                done = bfs(run_on.expander(target, bounds), bounds.depth, deadline, progress)
            searches.append(done)
    finally:
        if owned:
            run_on.close()
    candidates: Candidates[Finding] = Candidates(f for search in searches for f in search.findings)
    chosen, causes = select_causes(target, candidates.findings(), max_counterexamples, deadline)
    return ExploreReport(target, bounds, mode, seed, searches, chosen, causes, used_engine, note,
                         kernel_compiled, kernel_note)
