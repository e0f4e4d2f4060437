"""The explorer: search guest-action interleavings for divergences, shrink what it finds.

The search space is explicit and bounded (`Bounds`): a fixed set-up prefix programs the
counters in use, then every step picks one action from a finite alphabet built from the
bounds (native runs, held host PMIs, intercepted and emulated instructions, batches,
counter writes, status clears, LVTPC unmask, enable toggles, filter changes, save/restore,
perf creation failure). Two modes:

* random: seeded swarm search. Each restart draws a random subset of action *kinds*
  (swarm testing: leaving kinds out lets rare combinations of the rest show up) and a
  random sequence of up to `depth` actions from it.
* exhaustive: breadth-first over distinct (KVM, reference) states up to `depth`, with
  visited-state hashing so that each state is expanded once; BFS order means the first
  counterexample of each kind is a shortest one.

Every counterexample is shrunk (`shrink`) while it keeps its divergence kind, and can be
saved as a scenario file that `vpmu run` replays.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vpmu import msrs
from vpmu.actions import (
    Action,
    Batch,
    ClearFilter,
    Cpuid,
    Emulate,
    HostPmi,
    Insn,
    Native,
    PerfFail,
    Rdmsr,
    Rdpmc,
    SaveRestore,
    SetFilter,
    Wrmsr,
)
from vpmu.config import FIXED_BASE, PmuConfig
from vpmu.errors import VpmuError
from vpmu.events import ENCODINGS, FIXED_OS, FIXED_PMI, FIXED_USR, make_eventsel

#: Action kinds a swarm worker can switch off (names used in reports and --kinds).
KINDS = (
    "native", "native-held", "host-pmi", "cpuid", "emulate", "batch", "write-counter",
    "read", "clear-status", "unmask-lvtpc", "toggle", "filter", "save-restore", "perf-fail",
)


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the search may do. Every field is a CLI option of `vpmu explore`.

    width:   counter width in bits (small so that wraps are reachable in few steps).
    gp:      general-purpose counters in use (counting instructions, PMI on overflow).
    fixed:   fixed counters in use (Intel v2+ only; fixed 0 counts instructions).
    depth:   actions after the set-up prefix.
    batch:   largest invalid-guest-state batch (emulated instructions in one exit).
    native:  native run lengths the guest may execute in one step.
    values:  counter write values; -N means 2^width - N.
    kinds:   action kinds in the alphabet (see KINDS); perf-fail is off by default.
    """

    width: int = 4
    gp: int = 1
    fixed: int = 0
    depth: int = 5
    batch: int = 3
    native: tuple[int, ...] = (1, 2, 3)
    values: tuple[int, ...] = (-1, -2, -3, 0)
    kinds: tuple[str, ...] = tuple(k for k in KINDS if k != "perf-fail")

    def validate(self, cfg: PmuConfig) -> None:
        def bad(name: str, why: str) -> VpmuError:
            return VpmuError(f"invalid bound --{name}: {why}")

        if not 2 <= self.width <= 64:
            raise bad("width", f"must be 2..64, not {self.width}")
        if not 0 <= self.gp <= cfg.num_gp:
            raise bad("counters", f"{self.gp} GP counters requested, the CPU has {cfg.num_gp}")
        if not 0 <= self.fixed <= len(cfg.fixed_indices):
            raise bad("counters", f"{self.fixed} fixed counters requested, the CPU has "
                      f"{len(cfg.fixed_indices)}")
        if self.gp + self.fixed == 0:
            raise bad("counters", "at least one counter must be in use")
        if not 1 <= self.depth <= 64:
            raise bad("depth", f"must be 1..64, not {self.depth}")
        if not 1 <= self.batch <= 130:
            raise bad("batch", f"must be 1..130 (KVM's emulation loop bound), not {self.batch}")
        if not self.native or any(n < 1 for n in self.native):
            raise bad("native", "needs at least one run length, each >= 1")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise bad("kinds", f"unknown kind {sorted(unknown)[0]!r} (known: {', '.join(KINDS)})")

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "gp": self.gp, "fixed": self.fixed, "depth": self.depth,
                "batch": self.batch, "native": list(self.native), "values": list(self.values),
                "kinds": list(self.kinds)}


