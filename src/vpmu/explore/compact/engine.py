"""The compact engine: which configurations the kernel covers, and its breadth-first search.

`plan(target, bounds)` builds the `Kernel` and `Monitor` for a configuration or says, in one
line, why the kernel does not cover it (the explorer then runs the object engine and prints
that line). `kernel_bfs` runs the one BFS driver (`vpmu.explore.search.bfs`: the same levels, admission
order, statistics and end conditions as the object engine) with a `KernelExpander` over
compact states: the state is the visited key, a transition is one `Kernel.step` and one
`Monitor.advance`. A path that diverges is replayed on the object models
(`Judge.root`), so its findings, and everything shrunk and saved from them, are exactly the
object engine's. `kernel_search` is what the explorer runs: the same search compiled
(vpmu.explore.compact.compiled) where numba compiles the design's fast form, else `kernel_bfs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from vpmu.config import FIXED_BASE
from vpmu.designs import fast_form, resolve_design
from vpmu.eras import get_era
from vpmu.events import EVENTSEL_ENABLE
from vpmu.host import HOST_COUNTER_WIDTH
from vpmu.world import WorldOptions

from ..causes import Candidates
from ..judge import Finding, Judge, Target
from ..search import Progress, SearchResult, Successor, bfs, random_search
from ..space import Bounds, CountedEvent, alphabet, counters_in_use, setup_prefix
from .kjit import CompiledStep
from .layout import K_MASKED, K_STATUS, R_MASKED, R_STATUS
from .machine import Kernel
from .monitor import Monitor, Shown, Window

#: The LVTPC values the covered configurations show: a Linux guest's, and it masked.
_LVTPC = (0x400, 0x10400)


class Plan:
    """A covered configuration: its kernel, monitor, alphabet and root."""

    def __init__(self, target: Target, bounds: Bounds, kernel: Kernel, monitor: Monitor,
                 letters: list[tuple[int, ...]], kinds: list[str], root: tuple[int, ...]) -> None:
        self.target, self.bounds, self.kernel, self.monitor = target, bounds, kernel, monitor
        self.letters, self.kinds, self.root = letters, kinds, root
        self.counters = counters_in_use(target.cfg, bounds)
        self.events = bounds.event_map(target.cfg)
        self.prefix = setup_prefix(target.cfg, self.counters, self.events)
        #: the compiled step (`compiled_search`), or why there is none; None: not built yet
        self.compiled: CompiledStep | str | None = None

    def shown(self, state: tuple[int, ...]) -> Shown:
        ref, kvm = self.kernel.counters(state)
        return (ref, kvm, state[R_STATUS], state[K_STATUS], _LVTPC[state[R_MASKED]], _LVTPC[state[K_MASKED]])


def plan(target: Target, bounds: Bounds) -> Plan | str:
    """The kernel for `target` within `bounds`, or why it does not cover them (one line)."""
    cfg = target.cfg
    if not cfg.is_intel or not cfg.has_global_msrs:
        return "the compact kernel covers Intel PMUs with global MSRs (v2+), not this CPU"
    if any(CountedEvent.parse(e) != CountedEvent("instructions") for e in bounds.events):
        return "the compact kernel covers counters of instructions at every CPL only"
    era = get_era(target.era)
    design = resolve_design(target.design, era.default_design)
    fast = fast_form(design)
    if isinstance(fast, str):
        return f"{fast} (docs/designs.md)"
    if type(design.backing).__name__ != "CounterBacking" or design.writes_sample_period:
        return f"design {design.name!r} does not count with host perf events"
    w = target.world
    if w != WorldOptions(skid=w.skid) or w.host_counter_width != HOST_COUNTER_WIDTH:
        return "the compact kernel covers the default world options only"
    actions = alphabet(cfg, bounds)
    mask = cfg.gp_mask
    if bounds.fixed and cfg.fixed_mask != mask:
        return "the compact kernel covers GP and fixed counters of one width only"
    used = counters_in_use(cfg, bounds)
    ref, world = target.machines()
    for a in setup_prefix(cfg, used, bounds.event_map(cfg)):
        ref.step(a)
        world.step(a)
    pmcs = [world.kvm.pmc(i) for i in used]
    if any(pmc is None or pmc.perf_event is None for pmc in pmcs):
        return "the set-up leaves a counter in use without a perf event"
    hw = tuple(not era.hw_event_available or world.kvm.hw_event_available(pmc) for pmc in pmcs if pmc)
    sel_on = tuple(pmc.eventsel | (EVENTSEL_ENABLE if pmc.idx < FIXED_BASE else 0) for pmc in pmcs if pmc)
    current = tuple(pmc.current_config for pmc in pmcs if pmc)
    config = tuple(pmc.perf_event.config for pmc in pmcs if pmc and pmc.perf_event)
    valid = world.kvm.valid_pmcs()
    kernel = Kernel(cfg, era, fast, len(used), mask, hw, sel_on, target.world.skid,
                    sum(1 << pmc.idx for pmc in valid), sum(1 << pmc.idx for pmc in valid if pmc.idx not in used),
                    used, current, config, world.kvm.pmu.fixed_ctr_ctrl)
    letters = [kernel.letter(a) for _, a in actions]
    uncovered = sorted({k for (k, _), lt in zip(actions, letters, strict=True) if lt is None})
    if uncovered:
        return f"the compact kernel does not cover the action kinds {', '.join(uncovered)}"
    crowded = sorted({k for (k, _), lt in zip(actions, letters, strict=True) if lt and not kernel.row_holds(lt)})
    if crowded:
        return (f"a step of {', '.join(crowded)} may show more signals or PMIs than the compact kernel's "
                "observation row holds")
    root = kernel.encode(ref, world)
    if root is None:
        return "the set-up state is outside the compact kernel's state"
    layout = [cfg.pmc_indices.index(p) for p in used]
    monitor = Monitor(cfg, target.checker_options, [a for _, a in actions], layout)
    return Plan(target, bounds, kernel, monitor, [lt for lt in letters if lt is not None],
                [k for k, _ in actions], root)


#: A kernel search state: the compact state, its monitor window, and the letters that led to it.
KState = tuple[tuple[int, ...], Window, tuple[int, ...]]


class KernelExpander:
    """The kernel as an `Expander` of the one BFS driver (`vpmu.explore.search.bfs`): the
    compact state is the visited key; a transition is one `Kernel.step` and one
    `Monitor.advance`. The driver admits findings through its `Candidates`; a mirror of it
    here (fed the same findings in the same order) says which diverged paths are worth
    replaying on the object models, the only way a finding is built."""

    states_per_call: int | None = 1

    def __init__(self, p: Plan) -> None:
        self.plan = p
        self.judge = Judge(p.target)
        self.mirror: Candidates[Finding] = Candidates()

    def root(self) -> tuple[KState, tuple[int, ...]]:
        p = self.plan
        return (p.root, p.monitor.start(p.shown(p.root)), ()), p.root

    def expand(self, states: Sequence[tuple[KState, tuple[int, ...]]]) -> Iterator[Successor[KState, tuple[int, ...]]]:
        p = self.plan
        step, advance, shown = p.kernel.step, p.monitor.advance, p.shown
        for (state, window, path), _ in states:
            for li, letter in enumerate(p.letters):
                child, obs = step(state, letter)
                verdict, win = advance(window, li, obs, shown(child))
                to = path + (li,)
                if verdict:
                    yield Successor((child, win, to), None, self.findings(to, verdict))
                else:
                    yield Successor((child, win, to), child, [])

    def findings(self, path: tuple[int, ...], verdict: tuple[tuple[str, str, str | None], ...]) -> list[Finding]:
        """Findings of a diverged path, built by replaying it on the object models, when a
        candidate of its coarse key would still be kept."""
        p = self.plan
        shape = frozenset(p.kinds[i] for i in path)
        if not any(self.mirror.wants((kind, vis), ((kind, vis), counter, shape)) for kind, vis, counter in verdict):
            return []
        suffix = tuple(p.monitor.letters[i] for i in path)
        _, divs = self.judge.root(p.prefix + suffix)
        found = [Finding.of(p.target.cfg, p.counters, suffix, d, p.events) for d in divs]
        for f in found:
            self.mirror.add(f)
        return found


class KernelWalk:
    """The random search's walk (`vpmu.explore.search.Walk`) on the kernel: a state is the
    compact state and its window; a diverged path is replayed on the object models."""

    def __init__(self, p: Plan) -> None:
        self.plan = p
        self.judge = Judge(p.target)
        self.root = (p.root, p.monitor.start(p.shown(p.root)), tuple[int, ...]())

    def start(self) -> KState:
        return self.root

    def step(self, state: KState, letter: int) -> tuple[KState, list[Finding] | None]:
        p = self.plan
        compact, window, path = state
        compact, obs = p.kernel.step(compact, p.letters[letter])
        verdict, window = p.monitor.advance(window, letter, obs, p.shown(compact))
        path += (letter,)
        if not verdict:
            return (compact, window, path), None
        suffix = tuple(p.monitor.letters[i] for i in path)
        _, divs = self.judge.root(p.prefix + suffix)
        return (compact, window, path), [Finding.of(p.target.cfg, p.counters, suffix, d, p.events) for d in divs]


def kernel_random(p: Plan, seed: int, restarts: range, deadline: float | None = None,
                  progress: Progress | None = None) -> SearchResult:
    """`vpmu.explore.search.random_search` on the kernel: the same draws from (seed, r) on the
    same alphabet give the same paths, statistics and findings."""
    return random_search(p.target, p.bounds, seed, restarts, deadline, progress, KernelWalk(p))


def kernel_bfs(p: Plan, depth: int, deadline: float | None = None, progress: Progress | None = None) -> SearchResult:
    """`vpmu.explore.search.bfs` over compact states (same levels, order and statistics)."""
    return bfs(KernelExpander(p), depth, deadline, progress)


def compiled_search(p: Plan) -> CompiledStep | str:
    """The plan's design's compiled step (`kjit.compiled_step`) for `compiled_bfs`, or why
    there is none (one line); built once per plan. numba caches the compiled code on disk,
    so only the first process compiles it."""
    if p.compiled is None:
        from .compiled import refusal
        from .kjit import compiled_step
        from .tables import COMPILER

        p.compiled = COMPILER or refusal(p) or compiled_step(p.kernel.fast)
    return p.compiled


def kernel_search(p: Plan, depth: int, deadline: float | None = None, progress: Progress | None = None,
                  announce: Callable[[str], None] | None = None) -> tuple[SearchResult, str]:
    """The exhaustive search on the kernel: compiled when it can be (`compiled_bfs`), else
    the same kernel in pure Python (`kernel_bfs`); with a one-line note of which ran.
    `announce` hears, before it happens, that the compiled search is being loaded (the first
    run on a machine compiles it, which takes a while)."""
    from .compiled import compiled_bfs

    start = time.perf_counter()
    if announce is not None:
        announce("loading the compiled search kernel (the first run on a machine compiles it: about 30 s)")
    cs = compiled_search(p)
    if isinstance(cs, str):
        return kernel_bfs(p, depth, deadline, progress), f"pure Python: {cs}"
    result = compiled_bfs(p, depth, cs, deadline, progress)
    loaded = time.perf_counter() - start - result.stats.elapsed
    return result, f"compiled with numba ({loaded:.1f}s to compile or load)"
