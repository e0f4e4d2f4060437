"""KVM eras: named bundles of behavioural switches (spec kvm-vpmu.md §0 timeline, §2, §5).

The model code never tests an era's name; it tests the switches below. Each switch names the
commit(s) it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vpmu.errors import VpmuError

RequestName = Literal["nmi", "pmu", "pmi"]
AutoMask = Literal["never", "always", "intel-only"]
RdpmcDecoding = Literal["v6.6", "v6.9"]
TriggerCandidates = Literal["all-valid", "global-ctrl", "counting-bitmaps"]


@dataclass(frozen=True, slots=True)
class Era:
    """A KVM version's vPMU behaviour as switches.

    request_order: order vcpu_enter_guest checks NMI / PMU / PMI requests (§2.13):
        v6.6 and earlier NMI, PMU, PMI; v6.7+ (fad505b2cb83) PMU, PMI, NMI.
    snapshot_reprogram_bitmap: v6.9+ (004a0aa56ede) kvm_pmu_handle_event copies and clears the
        bitmap up front and re-sets failed bits; before, it walks the live bitmap and
        reprogram_counter clears the bit when it completes (§2.8).
    pmi_via_irq_work: v6.1-v6.5: a hardware overflow handled outside an NMI VM-exit delivers
        the PMI immediately (irq_work) instead of KVM_REQ_PMI (§2.10; removed by 73554b29bd70).
    lvtpc_auto_mask: LVTPC.M set when a PMI is accepted: never (<v6.6), always (v6.6,
        a16eb25b09c0), Intel-compatible guests only (2024 fix, §2.11).
    mask_counter_writes: pmc_write_counter masks to the width (v6.6+, b29a2acd36dd); before,
        sign-extended legacy writes left bits above W set (§3.4).
    rdpmc_decoding: ECX decoding of RDPMC (§2.6).
    hw_event_available: v6.6 consults CPUID.0AH.EBX availability (`hw_event_available`). The
        configs modelled never mark an event unavailable, so the check always passes.
    global_ctrl_reset_enables_gp: refresh sets GLOBAL_CTRL = GP bits (de120e1d692d, v6.9).
    trigger_candidates: which PMCs kvm_pmu_trigger_event looks at (§2.12).
    cpl_shortcut: v6.9+ skip the CPL read when OS == USR (no observable effect; recorded).
    amd_global_status_set: PerfMonV2 GLOBAL_STATUS_SET emulated (Jul-2025 fix, §2.3).
    reset_before_refresh: kvm_pmu_refresh calls kvm_pmu_reset first (v6.8, 1647b52757d5).
    """

    name: str
    description: str
    default_design: str
    request_order: tuple[RequestName, ...]
    snapshot_reprogram_bitmap: bool
    pmi_via_irq_work: bool
    lvtpc_auto_mask: AutoMask
    mask_counter_writes: bool
    rdpmc_decoding: RdpmcDecoding
    hw_event_available: bool
    global_ctrl_reset_enables_gp: bool
    trigger_candidates: TriggerCandidates
    cpl_shortcut: bool
    amd_global_status_set: bool
    reset_before_refresh: bool

    def auto_mask_lvtpc(self, vendor: str) -> bool:
        if self.lvtpc_auto_mask == "always":
            return True
        return self.lvtpc_auto_mask == "intel-only" and vendor == "intel"


OLD_ORDER: tuple[RequestName, ...] = ("nmi", "pmu", "pmi")
NEW_ORDER: tuple[RequestName, ...] = ("pmu", "pmi", "nmi")

ERAS: dict[str, Era] = {
    e.name: e
    for e in (
        Era("6.1", "v6.1-v6.5: prev_counter, irq_work PMIs, no LVTPC auto-mask, unmasked legacy writes",
            "prev-counter", OLD_ORDER, False, True, "never", False, "v6.6", True, False, "all-valid",
            False, False, False),
        Era("6.6", "v6.6: prev_counter, PMI via KVM_REQ_PMI, LVTPC auto-mask, NMI before PMU",
            "prev-counter", OLD_ORDER, False, False, "always", True, "v6.6", True, False, "all-valid",
            False, False, False),
        Era("6.8", "v6.8: emulated_counter (fd89499a5151), request order PMU, PMI, SMI, NMI",
            "emulated-counter", NEW_ORDER, False, False, "always", True, "v6.6", True, False,
            "all-valid", False, False, True),
        Era("6.9", "v6.9+: snapshot bitmap, GLOBAL_CTRL reset value, new RDPMC decoding, no AMD LVTPC mask",
            "emulated-counter", NEW_ORDER, True, False, "intel-only", True, "v6.9", False, True,
            "global-ctrl", True, False, True),
        Era("mediated", "2026 mediated vPMU: guest owns the hardware, direct emulated increments",
            "mediated", NEW_ORDER, True, False, "intel-only", True, "v6.9", False, True,
            "counting-bitmaps", True, True, True),
    )
}


def get_era(name: str) -> Era:
    try:
        return ERAS[name]
    except KeyError:
        raise VpmuError(f"unknown KVM era {name!r} (known: {', '.join(ERAS)})") from None