# --- the alphabet --------------------------------------------------------------------------


def _counter_msr(cfg: PmuConfig, idx: int) -> int:
    if idx >= FIXED_BASE:
        return msrs.IA32_FIXED_CTR0 + idx - FIXED_BASE
    if cfg.is_intel:
        return (msrs.IA32_A_PMC0 if cfg.full_width_writes else msrs.IA32_PMC0) + idx
    if cfg.perfctr_core:
        return msrs.MSR_F15H_PERF_CTL0 + 2 * idx + 1
    return msrs.MSR_K7_PERFCTR0 + idx


def _eventsel_msr(cfg: PmuConfig, idx: int) -> int:
    if cfg.is_intel:
        return msrs.IA32_PERFEVTSEL0 + idx
    if cfg.perfctr_core:
        return msrs.MSR_F15H_PERF_CTL0 + 2 * idx
    return msrs.MSR_K7_EVNTSEL0 + idx


def _status_msr(cfg: PmuConfig) -> int:
    return msrs.IA32_PERF_GLOBAL_STATUS if cfg.is_intel else msrs.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS


def in_use(cfg: PmuConfig, bounds: Bounds) -> tuple[int, ...]:
    """PMC indices the search programs: the first `gp` GP and the first `fixed` fixed."""
    fixed = cfg.fixed_indices[: bounds.fixed]
    return tuple(range(bounds.gp)) + tuple(FIXED_BASE + i for i in fixed)


def setup_prefix(cfg: PmuConfig, bounds: Bounds) -> tuple[Action, ...]:
    """Program every counter in use to count instructions with a PMI, enable them globally,
    and route the PMI as an unmasked NMI, as a Linux guest's perf would."""
    counting = make_eventsel(ENCODINGS[cfg.vendor]["instructions"], intr=True)
    steps: list[Action] = [Wrmsr(msrs.X2APIC_LVTPC, msrs.LVTPC_DELIVERY_NMI)]
    fixed_ctrl = 0
    enable = 0
    for idx in in_use(cfg, bounds):
        enable |= 1 << idx
        if idx >= FIXED_BASE:
            fixed_ctrl |= (FIXED_OS | FIXED_USR | FIXED_PMI) << 4 * (idx - FIXED_BASE)
        else:
            steps.append(Wrmsr(_eventsel_msr(cfg, idx), counting))
    if fixed_ctrl:
        steps.append(Wrmsr(msrs.IA32_FIXED_CTR_CTRL, fixed_ctrl))
    if cfg.has_global_msrs:
        ctl = msrs.IA32_PERF_GLOBAL_CTRL if cfg.is_intel else msrs.MSR_AMD64_PERF_CNTR_GLOBAL_CTL
        steps.append(Wrmsr(ctl, enable))
    return tuple(steps)


def alphabet(cfg: PmuConfig, bounds: Bounds) -> list[tuple[str, Action]]:
    """Every (kind, action) a step may choose, in a fixed order (the BFS order)."""
    mask = (1 << bounds.width) - 1
    counting = make_eventsel(ENCODINGS[cfg.vendor]["instructions"], intr=True)
    out: list[tuple[str, Action]] = []
    kinds = set(bounds.kinds)

    def add(kind: str, action: Action) -> None:
        if kind in kinds:
            out.append((kind, action))

    for n in bounds.native:
        add("native", Native(n))
    for n in bounds.native:
        add("native-held", Native(n, hold_pmi=True))
    add("host-pmi", HostPmi())
    add("cpuid", Cpuid())
    add("cpuid", Cpuid(host_pmi="after-handler"))
    add("emulate", Emulate((Insn(),)))
    for k in range(2, bounds.batch + 1):
        add("batch", Batch((Insn(),) * k))
    if cfg.has_global_msrs and bounds.batch >= 2:
        add("batch", Batch((Insn(),) * bounds.batch + (Rdmsr(_status_msr(cfg)),)))
    used = in_use(cfg, bounds)
    for idx in used:
        for v in bounds.values:
            add("write-counter", Wrmsr(_counter_msr(cfg, idx), v & mask))
    for idx in used:
        add("read", Rdpmc(idx if idx < FIXED_BASE else (1 << 30) | (idx - FIXED_BASE)))
    if cfg.has_global_msrs:
        add("read", Rdmsr(_status_msr(cfg)))
        clear = (msrs.IA32_PERF_GLOBAL_OVF_CTRL if cfg.is_intel
                 else msrs.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR)
        add("clear-status", Wrmsr(clear, sum(1 << i for i in used)))
    add("unmask-lvtpc", Wrmsr(msrs.X2APIC_LVTPC, msrs.LVTPC_DELIVERY_NMI))
    for idx in used:
        if idx < FIXED_BASE:
            add("toggle", Wrmsr(_eventsel_msr(cfg, idx), counting & ~(1 << 22)))
            add("toggle", Wrmsr(_eventsel_msr(cfg, idx), counting))
    inst = ENCODINGS[cfg.vendor]["instructions"]
    add("filter", SetFilter("deny", (inst,), fixed_counter_bitmap=0b111 if cfg.is_intel else 0))
    add("filter", ClearFilter())
    add("save-restore", SaveRestore())
    add("perf-fail", PerfFail(True))
    add("perf-fail", PerfFail(False))
    return out


