"""Local APIC pieces the vPMU touches: LVTPC and the NMI queue (spec kvm-vpmu.md §2.11).

* LVTPC: vector 7:0, delivery mode 10:8 (000 fixed, 100 NMI), mask bit 16. Writes keep only
  those bits (KVM's `apic_lvt_mask` for LVTPC; reserved bits are silently dropped).
* `kvm_apic_local_deliver` for LVTPC: delivered only if the APIC is in-kernel, enabled and
  LVTPC is unmasked; a PMI arriving while masked is dropped (not latched). On acceptance the
  era's auto-mask policy may set LVTPC.M (Intel-compatible guests since v6.6; never on AMD
  since the 2024 fix; never before v6.6).
* NMI mode: `nmi_queued++` (the caller raises KVM_REQ_NMI); `process_nmi` folds the queue into
  `nmi_pending` capped at 2 (NMIs are never blocked at the instruction boundaries the model
  stops at, so the cap is 2, never 1). Extra NMIs are dropped.
* Fixed mode: the vector is set in IRR; several PMIs before injection coalesce.
* Other delivery modes (SMI, INIT, ExtINT, ...) are not modelled: the PMI is dropped.
* Userspace APIC (`in_kernel=False`): every PMI is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from vpmu.msrs import LVTPC_DELIVERY_NMI, LVTPC_MASKED

#: KVM's `apic_lvt_mask` for LVTPC (vector, delivery mode, mask); vpmu.arch states the
#: architectural mask on its own.
LVTPC_WRITABLE = LVTPC_MASKED | 0x700 | 0xFF
MODE_FIXED = 0b000
MODE_NMI = 0b100
NMI_PENDING_LIMIT = 2

#: What a Linux guest programs: `apic_write(APIC_LVTPC, APIC_DM_NMI)` (NMI, unmasked).
LINUX_GUEST_LVTPC = LVTPC_DELIVERY_NMI


class Route(Enum):
    """Where `kvm_apic_local_deliver` sent a PMI: what the caller must request next."""

    NMI = "nmi"          # queued as an NMI: KVM_REQ_NMI
    FIXED = "fixed"      # vector set in IRR: KVM_REQ_EVENT
    DROPPED = "dropped"  # nothing to request


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one LVTPC delivery; `why` says why a dropped PMI was dropped."""

    route: Route
    why: str = ""

    def __str__(self) -> str:
        return f"dropped: {self.why}" if self.route is Route.DROPPED else self.route.value


_NMI = Delivery(Route.NMI)
_FIXED = Delivery(Route.FIXED)


@dataclass(slots=True)
class Lapic:
    in_kernel: bool = True
    lvtpc: int = LINUX_GUEST_LVTPC
    nmi_queued: int = 0
    nmi_pending: int = 0
    irr: set[int] = field(default_factory=set)

    def write_lvtpc(self, value: int) -> None:
        """Mirrors kvm_lapic_reg_write(APIC_LVTPC): keep vector, mode and mask."""
        self.lvtpc = value & LVTPC_WRITABLE

    @property
    def masked(self) -> bool:
        return bool(self.lvtpc & LVTPC_MASKED)

    @property
    def mode(self) -> int:
        return self.lvtpc >> 8 & 0b111

    def local_deliver_lvtpc(self, auto_mask: bool) -> Delivery:
        """Mirrors kvm_apic_local_deliver(apic, APIC_LVTPC) + __apic_accept_irq (lapic.c), §2.11."""
        if not self.in_kernel:
            return Delivery(Route.DROPPED, "userspace APIC")
        if self.masked:
            return Delivery(Route.DROPPED, "LVTPC masked")
        mode = self.mode
        if mode == MODE_NMI:
            self.nmi_queued += 1
            out = _NMI
        elif mode == MODE_FIXED:
            self.irr.add(self.lvtpc & 0xFF)
            out = _FIXED
        else:
            return Delivery(Route.DROPPED, f"delivery mode {mode:#o} not modelled")
        if auto_mask:
            self.lvtpc |= LVTPC_MASKED
        return out

    def process_nmi(self) -> int:
        """Mirrors process_nmi() (x86.c): fold queued NMIs into pending, cap 2; returns dropped."""
        total = self.nmi_pending + self.nmi_queued
        self.nmi_queued = 0
        self.nmi_pending = min(total, NMI_PENDING_LIMIT)
        return total - self.nmi_pending

    def inject(self) -> list[str]:
        """Event injection at VM-entry: every pending NMI, then pending fixed-mode vectors.

        The guest's handler is not modelled, so a second pending NMI is taken right after the
        first one's IRET, at the same guest instruction boundary."""
        out = ["nmi"] * self.nmi_pending
        self.nmi_pending = 0
        out += [f"vector {v:#x}" for v in sorted(self.irr)]
        self.irr.clear()
        return out

    def has_events(self) -> bool:
        return bool(self.nmi_pending or self.nmi_queued or self.irr)

    def clone(self) -> Lapic:
        return Lapic(self.in_kernel, self.lvtpc, self.nmi_queued, self.nmi_pending, set(self.irr))

    def key(self) -> tuple[int, ...]:
        return (int(self.in_kernel), self.lvtpc, self.nmi_queued, self.nmi_pending, *sorted(self.irr))
