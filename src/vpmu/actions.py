"""The guest-action vocabulary: what a scenario, the explorer and both models speak.

An action is an immutable value. The architectural reference and the KVM world both take
a sequence of them and return one `Observation` per action (vpmu.trace). Actions that only
the host can take (userspace ioctls, host timing choices) are no-ops for the reference
except where they change architectural state (host MSR writes, the event filter gate).

Conventions shared by both models (documented in docs/scenario-format.md):
* A `Native` run of `count` instructions retires its `branches` branch instructions
  first, then the rest: instruction k of the run is a branch iff k <= branches.
* An intercepted or emulated instruction takes effect first and then retires (it counts
  itself after its effect, spec kvm-vpmu.md §2.12 and R9).
* Instruction numbers are global: the n-th guest instruction retired in the whole run.
* Events other than instructions and branches (cycles, reference cycles, LLC references and
  misses, branch misses, topdown slots) exist only where a `Native` step gives their count;
  the step's last instruction boundary carries all of them (per-step granularity).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal

from vpmu.config import PmuConfig
from vpmu.errors import VpmuError
from vpmu.events import STEP_KINDS, EventKind
from vpmu.filter import EventFilter, FilterAction
from vpmu.insns import insn_class

HostPmiPoint = Literal["before-handler", "after-handler"]


@dataclass(frozen=True, slots=True)
class Native:
    """The guest runs `count` instructions on hardware at `cpl` (`branches` of them branches).

    hold_pmi: a host PMI raised by a hardware overflow during the run normally lands right
    after the overflowing instruction (an NMI VM-exit; the rest of the run continues after
    re-entry). With hold_pmi it stays in flight (skid) until a `HostPmi` step, the next
    VM-exit (where the exiting action's `host_pmi` says whether it lands before or after
    KVM's handler runs) or the next `Native` run without hold_pmi (before its first
    instruction), whichever comes first.

    Other events: `cycles`, `ref_cycles`, `llc_refs`, `llc_misses`, `branch_misses` and `slots`
    are how many of each happen during the run; one not given happens 0 times (the run is not
    timed). They are totals only: a counter sees them all at the run's last instruction
    boundary, and `cycles` is what CMASK/INV/EDGE counters count in (vpmu.events.step_count).
    """

    KIND: ClassVar[str] = "native"
    count: int
    branches: int = 0
    cpl: int = 0
    hold_pmi: bool = False
    cycles: int | None = None
    ref_cycles: int | None = None
    llc_refs: int | None = None
    llc_misses: int | None = None
    branch_misses: int | None = None
    slots: int | None = None

    def totals(self) -> dict[EventKind, int]:
        """How many events of each kind the run has (clamped like the models clamp count and
        branches)."""
        count = max(self.count, 0)
        out: dict[EventKind, int] = {"instructions": count, "branches": max(min(self.branches, count), 0)}
        for kind in STEP_KINDS:
            value = getattr(self, kind)
            out[kind] = max(value, 0) if value is not None else 0
        return out


@dataclass(frozen=True, slots=True)
class Wrmsr:
    """Guest WRMSR (intercepted: KVM handles it, then the instruction retires)."""

    KIND: ClassVar[str] = "wrmsr"
    msr: int
    value: int
    cpl: int = 0
    host_pmi: HostPmiPoint = "before-handler"


@dataclass(frozen=True, slots=True)
class Rdmsr:
    """Guest RDMSR (intercepted)."""

    KIND: ClassVar[str] = "rdmsr"
    msr: int
    cpl: int = 0
    host_pmi: HostPmiPoint = "before-handler"


@dataclass(frozen=True, slots=True)
class Rdpmc:
    """Guest RDPMC with ECX = `ecx` (intercepted); `pce` is CR4.PCE."""

    KIND: ClassVar[str] = "rdpmc"
    ecx: int
    cpl: int = 0
    pce: bool = True
    host_pmi: HostPmiPoint = "before-handler"


@dataclass(frozen=True, slots=True)
class Cpuid:
    """Guest CPUID (always intercepted; its only PMU effect is retiring)."""

    KIND: ClassVar[str] = "cpuid"
    cpl: int = 0
    host_pmi: HostPmiPoint = "before-handler"


@dataclass(frozen=True, slots=True)
class Hlt:
    """Guest HLT at CPL 0: retires, then the vCPU halts until the next action wakes it."""

    KIND: ClassVar[str] = "hlt"
    host_pmi: HostPmiPoint = "before-handler"


@dataclass(frozen=True, slots=True)
class Insn:
    """A plain instruction that KVM emulates (only inside `Emulate` / `Batch`).

    `name` (vpmu.insns.INSNS, e.g. "jmp", "enter", "nop") lets each model decide whether it
    retires as a branch: KVM's emulator by its era's IsBranch table, the architecture by what
    the instruction is. Without a name, `branch` says it for both.
    """

    KIND: ClassVar[str] = "insn"
    branch: bool = False
    cpl: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        if self.name:
            insn_class(self.name)
            if self.branch:
                raise VpmuError(f"insn {self.name!r}: give a name or branch, not both (the name decides)")


EmulatedItem = Insn | Wrmsr | Rdmsr | Rdpmc


@dataclass(frozen=True, slots=True)
class Emulate:
    """Forced emulation (KVM_FEP): each item is emulated on its own VM-exit and KVM's
    requests are processed before the guest re-enters."""

    KIND: ClassVar[str] = "emulate"
    items: tuple[EmulatedItem, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """Invalid guest state: `handle_invalid_guest_state` emulates all items in one exit,
    with no KVM_REQ_PMU processing between them (spec kvm-vpmu.md §2.13)."""

    KIND: ClassVar[str] = "batch"
    items: tuple[EmulatedItem, ...]


@dataclass(frozen=True, slots=True)
class HostPmi:
    """Host timing choice: the in-flight host PMI (if any) lands now, as an NMI VM-exit."""

    KIND: ClassVar[str] = "host_pmi"


@dataclass(frozen=True, slots=True)
class PerfFail:
    """Host choice: from now on creating a perf event fails (`on`) or succeeds again."""

    KIND: ClassVar[str] = "perf_fail"
    on: bool = True


@dataclass(frozen=True, slots=True)
class SetFilter:
    """Userspace KVM_SET_PMU_EVENT_FILTER (spec kvm-vpmu.md §2.14).

    `action` is allow / deny, or the raw number userspace passes (0 allow, 1 deny, anything
    else -EINVAL); `flags` are raw flag bits besides `masked` (bit 0); unknown bits -EINVAL.
    """

    KIND: ClassVar[str] = "set_filter"
    action: FilterAction | int
    events: tuple[int, ...] = ()
    fixed_counter_bitmap: int = 0
    masked: bool = False
    flags: int = 0

    def to_filter(self, vendor: str) -> EventFilter:
        """The filter the ioctl installs; a rejected one raises (vpmu.filter.EventFilter.from_ioctl)."""
        return EventFilter.from_ioctl(self.action, self.events, self.fixed_counter_bitmap, self.masked,
                                      vendor=vendor, flags=self.flags)


@dataclass(frozen=True, slots=True)
class ClearFilter:
    """Userspace removes the event filter."""

    KIND: ClassVar[str] = "clear_filter"


@dataclass(frozen=True, slots=True)
class SetCpuid:
    """Userspace KVM_SET_CPUID2 changing the guest PMU's CPUID: each field given replaces that
    field of the CPU (vpmu.config.PmuConfig), the others stay.

    Before the vCPU first ran, it takes effect (KVM refreshes the vPMU; the reference becomes
    that CPU out of RESET). After it, KVM accepts only identical CPUID (x86/cpuid.c
    `kvm_cpuid_check_equal`, -EINVAL otherwise; c6617c61e8fe, v5.17) and so does the
    reference. One Result (fault = rejected). Counters keep the scenario's `cpu` layout in
    observations: a counter added here is reachable by its MSRs but not observed.
    """

    KIND: ClassVar[str] = "set_cpuid"
    version: int | None = None
    num_gp: int | None = None
    gp_width: int | None = None
    num_fixed: int | None = None
    fixed_width: int | None = None
    fixed_bitmap: int | None = None
    unavailable_events: int | None = None
    event_vector_length: int | None = None
    pdcm: bool | None = None

    def apply(self, cfg: PmuConfig) -> PmuConfig:
        """`cfg` with this action's fields replaced (validated: a bad CPU is a ConfigError).
        Without PDCM the CPU enumerates no PERF_CAPABILITIES, so no full-width writes either
        (what KVM keeps as the MSR's value is the vCPU's, not CPUID's)."""
        changes: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)
                                   if getattr(self, f.name) is not None}
        if changes.get("pdcm") is False:
            changes["full_width_writes"] = False
        return replace(cfg, **changes) if changes else cfg