# --- running and judging one sequence ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What is explored: the CPU (at the bounds' width), the KVM era and design, and the
    checker options. Picklable, so that worker processes can rebuild machines from it."""

    cfg: PmuConfig
    era: str
    design: str | None = None
    checker_options: Any = None

    def machines(self) -> tuple[Any, Any]:
        from vpmu.reference import ReferenceMachine
        from vpmu.world import World

        return ReferenceMachine(self.cfg), World(self.cfg, self.era, self.design)


@dataclass(frozen=True, slots=True)
class Finding:
    """A divergence kind found by a sequence (set-up prefix included)."""

    kind: str
    visibility: str
    actions: tuple[Action, ...]
    step: int
    detail: str = ""


Judge = Callable[[Sequence[Any], Sequence[Any]], list[Any]]


def make_judge(target: Target) -> Judge:
    """Untolerated divergences between a reference and a KVM observation list."""
    from vpmu.checker import compare

    def judge(ref_obs: Sequence[Any], kvm_obs: Sequence[Any]) -> list[Any]:
        divs = compare(target.cfg, list(ref_obs), list(kvm_obs), target.checker_options)
        return [d for d in divs if not d.tolerated]

    return judge


def first_finding(target: Target, actions: Sequence[Action], judge: Judge) -> Finding | None:
    """Run `actions` through both machines; the first untolerated divergence, if any."""
    ref, kvm = target.machines()
    ref_obs = [ref.step(a) for a in actions]
    kvm_obs = [kvm.step(a) for a in actions]
    divs = judge(ref_obs, kvm_obs)
    if not divs:
        return None
    d = min(divs, key=lambda d: d.step)
    return Finding(d.kind, d.visibility, tuple(actions), d.step, getattr(d, "message", ""))


# --- shrinking -----------------------------------------------------------------------------


def _simpler_actions(action: Action, mask: int) -> Iterable[Action]:
    """Candidate replacements for one action, simplest first."""
    if isinstance(action, Native):
        if action.count > 1:
            yield replace(action, count=1, branches=min(action.branches, 1))
            if action.count > 2:
                yield replace(action, count=action.count // 2,
                              branches=min(action.branches, action.count // 2))
            yield replace(action, count=action.count - 1,
                          branches=min(action.branches, action.count - 1))
        if action.branches:
            yield replace(action, branches=0)
        if action.hold_pmi:
            yield replace(action, hold_pmi=False)
    elif isinstance(action, Batch | Emulate):
        items = action.items
        for i in range(len(items)):
            if len(items) > 1:
                yield replace(action, items=items[:i] + items[i + 1:])
    elif isinstance(action, Wrmsr):
        v = action.value & mask
        for simpler in (0, 1, mask, mask - 1, mask - 2):
            if _magnitude(simpler, mask) < _magnitude(v, mask):
                yield replace(action, value=simpler)
    elif isinstance(action, Cpuid) and action.host_pmi != "before-handler":
        yield replace(action, host_pmi="before-handler")


def _magnitude(v: int, mask: int) -> int:
    """How far a value is from 0 in counter terms (so -1 is as simple as 1)."""
    v &= mask
    return min(v, mask + 1 - v)


def shrink(
    actions: Sequence[Action],
    still_fails: Callable[[Sequence[Action]], bool],
    mask: int,
    max_tries: int = 2000,
) -> tuple[Action, ...]:
    """Greedy minimisation: drop chunks of steps (halving chunk sizes, like ddmin), then
    simplify single actions, repeating until nothing more can be removed or simplified."""
    current = tuple(actions)
    tries = 0
    progress = True
    while progress and tries < max_tries:
        progress = False
        chunk = max(1, len(current) // 2)
        while chunk >= 1 and tries < max_tries:
            i = 0
            while i < len(current) and tries < max_tries:
                candidate = current[:i] + current[i + chunk:]
                tries += 1
                if candidate and still_fails(candidate):
                    current = candidate
                    progress = True
                else:
                    i += chunk
            chunk //= 2
        for i in range(len(current)):
            for simpler in _simpler_actions(current[i], mask):
                candidate = current[:i] + (simpler,) + current[i + 1:]
                tries += 1
                if still_fails(candidate):
                    current = candidate
                    progress = True
                    break
    return current


def shrink_finding(target: Target, finding: Finding, judge: Judge) -> Finding:
    """Shrink while the same divergence kind and visibility stay reported."""

    def still_fails(candidate: Sequence[Action]) -> bool:
        found = first_finding_of_kind(target, candidate, judge, finding.kind, finding.visibility)
        return found is not None

    actions = shrink(finding.actions, still_fails, target.cfg.gp_mask)
    result = first_finding_of_kind(target, actions, judge, finding.kind, finding.visibility)
    assert result is not None
    return result


def first_finding_of_kind(
    target: Target, actions: Sequence[Action], judge: Judge, kind: str, visibility: str
) -> Finding | None:
    ref, kvm = target.machines()
    ref_obs = [ref.step(a) for a in actions]
    kvm_obs = [kvm.step(a) for a in actions]
    for d in sorted(judge(ref_obs, kvm_obs), key=lambda d: d.step):
        if d.kind == kind and d.visibility == visibility:
            return Finding(kind, visibility, tuple(actions), d.step, getattr(d, "message", ""))
    return None


# --- the searches --------------------------------------------------------------------------


@dataclass
class Stats:
    """Counters every search reports."""

    states: int = 0
    transitions: int = 0
    depth_reached: int = 0
    sequences: int = 0
    exhausted: bool = False
    elapsed: float = 0.0
    stopped_by_budget: bool = False

    @property
    def states_per_second(self) -> float:
        return self.states / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class SearchResult:
    mode: str
    stats: Stats
    findings: list[Finding] = field(default_factory=list)


Progress = Callable[[Stats, int], None]


def _record(found: dict[tuple[str, str], Finding], f: Finding) -> None:
    key = (f.kind, f.visibility)
    if key not in found:
        found[key] = f


def random_search(
    target: Target,
    bounds: Bounds,
    seed: int,
    restarts: int,
    worker: int = 0,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Swarm search: `restarts` random sequences, each from a random subset of the kinds.

    Deterministic for (seed, worker, restarts) when no deadline cuts it short.
    """
    judge = make_judge(target)
    prefix = setup_prefix(target.cfg, bounds)
    letters = alphabet(target.cfg, bounds)
    kinds = sorted({k for k, _ in letters})
    stats = Stats()
    found: dict[tuple[str, str], Finding] = {}
    start = time.perf_counter()
    for r in range(restarts):
        if deadline is not None and time.perf_counter() > deadline:
            stats.stopped_by_budget = True
            break
        rng = random.Random(f"{seed}:{worker}:{r}")
        enabled = [k for k in kinds if rng.random() < 0.5] or [rng.choice(kinds)]
        choices = [a for k, a in letters if k in enabled]
        ref, kvm = target.machines()
        ref_obs = [ref.step(a) for a in prefix]
        kvm_obs = [kvm.step(a) for a in prefix]
        path = list(prefix)
        for depth in range(1, bounds.depth + 1):
            action = rng.choice(choices)
            path.append(action)
            ref_obs.append(ref.step(action))
            kvm_obs.append(kvm.step(action))
            stats.transitions += 1
            stats.states += 1
            stats.depth_reached = max(stats.depth_reached, depth)
            divs = judge(ref_obs, kvm_obs)
            if divs:
                for d in divs:
                    _record(found, Finding(d.kind, d.visibility, tuple(path), d.step,
                                           getattr(d, "message", "")))
                break
        stats.sequences += 1
        if progress is not None and r % 50 == 0:
            stats.elapsed = time.perf_counter() - start
            progress(stats, len(found))
    stats.elapsed = time.perf_counter() - start
    return SearchResult("random", stats, list(found.values()))


