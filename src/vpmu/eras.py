"""KVM eras: named bundles of behavioural switches (spec kvm-vpmu.md §0 timeline, §2, §5).

The model code never tests an era's name; it tests the switches below. Each switch names the
commit(s) it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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

# The table reads as history: the oldest era spells out every switch, each later one names
# only what changed since the era before it.
_V6_1 = Era(
    name="6.1",
    description="v6.1-v6.5: prev_counter, irq_work PMIs, no LVTPC auto-mask, unmasked legacy writes",
    default_design="prev-counter",
    request_order=OLD_ORDER,
    snapshot_reprogram_bitmap=False,
    pmi_via_irq_work=True,
    lvtpc_auto_mask="never",
    mask_counter_writes=False,
    rdpmc_decoding="v6.6",
    hw_event_available=True,
    global_ctrl_reset_enables_gp=False,
    trigger_candidates="all-valid",
    cpl_shortcut=False,
    amd_global_status_set=False,
    reset_before_refresh=False,
)
_V6_6 = replace(
    _V6_1, name="6.6",
    description="v6.6: prev_counter, PMI via KVM_REQ_PMI, LVTPC auto-mask, NMI before PMU",
    pmi_via_irq_work=False, lvtpc_auto_mask="always", mask_counter_writes=True,
)
_V6_8 = replace(
    _V6_6, name="6.8",
    description="v6.8: emulated_counter (fd89499a5151), request order PMU, PMI, SMI, NMI",
    default_design="emulated-counter", request_order=NEW_ORDER, reset_before_refresh=True,
)
_V6_9 = replace(
    _V6_8, name="6.9",
    description="v6.9+: snapshot bitmap, GLOBAL_CTRL reset value, new RDPMC decoding, no AMD LVTPC mask",
    snapshot_reprogram_bitmap=True, lvtpc_auto_mask="intel-only", rdpmc_decoding="v6.9",
    hw_event_available=False, global_ctrl_reset_enables_gp=True, trigger_candidates="global-ctrl",
    cpl_shortcut=True,
)
_MEDIATED = replace(
    _V6_9, name="mediated",
    description="2026 mediated vPMU: guest owns the hardware, direct emulated increments",
    default_design="mediated", trigger_candidates="counting-bitmaps", amd_global_status_set=True,
)

ERAS: dict[str, Era] = {e.name: e for e in (_V6_1, _V6_6, _V6_8, _V6_9, _MEDIATED)}


def get_era(name: str) -> Era:
    try:
        return ERAS[name]
    except KeyError:
        raise VpmuError(f"unknown KVM era {name!r} (known: {', '.join(ERAS)})") from None
