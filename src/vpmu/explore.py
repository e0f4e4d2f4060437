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
from vpmu.checker import CheckerOptions, Divergence, compare
from vpmu.config import FIXED_BASE, PmuConfig
from vpmu.errors import VpmuError
from vpmu.events import ENCODINGS, FIXED_OS, FIXED_PMI, FIXED_USR, make_eventsel
from vpmu.pmc_map import counter_msr, eventsel_msr, global_ctrl_msr, rdpmc_ecx, status_clear_msr, status_msr
from vpmu.reference import ReferenceMachine
from vpmu.run import start_machines
from vpmu.trace import Observation
from vpmu.world import World

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


def in_use(cfg: PmuConfig, bounds: Bounds) -> tuple[int, ...]:
    """PMC indices the search programs: the first `gp` GP and the first `fixed` fixed."""
    fixed = cfg.fixed_indices[: bounds.fixed]
    return tuple(range(bounds.gp)) + tuple(FIXED_BASE + i for i in fixed)


def setup_prefix(cfg: PmuConfig, counters: Sequence[int]) -> tuple[Action, ...]:
    """Program `counters` to count instructions with a PMI and enable them, the way a Linux
    guest's perf does: global enable off, then the selectors, then the global enable.

    Writing GLOBAL_CTRL first makes the set-up independent of its reset value (which
    changed in 6.9, spec kvm-vpmu.md §2.1), so the search starts from the same state on
    every era. The LVTPC is already an unmasked NMI in both machines (a Linux guest's).
    """
    counting = make_eventsel(ENCODINGS[cfg.vendor]["instructions"], intr=True)
    ctl = global_ctrl_msr(cfg)
    steps: list[Action] = [Wrmsr(ctl, 0)] if cfg.has_global_msrs else []
    fixed_ctrl = 0
    enable = 0
    for idx in counters:
        enable |= 1 << idx
        if idx >= FIXED_BASE:
            fixed_ctrl |= (FIXED_OS | FIXED_USR | FIXED_PMI) << 4 * (idx - FIXED_BASE)
        else:
            steps.append(Wrmsr(eventsel_msr(cfg, idx), counting))
    if fixed_ctrl:
        steps.append(Wrmsr(msrs.IA32_FIXED_CTR_CTRL, fixed_ctrl))
    if cfg.has_global_msrs:
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
        add("batch", Batch((Insn(),) * bounds.batch + (Rdmsr(status_msr(cfg)),)))
    used = in_use(cfg, bounds)
    for idx in used:
        for v in bounds.values:
            add("write-counter", Wrmsr(counter_msr(cfg, idx), v & mask))
    for idx in used:
        add("read", Rdpmc(rdpmc_ecx(idx)))
    if cfg.has_global_msrs:
        add("read", Rdmsr(status_msr(cfg)))
        add("clear-status", Wrmsr(status_clear_msr(cfg), sum(1 << i for i in used)))
    add("unmask-lvtpc", Wrmsr(msrs.X2APIC_LVTPC, msrs.LVTPC_DELIVERY_NMI))
    for idx in used:
        if idx < FIXED_BASE:
            add("toggle", Wrmsr(eventsel_msr(cfg, idx), counting & ~(1 << 22)))
            add("toggle", Wrmsr(eventsel_msr(cfg, idx), counting))
    inst = ENCODINGS[cfg.vendor]["instructions"]
    add("filter", SetFilter("deny", (inst,), fixed_counter_bitmap=0b111 if cfg.is_intel else 0))
    add("filter", ClearFilter())
    add("save-restore", SaveRestore())
    add("perf-fail", PerfFail(True))
    add("perf-fail", PerfFail(False))
    return out