def exhaustive_search(
    target: Target,
    bounds: Bounds,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Breadth-first search over distinct (KVM, reference) states up to `bounds.depth`.

    A state is expanded once (visited-state hashing on both machines' `state_key()`);
    every transition is judged, so a divergence reached by a second path to a known state
    is still found. A path that diverged is not expanded further: BFS already made it a
    shortest witness of its kind.
    """
    judge = make_judge(target)
    prefix = setup_prefix(target.cfg, bounds)
    letters = [a for _, a in alphabet(target.cfg, bounds)]
    stats = Stats()
    found: dict[tuple[str, str], Finding] = {}
    start = time.perf_counter()
    ref, kvm = target.machines()
    ref_obs = [ref.step(a) for a in prefix]
    kvm_obs = [kvm.step(a) for a in prefix]
    root_key = (kvm.state_key(), ref.state_key())
    visited = {root_key}
    stats.states = 1
    frontier: list[tuple[tuple[Action, ...], Any, Any, list[Any], list[Any]]] = [
        (tuple(prefix), ref, kvm, ref_obs, kvm_obs)
    ]
    for depth in range(1, bounds.depth + 1):
        next_frontier: list[tuple[tuple[Action, ...], Any, Any, list[Any], list[Any]]] = []
        for path, ref, kvm, ref_obs, kvm_obs in frontier:
            if deadline is not None and time.perf_counter() > deadline:
                stats.stopped_by_budget = True
                break
            for action in letters:
                r2, k2 = ref.clone(), kvm.clone()
                ro = ref_obs + [r2.step(action)]
                ko = kvm_obs + [k2.step(action)]
                stats.transitions += 1
                new_path = path + (action,)
                divs = judge(ro, ko)
                if divs:
                    for d in divs:
                        _record(found, Finding(d.kind, d.visibility, new_path, d.step,
                                               getattr(d, "message", "")))
                    continue
                key = (k2.state_key(), r2.state_key())
                if key in visited:
                    continue
                visited.add(key)
                stats.states += 1
                next_frontier.append((new_path, r2, k2, ro, ko))
            if progress is not None:
                stats.elapsed = time.perf_counter() - start
                progress(stats, len(found))
        if stats.stopped_by_budget:
            break
        stats.depth_reached = depth
        frontier = next_frontier
        if not frontier:
            break
    stats.exhausted = not stats.stopped_by_budget
    stats.elapsed = time.perf_counter() - start
    return SearchResult("exhaustive", stats, list(found.values()))


# --- partitioned exhaustive expansion ------------------------------------------------------

IndexPath = tuple[int, ...]
#: One expanded transition: the successor's index path, its state key (None when the
#: transition diverged, so it is not expanded), and the findings it produced.
Expansion = tuple[IndexPath, Any, list[Finding]]


def _replay(target: Target, path: Sequence[Action]) -> tuple[Any, Any, list[Any], list[Any]]:
    ref, kvm = target.machines()
    return ref, kvm, [ref.step(a) for a in path], [kvm.step(a) for a in path]


def expand_unit(target: Target, bounds: Bounds, paths: list[IndexPath]) -> list[Expansion]:
    """Expand frontier states given by their index paths (positions in `alphabet`).

    Each state is rebuilt by replaying its path, so a unit is a pure function of its
    arguments: any process, or a retried Ray task, computes the same answer.
    """
    judge = make_judge(target)
    letters = [a for _, a in alphabet(target.cfg, bounds)]
    prefix = setup_prefix(target.cfg, bounds)
    out: list[Expansion] = []
    for ipath in paths:
        path = prefix + tuple(letters[i] for i in ipath)
        ref, kvm, ref_obs, kvm_obs = _replay(target, path)
        for a, action in enumerate(letters):
            r2, k2 = ref.clone(), kvm.clone()
            ro = ref_obs + [r2.step(action)]
            ko = kvm_obs + [k2.step(action)]
            divs = judge(ro, ko)
            new = ipath + (a,)
            if divs:
                out.append((new, None, [Finding(d.kind, d.visibility, path + (action,), d.step,
                                                getattr(d, "message", "")) for d in divs]))
            else:
                out.append((new, (k2.state_key(), r2.state_key()), []))
    return out


def owner_of(key: Any, partitions: int) -> int:
    """The partition that owns a state: a hash that is stable across processes and runs
    (Python's own str hash is salted per process)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % partitions


#: Runs a list of units, each (target, bounds, index paths), and returns their expansions
#: in the same order. Local processes and Ray both provide one.
UnitRunner = Callable[[list[tuple[Target, Bounds, list[IndexPath]]]], list[list[Expansion]]]


def partitioned_exhaustive_search(
    target: Target,
    bounds: Bounds,
    partitions: int,
    run_units: UnitRunner,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Level-synchronous BFS with the frontier and the visited set partitioned by state hash.

    Each state has one owner partition; a level's work is one unit per owner (its frontier
    states). Candidates are admitted in lexicographic order of their index paths, which is
    exactly the discovery order of `exhaustive_search`, so states, transitions and
    findings are identical to the single-process search for any number of partitions.
    """
    prefix = setup_prefix(target.cfg, bounds)
    stats = Stats()
    found: dict[tuple[str, str], Finding] = {}
    start = time.perf_counter()
    ref, kvm, _, _ = _replay(target, prefix)
    root = (kvm.state_key(), ref.state_key())
    visited: list[set[Any]] = [set() for _ in range(partitions)]
    visited[owner_of(root, partitions)].add(root)
    stats.states = 1
    frontier: list[list[IndexPath]] = [[] for _ in range(partitions)]
    frontier[owner_of(root, partitions)].append(())
    for depth in range(1, bounds.depth + 1):
        if deadline is not None and time.perf_counter() > deadline:
            stats.stopped_by_budget = True
            break
        units = [(target, bounds, paths) for paths in frontier if paths]
        expansions = sorted((e for part in run_units(units) for e in part), key=lambda e: e[0])
        frontier = [[] for _ in range(partitions)]
        for ipath, key, findings in expansions:
            stats.transitions += 1
            for f in findings:
                _record(found, f)
            if key is None:
                continue
            owner = owner_of(key, partitions)
            if key in visited[owner]:
                continue
            visited[owner].add(key)
            stats.states += 1
            frontier[owner].append(ipath)
        stats.depth_reached = depth
        if progress is not None:
            stats.elapsed = time.perf_counter() - start
            progress(stats, len(found))
        if not any(frontier):
            break
    stats.exhausted = not stats.stopped_by_budget
    stats.elapsed = time.perf_counter() - start
    return SearchResult("exhaustive", stats, list(found.values()))


def _run_unit(unit: tuple[Target, Bounds, list[IndexPath]]) -> list[Expansion]:
    return expand_unit(*unit)


def local_unit_runner(pool: Any) -> UnitRunner:
    """Run units on a `concurrent.futures` process pool."""

    def run(units: list[tuple[Target, Bounds, list[IndexPath]]]) -> list[list[Expansion]]:
        return list(pool.map(_run_unit, units))

    return run


# --- the whole run -------------------------------------------------------------------------


@dataclass
class ExploreReport:
    """What `vpmu explore` prints: the bounds, the searches' statistics, and the shrunk
    counterexamples (one per divergence kind and visibility, in a stable order)."""

    target: Target
    bounds: Bounds
    mode: str
    seed: int
    searches: list[SearchResult]
    counterexamples: list[Finding]

    @property
    def untolerated(self) -> bool:
        return bool(self.counterexamples)


def _random_worker(args: tuple[Target, Bounds, int, int, int, float | None]) -> SearchResult:
    target, bounds, seed, restarts, worker, deadline = args
    return random_search(target, bounds, seed, restarts, worker, deadline)


def merge_random(parts: list[SearchResult]) -> SearchResult:
    """Combine swarm workers' results in worker order (so the merge is deterministic)."""
    merged = Stats()
    findings: dict[tuple[str, str], Finding] = {}
    for part in parts:
        merged.states += part.stats.states
        merged.transitions += part.stats.transitions
        merged.sequences += part.stats.sequences
        merged.depth_reached = max(merged.depth_reached, part.stats.depth_reached)
        merged.elapsed = max(merged.elapsed, part.stats.elapsed)
        merged.stopped_by_budget |= part.stats.stopped_by_budget
        for f in part.findings:
            _record(findings, f)
    return SearchResult("random", merged, list(findings.values()))


class Backend:
    """Where searches run. `LocalBackend` uses this machine's processes; the Ray backend
    (vpmu.ray_backend) sends the same units to a Ray cluster."""

    partitions: int = 1

    def random_parts(self, args: list[tuple[Target, Bounds, int, int, int, float | None]]) -> list[SearchResult]:
        raise NotImplementedError

    def unit_runner(self) -> UnitRunner:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (and, for a Ray instance this backend started, the instance)."""


class LocalBackend(Backend):
    """`jobs` worker processes on this machine (spawned lazily, only when jobs > 1)."""

    def __init__(self, jobs: int) -> None:
        self.partitions = max(1, jobs)
        self._pool: Any = None

    def _executor(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            self._pool = ProcessPoolExecutor(max_workers=self.partitions, mp_context=get_context("spawn"))
        return self._pool

    def random_parts(self, args: list[tuple[Target, Bounds, int, int, int, float | None]]) -> list[SearchResult]:
        return list(self._executor().map(_random_worker, args))

    def unit_runner(self) -> UnitRunner:
        return local_unit_runner(self._executor())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def explore(
    target: Target,
    bounds: Bounds,
    mode: str = "auto",
    seed: int = 0,
    jobs: int = 1,
    restarts: int = 400,
    time_budget: float | None = None,
    progress: Progress | None = None,
    backend: Backend | None = None,
) -> ExploreReport:
    """Run the chosen searches, then shrink one counterexample per divergence kind.

    mode "random", "exhaustive", or "auto" (random first, then exhaustive). With jobs > 1
    (or a distributed backend) the random restarts are split over `jobs` swarm workers,
    worker w seeding from (seed, w, restart), and exhaustive levels are expanded as units
    partitioned by state hash. Results depend on (seed, bounds, restarts, jobs) only: the
    exhaustive numbers do not depend on jobs at all, and the backend never matters.
    """
    if mode not in ("random", "exhaustive", "auto"):
        raise VpmuError(f"unknown mode {mode!r} (known: random, exhaustive, auto)")
    bounds.validate(target.cfg)
    deadline = None if time_budget is None else time.perf_counter() + time_budget
    owned = backend is None
    if backend is None:
        backend = LocalBackend(jobs)
    searches: list[SearchResult] = []
    try:
        parallel = jobs > 1 or not isinstance(backend, LocalBackend)
        if mode in ("random", "auto"):
            if not parallel:
                searches.append(random_search(target, bounds, seed, restarts, 0, deadline, progress))
            else:
                per = -(-restarts // max(1, jobs))
                parts = backend.random_parts(
                    [(target, bounds, seed, per, w, deadline) for w in range(max(1, jobs))])
                searches.append(merge_random(parts))
        if mode in ("exhaustive", "auto") and not (deadline and time.perf_counter() > deadline):
            if not parallel:
                searches.append(exhaustive_search(target, bounds, deadline, progress))
            else:
                searches.append(partitioned_exhaustive_search(
                    target, bounds, backend.partitions, backend.unit_runner(), deadline, progress))
    finally:
        if owned:
            backend.close()
    best: dict[tuple[str, str], Finding] = {}
    for search in searches:
        for f in search.findings:
            key = (f.kind, f.visibility)
            if key not in best or len(f.actions) < len(best[key].actions):
                best[key] = f
    judge = make_judge(target)
    shrunk = [shrink_finding(target, best[k], judge) for k in sorted(best)]
    return ExploreReport(target, bounds, mode, seed, searches, shrunk)
