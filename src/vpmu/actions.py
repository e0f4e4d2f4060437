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
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

from vpmu.filter import FilterAction

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
    """

    KIND: ClassVar[str] = "native"
    count: int
    branches: int = 0
    cpl: int = 0
    hold_pmi: bool = False


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
    """A plain instruction that KVM emulates (only inside `Emulate` / `Batch`)."""

    KIND: ClassVar[str] = "insn"
    branch: bool = False
    cpl: int = 0


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
    """Userspace KVM_SET_PMU_EVENT_FILTER (spec kvm-vpmu.md §2.14)."""

    KIND: ClassVar[str] = "set_filter"
    action: FilterAction
    events: tuple[int, ...] = ()
    fixed_counter_bitmap: int = 0
    masked: bool = False


@dataclass(frozen=True, slots=True)
class ClearFilter:
    """Userspace removes the event filter."""

    KIND: ClassVar[str] = "clear_filter"


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
    | SetFilter | ClearFilter | HostWrmsr | HostRdmsr | SaveRestore
)

ACTION_TYPES: dict[str, type] = {
    t.KIND: t
    for t in (Native, Wrmsr, Rdmsr, Rdpmc, Cpuid, Hlt, Insn, Emulate, Batch, HostPmi, PerfFail,
              SetFilter, ClearFilter, HostWrmsr, HostRdmsr, SaveRestore)
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
    """A JSON-ready dict: `{"kind": ..., field: value}`; nested items become dicts too."""
    out: dict[str, Any] = {"kind": action.KIND}
    for f in fields(action):
        value = getattr(action, f.name)
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