def touches(cfg: PmuConfig, action: Action, pmc: int) -> bool:
    """Does `action` name counter `pmc` (its counter or selector MSR, or RDPMC of it)?"""
    if isinstance(action, Wrmsr | Rdmsr):
        return action.msr == counter_msr(cfg, pmc) or (
            pmc < FIXED_BASE and action.msr == eventsel_msr(cfg, pmc))
    if isinstance(action, Rdpmc):
        return action.ecx == rdpmc_ecx(pmc)
    if isinstance(action, Batch | Emulate):
        return any(touches(cfg, item, pmc) for item in action.items if not isinstance(item, Insn))
    return False


# --- running and judging one sequence ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What is explored: the CPU (at the bounds' width), the KVM era and design, and the
    checker options. Picklable, so that worker processes can rebuild machines from it."""

    cfg: PmuConfig
    era: str
    design: str | None = None
    checker_options: CheckerOptions = field(default_factory=CheckerOptions)

    def machines(self) -> tuple[ReferenceMachine, World]:
        """Fresh machines that start from the same LVTPC (the World's default)."""
        return start_machines(self.cfg, self.era, self.design)


@dataclass(frozen=True, slots=True)
class Finding:
    """An untolerated divergence found by `counters`' set-up followed by `suffix`."""

    cfg: PmuConfig
    kind: str
    visibility: str
    counters: tuple[int, ...]
    suffix: tuple[Action, ...]
    step: int
    detail: str = ""

    @property
    def actions(self) -> tuple[Action, ...]:
        """The whole replayable sequence: set-up prefix, then the explored steps."""
        return setup_prefix(self.cfg, self.counters) + self.suffix


def _quiet(r: Observation, k: Observation) -> bool:
    """Both machines show the same thing and neither overflowed: nothing new to judge."""
    return (not r.signals and not k.signals and not r.pmis and not k.pmis
            and r.counters == k.counters and r.global_status == k.global_status
            and r.lvtpc == k.lvtpc and r.results == k.results)


def _balanced(ref_obs: Sequence[Observation], kvm_obs: Sequence[Observation]) -> bool:
    """No obligation is open at the end: same status, as many PMIs, and every reference wrap
    matched by one KVM overflow signal per counter."""
    if not ref_obs:
        return True
    if ref_obs[-1].global_status != kvm_obs[-1].global_status:
        return False
    if sum(len(o.pmis) for o in ref_obs) != sum(len(o.pmis) for o in kvm_obs):
        return False
    wraps: dict[int, int] = {}
    for o in ref_obs:
        for s in o.signals:
            wraps[s.pmc] = wraps.get(s.pmc, 0) + 1
    for o in kvm_obs:
        for s in o.signals:
            if s.source in ("hw", "emulated"):
                wraps[s.pmc] = wraps.get(s.pmc, 0) - 1
    return not any(wraps.values())


@dataclass(slots=True)
class Node:
    """A search state: both machines after `path`, their observations, and whether every
    overflow obligation is settled (then a quiet next step needs no judging)."""

    path: tuple[Action, ...]
    ref: ReferenceMachine
    kvm: World
    ref_obs: list[Observation]
    kvm_obs: list[Observation]
    balanced: bool = True

    def key(self) -> tuple[object, object]:
        return (self.kvm.state_key(), self.ref.state_key())


class Judge:
    """Untolerated divergences of an open-ended trace (the search may extend it)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.cfg = target.cfg
        self.options = target.checker_options

    def __call__(self, ref_obs: Sequence[Observation], kvm_obs: Sequence[Observation]) -> list[Divergence]:
        divs = compare(self.cfg, ref_obs, kvm_obs, self.options, open_end=True)
        return [d for d in divs if not d.tolerated]

    def root(self, path: Sequence[Action]) -> tuple[Node, list[Divergence]]:
        """Run `path` from fresh machines."""
        ref, kvm = self.target.machines()
        ro = [ref.step(a) for a in path]
        ko = [kvm.step(a) for a in path]
        divs = self(ro, ko)
        return Node(tuple(path), ref, kvm, ro, ko, _balanced(ro, ko)), divs

    def advance(self, node: Node, action: Action, copy: bool = True) -> tuple[Node, list[Divergence]]:
        """One step from `node` (cloned unless `copy` is False); judge only when needed."""
        ref, kvm = (node.ref.clone(), node.kvm.clone()) if copy else (node.ref, node.kvm)
        r, k = ref.step(action), kvm.step(action)
        ro, ko = node.ref_obs + [r], node.kvm_obs + [k]
        child = Node(node.path + (action,), ref, kvm, ro, ko)
        if node.balanced and _quiet(r, k):
            return child, []
        child.balanced = _balanced(ro, ko)
        return child, self(ro, ko)


def _findings(cfg: PmuConfig, counters: tuple[int, ...], path: tuple[Action, ...], prefix_len: int,
              divs: Sequence[Divergence]) -> list[Finding]:
    return [Finding(cfg, d.kind, d.visibility, counters, path[prefix_len:], d.step, d.message) for d in divs]


def first_of_kind(target: Target, counters: tuple[int, ...], suffix: Sequence[Action], kind: str,
                  visibility: str, judge: Judge | None = None) -> Finding | None:
    """Replay set-up + `suffix`; the first untolerated divergence of `kind`, if any."""
    judge = judge or Judge(target)
    _, divs = judge.root(setup_prefix(target.cfg, counters) + tuple(suffix))
    for d in divs:
        if d.kind == kind and d.visibility == visibility:
            return Finding(target.cfg, kind, visibility, counters, tuple(suffix), d.step, d.message)
    return None


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


def shrink_finding(target: Target, finding: Finding) -> Finding:
    """Minimise while the same divergence kind and visibility stay reported: fewer and
    simpler explored steps (the set-up prefix is kept, so the cause cannot drift into the
    set-up), then fewer counters in use."""
    judge = Judge(target)
    kind, vis = finding.kind, finding.visibility

    def shrink_suffix(counters: tuple[int, ...], suffix: Sequence[Action]) -> tuple[Action, ...]:
        def still_fails(candidate: Sequence[Action]) -> bool:
            return first_of_kind(target, counters, candidate, kind, vis, judge) is not None

        return shrink(suffix, still_fails, target.cfg.gp_mask)

    counters, suffix = finding.counters, shrink_suffix(finding.counters, finding.suffix)
    for pmc in sorted(counters, reverse=True):
        if len(counters) == 1:
            break
        fewer = tuple(c for c in counters if c != pmc)
        kept = tuple(a for a in suffix if not touches(target.cfg, a, pmc))
        if kept and first_of_kind(target, fewer, kept, kind, vis, judge) is not None:
            counters, suffix = fewer, shrink_suffix(fewer, kept)
    result = first_of_kind(target, counters, suffix, kind, vis, judge)
    assert result is not None, "shrinking lost the divergence"
    return result


# --- the searches --------------------------------------------------------------------------


@dataclass
class Stats:
    """Counters every search reports. For random search `states` counts the states it
    visited (with repeats); for exhaustive search, distinct states."""

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


#: Called now and then with the statistics so far and the number of divergence kinds found.
Progress = Callable[[Stats, int], None]


def _record(found: dict[tuple[str, str], Finding], f: Finding) -> None:
    key = (f.kind, f.visibility)
    if key not in found:
        found[key] = f


def _past(deadline: float | None) -> bool:
    # wall-clock time, comparable across processes and (roughly) across cluster nodes
    return deadline is not None and time.time() > deadline


def random_search(
    target: Target,
    bounds: Bounds,
    seed: int,
    restarts: range,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Swarm search over the restarts in `restarts`: restart r draws (from seed and r alone)
    a random subset of the action kinds and a random sequence of up to `depth` actions from
    it. Splitting the range over workers therefore does not change what is found."""
    judge = Judge(target)
    counters = in_use(target.cfg, bounds)
    prefix = setup_prefix(target.cfg, counters)
    letters = alphabet(target.cfg, bounds)
    kinds = sorted({k for k, _ in letters})
    stats = Stats()
    found: dict[tuple[str, str], Finding] = {}
    start = time.perf_counter()
    root, _ = judge.root(prefix)
    for r in restarts:
        if _past(deadline):
            stats.stopped_by_budget = True
            break
        rng = random.Random(f"{seed}:{r}")
        enabled = [k for k in kinds if rng.random() < 0.5] or [rng.choice(kinds)]
        choices = [a for k, a in letters if k in enabled]
        node = Node(root.path, root.ref.clone(), root.kvm.clone(), list(root.ref_obs),
                    list(root.kvm_obs), root.balanced)
        for depth in range(1, bounds.depth + 1):
            node, divs = judge.advance(node, rng.choice(choices), copy=False)
            stats.transitions += 1
            stats.states += 1
            stats.depth_reached = max(stats.depth_reached, depth)
            if divs:
                for f in _findings(target.cfg, counters, node.path, len(prefix), divs):
                    _record(found, f)
                break
        stats.sequences += 1
        if progress is not None and stats.sequences % 50 == 0:
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
    judge = Judge(target)
    counters = in_use(target.cfg, bounds)
    prefix = setup_prefix(target.cfg, counters)
    letters = [a for _, a in alphabet(target.cfg, bounds)]
    stats = Stats()
    found: dict[tuple[str, str], Finding] = {}
    start = time.perf_counter()
    root, _ = judge.root(prefix)
    visited = {root.key()}
    stats.states = 1
    frontier = [root]
    for depth in range(1, bounds.depth + 1):
        next_frontier: list[Node] = []
        for node in frontier:
            if _past(deadline):
                stats.stopped_by_budget = True
                break
            for action in letters:
                child, divs = judge.advance(node, action)
                stats.transitions += 1
                if divs:
                    for f in _findings(target.cfg, counters, child.path, len(prefix), divs):
                        _record(found, f)
                    continue
                key = child.key()
                if key in visited:
                    continue
                visited.add(key)
                stats.states += 1
                next_frontier.append(child)
            if progress is not None and stats.transitions % 2048 < len(letters):
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
#: One expanded transition: the successor's index path, the digest of its state key (None
#: when the transition diverged, so it is not expanded), and the findings it produced.
Expansion = tuple[IndexPath, bytes | None, list[Finding]]


def expand_unit(target: Target, bounds: Bounds, paths: list[IndexPath]) -> list[Expansion]:
    """Expand frontier states given by their index paths (positions in `alphabet`).

    Each state is rebuilt by replaying its path, so a unit is a pure function of its
    arguments: any process, or a retried Ray task, computes the same answer.
    """
    judge = Judge(target)
    counters = in_use(target.cfg, bounds)
    letters = [a for _, a in alphabet(target.cfg, bounds)]
    prefix = setup_prefix(target.cfg, counters)
    out: list[Expansion] = []
    for ipath in paths:
        node, _ = judge.root(prefix + tuple(letters[i] for i in ipath))
        for a, action in enumerate(letters):
            child, divs = judge.advance(node, action)
            if divs:
                out.append((ipath + (a,), None, _findings(target.cfg, counters, child.path, len(prefix), divs)))
            else:
                out.append((ipath + (a,), state_digest(child.key()), []))
    return out


def state_digest(key: Any) -> bytes:
    """A 128-bit digest of a state key, stable across processes and runs (Python's own str
    hash is salted per process). Units ship digests, not keys: ~20x less data to the driver,
    with a collision chance (~n^2 / 2^129) far below any state count we reach."""
    return hashlib.blake2b(repr(key).encode(), digest_size=16).digest()


def owner_of(digest: bytes, partitions: int) -> int:
    """The partition that owns the state with this digest."""
    return int.from_bytes(digest[:8], "little") % partitions


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
    judge = Judge(target)
    prefix = setup_prefix(target.cfg, in_use(target.cfg, bounds))
    stats = Stats()
    found: dict[tuple[str, str], Finding] = {}
    start = time.perf_counter()
    root = state_digest(judge.root(prefix)[0].key())
    visited: list[set[bytes]] = [set() for _ in range(partitions)]
    visited[owner_of(root, partitions)].add(root)
    stats.states = 1
    frontier: list[list[IndexPath]] = [[] for _ in range(partitions)]
    frontier[owner_of(root, partitions)].append(())
    for depth in range(1, bounds.depth + 1):
        if _past(deadline):
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

    @property
    def stats(self) -> Stats:
        """The searches' statistics added up (exhaustive's `exhausted` and depth win)."""
        total = Stats()
        for s in self.searches:
            total.states += s.stats.states
            total.transitions += s.stats.transitions
            total.sequences += s.stats.sequences
            total.elapsed += s.stats.elapsed
            total.depth_reached = max(total.depth_reached, s.stats.depth_reached)
            total.stopped_by_budget |= s.stats.stopped_by_budget
            if s.mode == "exhaustive":
                total.exhausted = s.stats.exhausted
        return total


RandomJob = tuple[Target, Bounds, int, range, float | None]


def _random_worker(args: RandomJob) -> SearchResult:
    target, bounds, seed, restarts, deadline = args
    return random_search(target, bounds, seed, restarts, deadline)


def merge_random(parts: list[SearchResult]) -> SearchResult:
    """Combine swarm workers' results in restart order (so the merge is deterministic)."""
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


def split_restarts(restarts: int, workers: int) -> list[range]:
    """Contiguous, nearly equal ranges of restart indices, one per worker."""
    per, extra = divmod(restarts, workers)
    out, lo = [], 0
    for w in range(workers):
        hi = lo + per + (1 if w < extra else 0)
        out.append(range(lo, hi))
        lo = hi
    return [r for r in out if r]


class Backend:
    """Where searches run. `LocalBackend` uses this machine's processes; the Ray backend
    (vpmu.ray_backend) sends the same units to a Ray cluster."""

    partitions: int = 1

    def random_parts(self, jobs: list[RandomJob]) -> list[SearchResult]:
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

    def random_parts(self, jobs: list[RandomJob]) -> list[SearchResult]:
        if self.partitions == 1:
            return [_random_worker(j) for j in jobs]
        return list(self._executor().map(_random_worker, jobs))

    def unit_runner(self) -> UnitRunner:
        if self.partitions == 1:
            return lambda units: [_run_unit(u) for u in units]
        return local_unit_runner(self._executor())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


MODES = ("random", "exhaustive", "auto")


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
) -> ExploreReport:
    """Run the chosen searches, then shrink one counterexample per divergence kind.

    mode "random", "exhaustive", or "auto" (random first, then exhaustive). Restart r of
    the random search depends on (seed, r) only and the exhaustive search's numbers do not
    depend on the partitioning, so the result depends on (seed, bounds, restarts), not on
    `jobs` or the backend (unless the time budget cuts a search short).
    """
    if mode not in MODES:
        raise VpmuError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    if restarts < 1:
        raise VpmuError(f"--restarts must be >= 1, not {restarts}")
    bounds.validate(target.cfg)
    deadline = None if time_budget is None else time.time() + time_budget
    owned = backend is None
    if backend is None:
        backend = LocalBackend(jobs)
    searches: list[SearchResult] = []
    try:
        single = isinstance(backend, LocalBackend) and backend.partitions == 1
        if mode in ("random", "auto"):
            if single:
                searches.append(random_search(target, bounds, seed, range(restarts), deadline, progress))
            else:
                parts = split_restarts(restarts, backend.partitions)
                searches.append(merge_random(backend.random_parts(
                    [(target, bounds, seed, r, deadline) for r in parts])))
                if progress is not None:
                    progress(searches[-1].stats, len(searches[-1].findings))
        if mode in ("exhaustive", "auto") and not _past(deadline):
            if single:
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
            if key not in best or len(f.suffix) < len(best[key].suffix):
                best[key] = f
    shrunk = [shrink_finding(target, best[k]) for k in sorted(best)]
    return ExploreReport(target, bounds, mode, seed, searches, shrunk)