@dataclass(frozen=True, slots=True)
class HostWrmsr:
    """Userspace KVM_SET_MSRS of one MSR (host-initiated: no sign extension, STATUS writable)."""

    KIND: ClassVar[str] = "host_wrmsr"
    msr: int
    value: int


@dataclass(frozen=True, slots=True)
class HostRdmsr:
    """Userspace KVM_GET_MSRS of one MSR."""

    KIND: ClassVar[str] = "host_rdmsr"
    msr: int


@dataclass(frozen=True, slots=True)
class SaveRestore:
    """Userspace save/restore (migration): KVM_GET_MSRS of every PMU MSR, then KVM_SET_MSRS
    of the same values in the order a VMM restores them (controls after counters)."""

    KIND: ClassVar[str] = "save_restore"


Action = (
    Native | Wrmsr | Rdmsr | Rdpmc | Cpuid | Hlt | Emulate | Batch | HostPmi | PerfFail
    | SetFilter | ClearFilter | SetCpuid | HostWrmsr | HostRdmsr | SaveRestore
)

ACTION_TYPES: dict[str, type] = {
    t.KIND: t
    for t in (Native, Wrmsr, Rdmsr, Rdpmc, Cpuid, Hlt, Insn, Emulate, Batch, HostPmi, PerfFail,
              SetFilter, ClearFilter, SetCpuid, HostWrmsr, HostRdmsr, SaveRestore)
}

