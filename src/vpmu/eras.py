"""KVM eras: named bundles of behavioural switches (spec kvm-vpmu.md §0 timeline, §2, §5).

The model code never tests an era's name; it tests the switches below. Each switch names the
commit(s) it stands for. An era named after a release tag models that tag; "6.6.y" models the
current 6.6 stable branch, i.e. 6.6 plus the fixes that were backported to it (each listed in
docs/kvm-model.md with the stable review that carried it).
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
    hw_event_available: until v6.9 a PMC whose eventsel is an architectural event guest
        CPUID.0AH.EBX marks unavailable never counts (`intel_hw_event_available`; removed by
        the v6.9 "Allow programming events that match unsupported arch events" series).
    global_ctrl_reset_enables_gp: refresh sets GLOBAL_CTRL = GP bits (de120e1d692d, v6.9).
    trigger_candidates: which PMCs kvm_pmu_trigger_event looks at (§2.12).
    cpl_shortcut: v6.9+ skip the CPL read when OS == USR (no observable effect; recorded).
    amd_global_status_set: PerfMonV2 GLOBAL_STATUS_SET emulated (Jul-2025 fix, §2.3).
    reset_before_refresh: kvm_pmu_refresh calls kvm_pmu_reset first (v6.8, 1647b52757d5).
    fixed_ctr_ctrl_u8_snapshot: reprogram_fixed_counters keeps the old FIXED_CTR_CTRL in a u8,
        so fixed counter 2's old field reads 0 (76d287b2342e; fixed by 05519c86d699, v6.8-rc,
        backported to 6.6.y), §2.4.
    amd_perfmon_v2: KVM virtualizes AMD PerfMonV2 (4a2771895ca6, v6.5); before, an AMD vPMU is
        version 1 whatever guest CPUID says.
    global_status_host_rsvd_check: a host write of GLOBAL_STATUS with reserved bits fails
        (30dab5c0b65e, v6.5); before, it was stored as is.
    amd_refresh_without_pmu: amd_pmu_refresh runs although the VM has no PMU
        (KVM_PMU_CAP_DISABLE): the metadata says version 1 or 2 while get_gp_pmc_amd finds no
        PMC; fixed by f933b88e2015 (v6.9, backported to 6.6.y).
    feature_msrs_immutable_after_run: KVM_SET_MSRS of PERF_CAPABILITIES with a different value
        after the first KVM_RUN fails (x86.c do_set_msr, 0094f62c7eaa, v6.4); before, it
        refreshed the vPMU of a running vCPU.
    perf_caps_need_pmu_version: vmx_set_msr refuses a non-zero PERF_CAPABILITIES while the PMU
        version is 0 (dropped by a1039111192b, v6.13).
    perf_caps_host_needs_pdcm: a host access to PERF_CAPABILITIES without guest PDCM is
        "unsupported": reads give 0, only a write of 0 succeeds (d75cac366f44, v6.13); before,
        host accesses did not look at PDCM.
    enter_leave_are_branches: ENTER and LEAVE carry IsBranch in the emulator's opcode table
        (018d70ffcfec, v5.17) until e8f85d7884e0 (v6.18).
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
    fixed_ctr_ctrl_u8_snapshot: bool
    amd_perfmon_v2: bool
    global_status_host_rsvd_check: bool
    amd_refresh_without_pmu: bool
    feature_msrs_immutable_after_run: bool
    perf_caps_need_pmu_version: bool
    perf_caps_host_needs_pdcm: bool
    enter_leave_are_branches: bool

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
    description="v6.1 (much of it to v6.5): prev_counter, irq_work PMIs, no LVTPC auto-mask, unmasked "
                "legacy writes, no AMD PerfMonV2",
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
    fixed_ctr_ctrl_u8_snapshot=True,
    amd_perfmon_v2=False,
    global_status_host_rsvd_check=False,
    amd_refresh_without_pmu=True,
    feature_msrs_immutable_after_run=False,
    perf_caps_need_pmu_version=True,
    perf_caps_host_needs_pdcm=False,
    enter_leave_are_branches=True,
)
_V6_6 = replace(
    _V6_1, name="6.6",
    description="v6.6: prev_counter, PMI via KVM_REQ_PMI, LVTPC auto-mask, NMI before PMU",
    pmi_via_irq_work=False, lvtpc_auto_mask="always", mask_counter_writes=True, amd_perfmon_v2=True,
    global_status_host_rsvd_check=True, feature_msrs_immutable_after_run=True,
)
_V6_6_Y = replace(
    _V6_6, name="6.6.y",
    description="6.6 stable branch: 6.6 plus the backported u8 FIXED_CTR_CTRL, AMD LVTPC, GLOBAL_CTRL "
                "RESET, AMD no-PMU and STATUS_SET fixes",
    fixed_ctr_ctrl_u8_snapshot=False, lvtpc_auto_mask="intel-only", global_ctrl_reset_enables_gp=True,
    amd_refresh_without_pmu=False, amd_global_status_set=True,
)
_V6_8 = replace(
    _V6_6, name="6.8",
    description="v6.8: emulated_counter (fd89499a5151), request order PMU, PMI, SMI, NMI",
    default_design="emulated-counter", request_order=NEW_ORDER, reset_before_refresh=True,
    fixed_ctr_ctrl_u8_snapshot=False,
)
_V6_9 = replace(
    _V6_8, name="6.9",
    description="v6.9+: snapshot bitmap, GLOBAL_CTRL reset value, new RDPMC decoding, no AMD LVTPC mask",
    snapshot_reprogram_bitmap=True, lvtpc_auto_mask="intel-only", rdpmc_decoding="v6.9",
    hw_event_available=False, global_ctrl_reset_enables_gp=True, trigger_candidates="global-ctrl",
    cpl_shortcut=True, amd_refresh_without_pmu=False,
)
_MEDIATED = replace(
    _V6_9, name="mediated",
    description="2026 mediated vPMU: guest owns the hardware, direct emulated increments",
    default_design="mediated", trigger_candidates="counting-bitmaps", amd_global_status_set=True,
    perf_caps_need_pmu_version=False, perf_caps_host_needs_pdcm=True, enter_leave_are_branches=False,
)

ERAS: dict[str, Era] = {e.name: e for e in (_V6_1, _V6_6, _V6_6_Y, _V6_8, _V6_9, _MEDIATED)}


def get_era(name: str) -> Era:
    try:
        return ERAS[name]
    except KeyError:
        raise VpmuError(f"unknown KVM era {name!r} (known: {', '.join(ERAS)})") from None
