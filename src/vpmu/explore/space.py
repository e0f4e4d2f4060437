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
from vpmu.config import AMD_COUNTER_WIDTH, FIXED_BASE, PmuConfig
from vpmu.errors import VpmuError
from vpmu.events import ENCODINGS, FIXED_OS, FIXED_PMI, FIXED_USR, make_eventsel
from vpmu.pmc_map import counter_msr, eventsel_msr, global_ctrl_msr, rdpmc_ecx, status_clear_msr, status_msr

#: Action kinds a swarm worker can switch off (names used in reports and --kinds). Not the
#: checker's divergence kinds (`vpmu.checker.KINDS`).
ACTION_KINDS = (
    "native", "native-held", "host-pmi", "cpuid", "emulate", "batch", "write-counter",
    "read", "clear-status", "unmask-lvtpc", "toggle", "filter", "save-restore", "perf-fail",
)


#: The explorer's default counter width on Intel: small, so that wraps are reachable in few steps.
NARROW_WIDTH = 4


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the search may do. Every field is a CLI option of `vpmu explore`.

    width:   counter width in bits (small so that wraps are reachable in few steps; AMD
             counters are always AMD_COUNTER_WIDTH bits, where the written values -N keep
             wraps reachable: `default_width`).
    gp:      general-purpose counters in use (counting instructions, PMI on overflow).
    fixed:   fixed counters in use (Intel v2+ only; fixed 0 counts instructions).
    depth:   actions after the set-up prefix.
    batch:   largest invalid-guest-state batch (emulated instructions in one exit).
    native:  native run lengths the guest may execute in one step.
    values:  counter write values; -N means 2^width - N.
    kinds:   action kinds in the alphabet (see ACTION_KINDS); perf-fail is off by default.
    """

    width: int = NARROW_WIDTH
    gp: int = 1
    fixed: int = 0
    depth: int = 5
    batch: int = 3
    native: tuple[int, ...] = (1, 2, 3)
    values: tuple[int, ...] = (-1, -2, -3, 0)
    kinds: tuple[str, ...] = tuple(k for k in ACTION_KINDS if k != "perf-fail")

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
        if not self.kinds:
            raise bad("kinds", f"needs at least one of: {', '.join(ACTION_KINDS)}")
        unknown = set(self.kinds) - set(ACTION_KINDS)
        if unknown:
            raise bad("kinds", f"unknown kind {sorted(unknown)[0]!r} (known: {', '.join(ACTION_KINDS)})")
        return cfg.with_width(self.width)

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "gp": self.gp, "fixed": self.fixed, "depth": self.depth,
                "batch": self.batch, "native": list(self.native), "values": list(self.values),
                "kinds": list(self.kinds)}


def default_width(cfg: PmuConfig) -> int:
    """The explorer's counter width for `cfg`: 4 bits on Intel (the width comes from guest
    CPUID, so narrow counters are realisable), AMD_COUNTER_WIDTH on AMD (the only width KVM
    gives an AMD guest)."""
    return NARROW_WIDTH if cfg.is_intel else AMD_COUNTER_WIDTH


def counters_in_use(cfg: PmuConfig, bounds: Bounds) -> tuple[int, ...]:
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
    used = counters_in_use(cfg, bounds)
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
