"""The search space: what the explorer may do, from explicit bounds (TLC's *model*).

A fixed set-up prefix programs the counters in use, then every step picks one action from a
finite alphabet built from the bounds. `Bounds.fit` is the one place bounds are checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
from vpmu.assumptions import ASSUMPTIONS, action_assumptions
from vpmu.config import AMD_COUNTER_WIDTH, FIXED_BASE, PmuConfig
from vpmu.errors import VpmuError, shown
from vpmu.events import ENCODINGS, FIXED_EVENTS, FIXED_KINDS, FIXED_OS, FIXED_PMI, FIXED_USR, EventKind, make_eventsel
from vpmu.pmc_map import (
    U64,
    counter_msr,
    counter_name,
    eventsel_msr,
    global_ctrl_msr,
    rdpmc_ecx,
    status_clear_msr,
    status_msr,
)

#: Action kinds a swarm worker can switch off (names used in reports and --kinds). Not the
#: checker's divergence kinds (`vpmu.checker.KINDS`).
ACTION_KINDS = (
    "native", "native-held", "host-pmi", "cpuid", "emulate", "batch", "write-counter",
    "read", "clear-status", "unmask-lvtpc", "toggle", "filter", "save-restore", "perf-fail",
)


#: The explorer's default counter width on Intel: small, so that wraps are reachable in few steps.
NARROW_WIDTH = 4
#: The longest native run a search may try, in wraps of the counter: longer runs show nothing
#: new and only cost time (each wrap is one overflow to simulate and check).
MAX_WRAPS_PER_RUN = 64


@dataclass(frozen=True, slots=True)
class CountedEvent:
    """What an explored counter counts: instructions or branches retired, at CPL 0 (`os`)
    and/or CPL > 0 (`usr`). Spelled `instructions`, `branches:usr`, `instructions:os`."""

    kind: EventKind
    usr: bool = True
    os: bool = True

    @classmethod
    def parse(cls, text: str) -> CountedEvent:
        name, _, ring = text.strip().partition(":")
        if name not in EVENT_KINDS or ring not in ("", "usr", "os"):
            raise VpmuError(f"invalid bound --events: {text.strip()!r} is not one of "
                            f"{', '.join(k + s for k in EVENT_KINDS for s in ('', ':usr', ':os'))}")
        return cls(name, usr=ring != "os", os=ring != "usr")

    @property
    def name(self) -> str:
        return self.kind + ("" if self.usr and self.os else ":usr" if self.usr else ":os")


#: The events `--events` accepts, in the order of their names.
EVENT_KINDS: tuple[EventKind, ...] = ("instructions", "branches")

#: What each counter in use counts, by PMC index (a counter not listed counts instructions).
EventMap = tuple[tuple[int, CountedEvent], ...]


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the search may do. Every field is a CLI option of `vpmu explore`.

    width:   counter width in bits (small so that wraps are reachable in few steps; AMD
             counters are always AMD_COUNTER_WIDTH bits, where the written values -N keep
             wraps reachable: `default_width`).
    gp:      general-purpose counters in use (each counting its event, PMI on overflow).
    fixed:   fixed counters in use (Intel v2+ only; only fixed 0 counts an explorable event).
    depth:   actions after the set-up prefix.
    batch:   largest invalid-guest-state batch (emulated instructions in one exit).
    native:  native run lengths the guest may execute in one step.
    values:  counter write values; -N means 2^width - N.
    kinds:   action kinds in the alphabet (see ACTION_KINDS); perf-fail is off by default.
    events:  what the counters count (`CountedEvent` names): one for every counter in use, or
             one per counter (GP counters first, then fixed).
    skid:    bounded PMI skid in guest steps (`vpmu.world.WorldOptions.skid`).
    assume:  the host-timing assumptions letters may rest on (`vpmu.assumptions`); letters
             that need another leave the alphabet.
    """

    width: int = NARROW_WIDTH
    gp: int = 1
    fixed: int = 0
    depth: int = 5
    batch: int = 3
    native: tuple[int, ...] = (1, 2, 3)
    values: tuple[int, ...] = (-1, -2, -3, 0)
    kinds: tuple[str, ...] = tuple(k for k in ACTION_KINDS if k != "perf-fail")
    events: tuple[str, ...] = ("instructions",)
    skid: int = 1
    assume: tuple[str, ...] = tuple(ASSUMPTIONS)

    def fit(self, cfg: PmuConfig) -> PmuConfig:
        """Check every bound against the CPU `cfg`; return `cfg` narrowed to `width`, the CPU
        the search runs on. The one validation of bounds: `explore()` calls it."""

        def bad(name: str, why: str) -> VpmuError:
            return VpmuError(f"invalid bound --{name}: {why}")

        if not 2 <= self.width <= 64:
            raise bad("width", f"must be 2..64, not {self.width}")
        if not cfg.is_intel and self.width != AMD_COUNTER_WIDTH:
            raise bad("width", f"AMD counters are always {AMD_COUNTER_WIDTH} bits wide (KVM's amd_pmu_refresh), "
                      f"not {self.width}; leave --width out for an AMD CPU")
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
        longest = min(MAX_WRAPS_PER_RUN << self.width, U64)
        if any(n > longest for n in self.native):
            raise bad("native", f"run lengths must be <= {longest} ({MAX_WRAPS_PER_RUN} wraps of a "
                      f"{self.width}-bit counter), not {shown(max(self.native))}")
        if any(not -(1 << self.width) <= v < 1 << self.width for v in self.values):
            wide = next(v for v in self.values if not -(1 << self.width) <= v < 1 << self.width)
            raise bad("values", f"each value must fit a {self.width}-bit counter (-N is 2^width - N, N <= "
                      f"2^width), not {shown(wide)}")
        if not 0 <= self.skid <= 64:
            raise bad("skid", f"must be 0..64 guest steps, not {self.skid}")
        if not self.kinds:
            raise bad("kinds", f"needs at least one of: {', '.join(ACTION_KINDS)}")
        unknown = set(self.kinds) - set(ACTION_KINDS)
        if unknown:
            raise bad("kinds", f"unknown kind {sorted(unknown)[0]!r} (known: {', '.join(ACTION_KINDS)})")
        unknown = set(self.assume) - set(ASSUMPTIONS)
        if unknown:
            raise bad("assume", f"unknown assumption {sorted(unknown)[0]!r} (known: {', '.join(ASSUMPTIONS)})")
        narrowed = cfg.with_width(self.width)
        self.event_map(narrowed)
        if not alphabet(narrowed, self):
            raise bad("kinds", f"no action of {', '.join(self.kinds)} is allowed by --assume "
                      f"{','.join(self.assume) or 'none'}")
        return narrowed

    def event_map(self, cfg: PmuConfig) -> EventMap:
        """What each counter in use counts; raises on events a counter cannot count (a fixed
        counter counts only its own event, and only fixed counter 0's is explorable). A fixed
        counter whose own event is not explorable is too many `--counters`, whatever --events
        says; a fixed counter 0 asked for another event is a bad --events."""
        used = counters_in_use(cfg, self)
        for n, pmc in enumerate(p for p in used if p >= FIXED_BASE):
            if FIXED_EVENTS.get(pmc - FIXED_BASE) != ENCODINGS["intel"]["instructions"]:
                own = FIXED_KINDS.get(pmc - FIXED_BASE, "?")
                raise VpmuError(f"invalid bound --counters: {counter_name(pmc)} counts only its own event ({own}), "
                                f"which the explorer cannot drive; use at most {n} fixed counter"
                                f"{'' if n == 1 else 's'} (--counters {self.gp},{n})")
        if len(self.events) not in (1, len(used)):
            raise VpmuError(f"invalid bound --events: give one event for all {len(used)} counters in use or "
                            f"one per counter (GP first, then fixed), not {len(self.events)}")
        events = [CountedEvent.parse(e) for e in self.events] * (len(used) if len(self.events) == 1 else 1)
        for pmc, ev in zip(used, events, strict=True):
            if pmc >= FIXED_BASE and ev.kind != "instructions":
                own = FIXED_KINDS.get(pmc - FIXED_BASE, "?")
                raise VpmuError(f"invalid bound --events: {counter_name(pmc)} counts only its own event ({own}), "
                                f"not {ev.name}")
        return tuple(zip(used, events, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "gp": self.gp, "fixed": self.fixed, "depth": self.depth,
                "batch": self.batch, "native": list(self.native), "values": list(self.values),
                "kinds": list(self.kinds), "events": list(self.events), "skid": self.skid,
                "assume": list(self.assume)}


def default_width(cfg: PmuConfig) -> int:
    """The explorer's counter width for `cfg`: 4 bits on Intel (the width comes from guest
    CPUID, so narrow counters are realisable), AMD_COUNTER_WIDTH on AMD (the only width KVM
    gives an AMD guest)."""
    return NARROW_WIDTH if cfg.is_intel else AMD_COUNTER_WIDTH


def counters_in_use(cfg: PmuConfig, bounds: Bounds) -> tuple[int, ...]:
    """PMC indices the search programs: the first `gp` GP and the first `fixed` fixed."""
    fixed = cfg.fixed_indices[: bounds.fixed]
    return tuple(range(bounds.gp)) + tuple(FIXED_BASE + i for i in fixed)


def counted(events: EventMap, pmc: int) -> CountedEvent:
    """The event `pmc` counts (instructions when the map does not list it)."""
    return dict(events).get(pmc, CountedEvent("instructions"))


def eventsel_of(cfg: PmuConfig, event: CountedEvent, enable: bool = True) -> int:
    """The GP event select a Linux guest's perf writes for `event` (INT set)."""
    return make_eventsel(ENCODINGS[cfg.vendor][event.kind], usr=event.usr, os=event.os, intr=True,
                         enable=enable)


def setup_prefix(cfg: PmuConfig, counters: Sequence[int], events: EventMap = ()) -> tuple[Action, ...]:
    """Program `counters` to count their events (`events`) with a PMI and enable them, the way
    a Linux guest's perf does: global enable off, then the selectors, then the global enable.

    Writing GLOBAL_CTRL first makes the set-up independent of its reset value (which
    changed in 6.9, spec kvm-vpmu.md §2.1), so the search starts from the same state on
    every era. The LVTPC is already an unmasked NMI in both machines (a Linux guest's).
    """
    ctl = global_ctrl_msr(cfg)
    steps: list[Action] = [Wrmsr(ctl, 0)] if cfg.has_global_msrs else []
    fixed_ctrl = 0
    enable = 0
    for idx in counters:
        enable |= 1 << idx
        ev = counted(events, idx)
        if idx >= FIXED_BASE:
            ring = (FIXED_OS if ev.os else 0) | (FIXED_USR if ev.usr else 0)
            fixed_ctrl |= (ring | FIXED_PMI) << 4 * (idx - FIXED_BASE)
        else:
            steps.append(Wrmsr(eventsel_msr(cfg, idx), eventsel_of(cfg, ev)))
    if fixed_ctrl:
        steps.append(Wrmsr(msrs.IA32_FIXED_CTR_CTRL, fixed_ctrl))
    if cfg.has_global_msrs:
        steps.append(Wrmsr(ctl, enable))
    return tuple(steps)


def alphabet(cfg: PmuConfig, bounds: Bounds) -> list[tuple[str, Action]]:
    """Every (kind, action) a step may choose, in a fixed order (the BFS order).

    What the counted events need joins the alphabet: native runs of branches and emulated
    branches when branches are counted, native runs at CPL 3 when an event counts at one
    ring only. Letters resting on an assumption `bounds.assume` does not allow leave it.
    """
    mask = (1 << bounds.width) - 1
    used = counters_in_use(cfg, bounds)
    events = bounds.event_map(cfg)
    counted_events = [ev for _, ev in events]
    branchy = any(ev.kind == "branches" for ev in counted_events)
    one_ring = any(not (ev.usr and ev.os) for ev in counted_events)
    out: list[tuple[str, Action]] = []
    kinds = set(bounds.kinds)
    allowed = set(bounds.assume)

    def add(kind: str, action: Action) -> None:
        if kind in kinds and action_assumptions(action) <= allowed:
            out.append((kind, action))

    def runs(hold: bool) -> list[Native]:
        return [Native(n, branches=br, cpl=cpl, hold_pmi=hold) for n in bounds.native
                for br in ((0, n) if branchy else (0,)) for cpl in ((0, 3) if one_ring else (0,))]

    for run in runs(hold=False):
        add("native", run)
    for run in runs(hold=True):
        add("native-held", run)
    add("host-pmi", HostPmi())
    add("cpuid", Cpuid())
    add("cpuid", Cpuid(host_pmi="after-handler"))
    add("emulate", Emulate((Insn(),)))
    if branchy:
        add("emulate", Emulate((Insn(branch=True),)))
    for k in range(2, bounds.batch + 1):
        add("batch", Batch((Insn(),) * k))
    if cfg.has_global_msrs and bounds.batch >= 2:
        add("batch", Batch((Insn(),) * bounds.batch + (Rdmsr(status_msr(cfg)),)))
    if branchy and bounds.batch >= 2:
        add("batch", Batch((Insn(branch=True),) * bounds.batch))
    for idx in used:
        for v in bounds.values:
            add("write-counter", Wrmsr(counter_msr(cfg, idx), v & mask))
    for idx in used:
        add("read", Rdpmc(rdpmc_ecx(idx)))
    if cfg.has_global_msrs:
        add("read", Rdmsr(status_msr(cfg)))
        add("clear-status", Wrmsr(status_clear_msr(cfg), sum(1 << i for i in used)))
    add("unmask-lvtpc", Wrmsr(msrs.X2APIC_LVTPC, msrs.LVTPC_DELIVERY_NMI))
    for idx, ev in events:
        if idx < FIXED_BASE:
            add("toggle", Wrmsr(eventsel_msr(cfg, idx), eventsel_of(cfg, ev, enable=False)))
            add("toggle", Wrmsr(eventsel_msr(cfg, idx), eventsel_of(cfg, ev)))
    denied = tuple(sorted({ENCODINGS[cfg.vendor][ev.kind] for idx, ev in events if idx < FIXED_BASE}
                          or {ENCODINGS[cfg.vendor]["instructions"]}))
    add("filter", SetFilter("deny", denied, fixed_counter_bitmap=0b111 if cfg.is_intel else 0))
    add("filter", ClearFilter())
    add("save-restore", SaveRestore())
    add("perf-fail", PerfFail(True))
    add("perf-fail", PerfFail(False))
    return out


def kind_of(cfg: PmuConfig, action: Action) -> str:
    """The action kind (ACTION_KINDS, the alphabet's names) an action belongs to, also for an
    action the shrinker simplified; another guest action is named by its own KIND."""
    match action:
        case Native():
            return "native-held" if action.hold_pmi else "native"
        case HostPmi():
            return "host-pmi"
        case Wrmsr() if cfg.has_global_msrs and action.msr == status_clear_msr(cfg):
            return "clear-status"
        case Wrmsr() if action.msr == msrs.X2APIC_LVTPC:
            return "unmask-lvtpc"
        case Wrmsr() if any(action.msr == counter_msr(cfg, p) for p in cfg.pmc_indices):
            return "write-counter"
        case Wrmsr() if any(action.msr == eventsel_msr(cfg, p) for p in range(cfg.num_gp)):
            return "toggle"
        case Rdpmc() | Rdmsr():
            return "read"
        case SetFilter() | ClearFilter():
            return "filter"
        case SaveRestore():
            return "save-restore"
        case PerfFail():
            return "perf-fail"
    return action.KIND


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