#: Actions in which the guest executes (and retires) instructions.
GUEST_ACTIONS = (Native, Wrmsr, Rdmsr, Rdpmc, Cpuid, Hlt, Emulate, Batch)


def keeps_host_pmi_in_flight(action: Any) -> bool:
    """Can a host PMI already in flight stay in flight across `action`? Only where nothing
    lands it: a held native run, a host switch without a VM-exit (`PerfFail`), or a guest
    MSR access at CPL > 0 (it #GPs before any VM-exit). Every other action lands it (a
    VM-exit, a `HostPmi`, a plain native run); the world's skid bound may land it earlier."""
    if isinstance(action, Native):
        return action.hold_pmi
    if isinstance(action, Wrmsr | Rdmsr):
        return action.cpl != 0
    return isinstance(action, PerfFail)


def action_to_dict(action: Any) -> dict[str, Any]:
    """A JSON-ready dict: `{"kind": ..., field: value}`; nested items become dicts too. An
    optional field (default None or "") appears only when it is set."""
    out: dict[str, Any] = {"kind": action.KIND}
    for f in fields(action):
        value = getattr(action, f.name)
        if f.default in (None, "") and value == f.default:
            continue
        if f.name == "items":
            value = [action_to_dict(item) for item in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def retired_by(action: Any) -> int:
    """Guest instructions this action retires when nothing faults."""
    if isinstance(action, Native):
        return action.count
    if isinstance(action, Emulate | Batch):
        return len(action.items)
    return 1 if isinstance(action, GUEST_ACTIONS) else 0
