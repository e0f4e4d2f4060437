"""KVM vPMU MSR and RDPMC handlers: x86.c dispatch, pmu.c common MSRs, Intel and AMD vendor
handlers (spec kvm-vpmu.md §2.2-§2.6).

Each handler returns `None` for a #GP ("return 1" in KVM) or the value read / 0 written.
"""

from __future__ import annotations

from vpmu import msrs as M
from vpmu.config import FIXED_BASE
from vpmu.kvm import AMD64_NUM_COUNTERS_CORE, KvmPmc, KvmVcpu
from vpmu.pmc_map import U64

# x86.c lists these K7/P6 MSRs specially: when not valid for the vPMU, guest writes are
# ignored and reads return 0 instead of #GP (spec §2.2).
_LEGACY_IGNORED = M.LEGACY_PMU_MSRS
_INTEL_GLOBAL = (M.IA32_PERF_GLOBAL_STATUS, M.IA32_PERF_GLOBAL_CTRL, M.IA32_PERF_GLOBAL_OVF_CTRL)
_AMD_GLOBAL = (M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL,
               M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR)


def _gp_index(msr: int, base: int, n: int = 8) -> int | None:
    """The index arithmetic of get_gp_pmc() / get_fixed_pmc() (pmu.h): msr - base if in range."""
    i = msr - base
    return i if 0 <= i < n else None


# --- Intel --------------------------------------------------------------------------------


def _get_gp_pmc(kvm: KvmVcpu, msr: int, base: int) -> KvmPmc | None:
    """Mirrors get_gp_pmc() (pmu.h): the GP PMC `msr - base` names, if the vPMU has it."""
    i = _gp_index(msr, base)
    return kvm.pmu.gp_counters[i] if i is not None and i < kvm.pmu.nr_arch_gp_counters else None


def _get_fixed_pmc(kvm: KvmVcpu, msr: int) -> KvmPmc | None:
    """Mirrors get_fixed_pmc() (pmu.h): the fixed PMC an IA32_FIXED_CTRx names, if the vPMU has it."""
    i = _gp_index(msr, M.IA32_FIXED_CTR0, 4)
    return kvm.pmu.fixed_counters[i] if i is not None and i < kvm.pmu.nr_arch_fixed_counters else None


def intel_msr_idx_to_pmc(kvm: KvmVcpu, msr: int) -> KvmPmc | None:
    """Mirrors intel_msr_idx_to_pmc() (vmx/pmu_intel.c): legacy GP counters, eventsels and
    fixed counters (not the full-width aliases)."""
    return (_get_gp_pmc(kvm, msr, M.IA32_PMC0) or _get_gp_pmc(kvm, msr, M.IA32_PERFEVTSEL0)
            or _get_fixed_pmc(kvm, msr))


def _intel_fw_pmc(kvm: KvmVcpu, msr: int) -> KvmPmc | None:
    """Mirrors get_fw_gp_pmc() (vmx/pmu_intel.c): IA32_A_PMCx only with full-width writes
    (fw_writes_is_enabled: PERF_CAPABILITIES.FW_WRITES and guest PDCM)."""
    if not vcpu_get_perf_capabilities(kvm) & M.PERF_CAP_FW_WRITES:
        return None
    return _get_gp_pmc(kvm, msr, M.IA32_A_PMC0)


def intel_is_valid_msr(kvm: KvmVcpu, msr: int) -> bool:
    """Mirrors intel_is_valid_msr() (vmx/pmu_intel.c), spec §2.2 (no PEBS/DS/LBR MSRs)."""
    if msr == M.IA32_FIXED_CTR_CTRL:
        return kvm.pmu.version > 1
    return intel_msr_idx_to_pmc(kvm, msr) is not None or _intel_fw_pmc(kvm, msr) is not None


def intel_pmu_set_msr(kvm: KvmVcpu, msr: int, data: int, host: bool) -> bool:
    """Mirrors intel_pmu_set_msr() (vmx/pmu_intel.c), spec §2.4. False = #GP."""
    p = kvm.pmu
    if msr == M.IA32_FIXED_CTR_CTRL:
        if data & p.fixed_ctr_ctrl_rsvd:
            return False
        if p.fixed_ctr_ctrl != data:
            kvm.reprogram_fixed_counters(data)
        return True
    fw = _intel_fw_pmc(kvm, msr)
    pmc = fw or _get_gp_pmc(kvm, msr, M.IA32_PMC0)
    if pmc is not None:
        if fw is not None and data & ~p.counter_bitmask[0]:
            return False
        if fw is None and not host:
            data = _sign_extend32(data)
        kvm.pmc_write_counter(pmc, data)
        return True
    pmc = _get_fixed_pmc(kvm, msr)
    if pmc is not None:
        kvm.pmc_write_counter(pmc, data)
        return True
    pmc = _get_gp_pmc(kvm, msr, M.IA32_PERFEVTSEL0)
    if pmc is not None:
        if data & p.reserved_bits:
            return False
        if data != pmc.eventsel:
            pmc.eventsel = data
            kvm.kvm_pmu_request_counter_reprogram(pmc)
        return True
    return False


def intel_pmu_get_msr(kvm: KvmVcpu, msr: int) -> int | None:
    """Mirrors intel_pmu_get_msr() (vmx/pmu_intel.c), spec §2.4."""
    p = kvm.pmu
    if msr == M.IA32_FIXED_CTR_CTRL:
        return p.fixed_ctr_ctrl
    pmc = _intel_fw_pmc(kvm, msr) or _get_gp_pmc(kvm, msr, M.IA32_PMC0)
    if pmc is not None:
        return kvm.pmc_read_counter(pmc) & p.counter_bitmask[0]
    pmc = _get_fixed_pmc(kvm, msr)
    if pmc is not None:
        return kvm.pmc_read_counter(pmc) & p.counter_bitmask[1]
    pmc = _get_gp_pmc(kvm, msr, M.IA32_PERFEVTSEL0)
    return pmc.eventsel if pmc is not None else None


def _sign_extend32(data: int) -> int:
    """The `(s64)(s32)data` of intel_pmu_set_msr() for legacy IA32_PMCx writes (spec §2.4)."""
    low = data & 0xFFFF_FFFF
    return (low | 0xFFFF_FFFF_0000_0000) if low >> 31 else low


# --- AMD ----------------------------------------------------------------------------------


def get_gp_pmc_amd(kvm: KvmVcpu, msr: int) -> tuple[KvmPmc, bool] | None:
    """Mirrors get_gp_pmc_amd() (svm/pmu.c), spec §2.5: (pmc, is_eventsel) or None. No PMC
    when the VM has no PMU (kvm->arch.enable_pmu), even where amd_pmu_refresh ran anyway."""
    p = kvm.pmu
    if not kvm.enable_pmu or p.version == 0:
        return None
    if M.MSR_F15H_PERF_CTL0 <= msr <= M.MSR_F15H_PERF_CTL0 + 11:
        if not kvm.cfg.perfctr_core:
            return None
        off = msr - M.MSR_F15H_PERF_CTL0
        idx, is_sel = off // 2, off % 2 == 0
    elif M.MSR_K7_EVNTSEL0 <= msr <= M.MSR_K7_EVNTSEL0 + 3:
        idx, is_sel = msr - M.MSR_K7_EVNTSEL0, True
    elif M.MSR_K7_PERFCTR0 <= msr <= M.MSR_K7_PERFCTR0 + 3:
        idx, is_sel = msr - M.MSR_K7_PERFCTR0, False
    else:
        return None
    if idx >= p.nr_arch_gp_counters:
        return None
    return p.gp_counters[idx], is_sel


def amd_is_valid_msr(kvm: KvmVcpu, msr: int) -> bool:
    """Mirrors amd_is_valid_msr() (svm/pmu.c), spec §2.2."""
    p = kvm.pmu
    if M.MSR_K7_EVNTSEL0 <= msr <= M.MSR_K7_PERFCTR0 + 3:
        return p.version > 0
    if M.MSR_F15H_PERF_CTL0 <= msr <= M.MSR_F15H_PERF_CTL0 + 11:
        return kvm.cfg.perfctr_core
    if msr in _AMD_GLOBAL:
        return p.version > 1
    if msr == M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET:
        return p.version > 1 and kvm.era.amd_global_status_set
    return False


def amd_pmu_set_msr(kvm: KvmVcpu, msr: int, data: int) -> bool:
    """Mirrors amd_pmu_set_msr() (svm/pmu.c), spec §2.5: never #GPs on a real PMC."""
    found = get_gp_pmc_amd(kvm, msr)
    if found is None:
        return False
    pmc, is_sel = found
    if is_sel:
        data &= ~kvm.pmu.reserved_bits
        if data != pmc.eventsel:
            pmc.eventsel = data
            kvm.kvm_pmu_request_counter_reprogram(pmc)
    else:
        kvm.pmc_write_counter(pmc, data)
    return True


def amd_pmu_get_msr(kvm: KvmVcpu, msr: int) -> int | None:
    """Mirrors amd_pmu_get_msr() (svm/pmu.c), spec §2.5."""
    found = get_gp_pmc_amd(kvm, msr)
    if found is None:
        return None
    pmc, is_sel = found
    return pmc.eventsel if is_sel else kvm.pmc_read_counter(pmc)


# --- common -------------------------------------------------------------------------------


def kvm_pmu_is_valid_msr(kvm: KvmVcpu, msr: int) -> bool:
    """Mirrors kvm_pmu_is_valid_msr() (pmu.c), spec §2.2. The Intel global MSR numbers are
    tested before the vendor hook, as in KVM (valid iff version > 1)."""
    if msr in _INTEL_GLOBAL:
        return kvm.pmu.version > 1
    if kvm.cfg.is_intel:
        return intel_is_valid_msr(kvm, msr)
    return get_gp_pmc_amd(kvm, msr) is not None or amd_is_valid_msr(kvm, msr)


def kvm_pmu_mark_pmc_in_use(kvm: KvmVcpu, msr: int) -> None:
    """Mirrors kvm_pmu_mark_pmc_in_use() (pmu.c), spec §2.2."""
    if kvm.cfg.is_intel:
        pmc = intel_msr_idx_to_pmc(kvm, msr)
    else:
        found = get_gp_pmc_amd(kvm, msr)
        pmc = found[0] if found else None
    if pmc is not None:
        kvm.pmu.pmc_in_use |= 1 << pmc.idx


def kvm_pmu_set_msr(kvm: KvmVcpu, msr: int, data: int, host: bool) -> bool:
    """Mirrors kvm_pmu_set_msr() (pmu.c), spec §2.3. False = #GP.

    The handling is chosen by MSR number, as in the kernel: on an AMD PerfMonV2 vPMU the Intel
    numbers 0x38E-0x390 are valid too (kvm_pmu_is_valid_msr) and keep Intel's #GP rules.
    Before 30dab5c0b65e (v6.5) a host GLOBAL_STATUS write was not checked for reserved bits."""
    p = kvm.pmu
    if msr in (M.IA32_PERF_GLOBAL_STATUS, M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS):
        if not host:
            return msr == M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS  # read-only: ignored (AMD number) / #GP
        if kvm.era.global_status_host_rsvd_check and data & p.global_status_rsvd:
            return False
        p.global_status = data
        return True
    if msr in (M.IA32_PERF_GLOBAL_CTRL, M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL):
        if msr == M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL:
            data &= ~p.global_ctrl_rsvd
        if data & p.global_ctrl_rsvd:
            return False
        if p.global_ctrl != data:
            diff = p.global_ctrl ^ data
            p.global_ctrl = data
            kvm.reprogram_counters(diff)
        return True
    if msr in (M.IA32_PERF_GLOBAL_OVF_CTRL, M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR):
        if msr == M.IA32_PERF_GLOBAL_OVF_CTRL and data & p.global_status_rsvd:
            return False
        if not host:
            p.global_status &= ~data
        return True
    if msr == M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET:
        if not host:
            p.global_status |= data & ~p.global_status_rsvd
        return True
    kvm_pmu_mark_pmc_in_use(kvm, msr)
    if kvm.cfg.is_intel:
        return intel_pmu_set_msr(kvm, msr, data, host)
    return amd_pmu_set_msr(kvm, msr, data)


def kvm_pmu_get_msr(kvm: KvmVcpu, msr: int) -> int | None:
    """Mirrors kvm_pmu_get_msr() (pmu.c), spec §2.3 (by MSR number, like the writes)."""
    p = kvm.pmu
    if msr in (M.IA32_PERF_GLOBAL_STATUS, M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS):
        return p.global_status
    if msr in (M.IA32_PERF_GLOBAL_CTRL, M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL):
        return p.global_ctrl
    if msr in (M.IA32_PERF_GLOBAL_OVF_CTRL, M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR,
               M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET):
        return 0
    if kvm.cfg.is_intel:
        return intel_pmu_get_msr(kvm, msr)
    return amd_pmu_get_msr(kvm, msr)


def supported_perf_caps(kvm: KvmVcpu) -> int:
    """kvm_caps.supported_perf_cap, reduced to the bit the model has: full-width writes on an
    Intel host, nothing on AMD (svm_get_msr_feature reports 0)."""
    return M.PERF_CAP_FW_WRITES if kvm.cfg.is_intel else 0


def vcpu_get_perf_capabilities(kvm: KvmVcpu) -> int:
    """Mirrors vcpu_get_perf_capabilities() (vmx/pmu_intel.c): what the vPMU acts on, 0
    without guest PDCM whatever userspace stored."""
    return kvm.perf_capabilities if kvm.cfg.pdcm else 0


def set_perf_capabilities(kvm: KvmVcpu, data: int, host: bool) -> bool:
    """Mirrors the IA32_PERF_CAPABILITIES write of kvm_set_msr_common() (x86.c), vmx_set_msr()
    and do_set_msr() (x86.c), spec §2.4. False = #GP (guest) or a failed KVM_SET_MSRS (host).

    Guest writes #GP. Host writes: without guest PDCM only a 0 is accepted from v6.13
    (d75cac366f44; before, PDCM was not consulted); bits KVM does not support fail; before
    v6.13 (a1039111192b) a non-zero value fails while the PMU version is 0; after the first
    KVM_RUN a different value fails (0094f62c7eaa, v6.4; before, it refreshed the running
    vPMU). A new value is stored and the vPMU refreshed."""
    if not host:
        return False
    if kvm.era.perf_caps_host_needs_pdcm and not kvm.cfg.pdcm:
        return data == 0
    if data & ~supported_perf_caps(kvm):
        return False
    if kvm.era.perf_caps_need_pmu_version and data and kvm.pmu.version == 0:
        return False
    if data == kvm.perf_capabilities:
        return True
    if kvm.has_run and kvm.era.feature_msrs_immutable_after_run:
        return False
    kvm.perf_capabilities = data
    kvm.note("host", f"PERF_CAPABILITIES = {data:#x}: vPMU refreshed")
    kvm.kvm_pmu_refresh()
    return True


def get_perf_capabilities(kvm: KvmVcpu, host: bool) -> int | None:
    """Mirrors the IA32_PERF_CAPABILITIES read of kvm_get_msr_common() (x86.c): a guest read
    needs PDCM; a host read does not, and from v6.13 (d75cac366f44) gives 0 without PDCM.
    None = #GP."""
    if not kvm.cfg.pdcm:
        if not host:
            return None
        if kvm.era.perf_caps_host_needs_pdcm:
            return 0
    return kvm.perf_capabilities


def kvm_set_msr_common(kvm: KvmVcpu, msr: int, data: int, host: bool) -> bool:
    """Mirrors the PMU part of kvm_set_msr_common() (x86.c) + vmx_set_msr for
    PERF_CAPABILITIES and the x2APIC LVTPC write, spec §2.2/§2.4. False = #GP.
    MSRs outside the PMU (and LVTPC) are not modelled and #GP ("unknown MSR")."""
    if not 0 <= data <= U64:
        return False
    if msr == M.X2APIC_LVTPC:
        return _write_lvtpc(kvm, data) if kvm.lapic.in_kernel else False
    if msr == M.IA32_PERF_CAPABILITIES:
        return set_perf_capabilities(kvm, data, host)
    if kvm_pmu_is_valid_msr(kvm, msr):
        return kvm_pmu_set_msr(kvm, msr, data, host)
    if msr in _LEGACY_IGNORED:
        kvm.note("access", f"wrmsr {M.msr_name(msr)} ignored (vPMU does not have it)")
        return True
    return False


def _write_lvtpc(kvm: KvmVcpu, data: int) -> bool:
    """kvm_x2apic_msr_write() -> kvm_lapic_reg_write(APIC_LVTPC) (lapic.c)."""
    kvm.lapic.write_lvtpc(data)
    return True


def kvm_get_msr_common(kvm: KvmVcpu, msr: int, host: bool) -> int | None:
    """Mirrors the PMU part of kvm_get_msr_common() (x86.c), spec §2.2. None = #GP."""
    if msr == M.X2APIC_LVTPC:
        return kvm.lapic.lvtpc if kvm.lapic.in_kernel else None
    if msr == M.IA32_PERF_CAPABILITIES:
        return get_perf_capabilities(kvm, host)
    if kvm_pmu_is_valid_msr(kvm, msr):
        return kvm_pmu_get_msr(kvm, msr)
    if msr in _LEGACY_IGNORED:
        return 0
    return None


# --- RDPMC ---------------------------------------------------------------------------------


def rdpmc_ecx_to_pmc(kvm: KvmVcpu, ecx: int) -> tuple[KvmPmc, int] | None:
    """Mirrors {intel,amd}_rdpmc_ecx_to_pmc() (vendor pmu.c) plus the v6.6 fast-mode mask of
    kvm_pmu_rdpmc(), spec §2.6: (pmc, value mask) or None (#GP)."""
    p = kvm.pmu
    if kvm.era.rdpmc_decoding == "v6.6":
        mask = 0xFFFF_FFFF if ecx >> 31 & 1 else U64
        idx = ecx & ~(3 << 30)
        if kvm.cfg.is_intel:
            fixed = bool(ecx >> 30 & 1)
            n = p.nr_arch_fixed_counters if fixed else p.nr_arch_gp_counters
            if idx >= n:
                return None
            pmc = p.fixed_counters[idx] if fixed else p.gp_counters[idx]
            return pmc, mask & p.counter_bitmask[1 if fixed else 0]
        if idx >= p.nr_arch_gp_counters:
            return None
        return p.gp_counters[idx], mask
    if kvm.cfg.is_intel:
        kind = ecx & 0xFFFF_0000
        idx = ecx & 0xFFFF
        if kind == 0 and idx < p.nr_arch_gp_counters:
            return p.gp_counters[idx], p.counter_bitmask[0]
        if kind == 0x4000_0000 and idx < p.nr_arch_fixed_counters:
            return p.fixed_counters[idx], p.counter_bitmask[1]
        return None
    if ecx >= p.nr_arch_gp_counters:
        return None
    return p.gp_counters[ecx], U64


#: The VMware backdoor pseudo-PMCs (host TSC, real time, apparent time): is_vmware_backdoor_pmc().
VMWARE_BACKDOOR_PMCS = (0x10000, 0x10001, 0x10002)


def kvm_pmu_rdpmc_vmware(kvm: KvmVcpu, ecx: int) -> int:
    """Mirrors kvm_pmu_rdpmc_vmware() (pmu.c): host TSC, boot time, boot time + kvmclock
    offset. The model has no clock: all three read the number of guest instructions retired
    so far (a deterministic, monotonic stand-in)."""
    return kvm.insn


def kvm_pmu_rdpmc(kvm: KvmVcpu, ecx: int, cpl: int, pce: bool) -> int | None:
    """Mirrors kvm_pmu_rdpmc() (pmu.c), spec §2.6 (the guest is in protected mode). The VMware
    pseudo-PMCs are answered whatever enable_vmware_backdoor says and before the CPL/PCE
    check. None = #GP."""
    if kvm.pmu.version == 0:
        return None
    if ecx in VMWARE_BACKDOOR_PMCS:
        return kvm_pmu_rdpmc_vmware(kvm, ecx)
    found = rdpmc_ecx_to_pmc(kvm, ecx & 0xFFFF_FFFF)
    if found is None:
        return None
    if not pce and cpl != 0:
        return None
    pmc, mask = found
    return kvm.pmc_read_counter(pmc) & mask


def hardware_rdpmc_faults(kvm: KvmVcpu, ecx: int, cpl: int, pce: bool) -> bool:
    """The RDPMC exceptions the processor raises before the RDPMC intercept, so that no VM-exit
    happens (spec §2.6, x86-pmu.md A.10): the privilege #GP (CR4.PCE = 0 at CPL > 0) on both
    vendors; on AMD every RDPMC exception, i.e. also an index the host PMU lacks (the host is
    taken to have the 6 core counters; KVM's emulator mirrors this in check_rdpmc_early)."""
    if cpl > 0 and not pce:
        return True
    return not kvm.cfg.is_intel and ecx >= AMD64_NUM_COUNTERS_CORE


def emulator_check_rdpmc(kvm: KvmVcpu, ecx: int, cpl: int, pce: bool, vmware_backdoor: bool) -> bool:
    """Mirrors check_rdpmc() (emulate.c), run before KVM's emulator executes an RDPMC: True
    when it may go on to kvm_pmu_rdpmc(). A VMware pseudo-PMC passes with
    enable_vmware_backdoor; then the privilege check; then the index: before v6.9 every index
    kvm_pmu_is_valid_rdpmc_ecx() rejects (version 0 included), from v6.9 only AMD's
    (check_rdpmc_early: an Intel index is left to kvm_pmu_rdpmc)."""
    if vmware_backdoor and ecx in VMWARE_BACKDOOR_PMCS:
        return True
    if cpl > 0 and not pce:
        return False
    if kvm.era.rdpmc_decoding == "v6.6":
        return kvm.pmu.version > 0 and rdpmc_ecx_to_pmc(kvm, ecx) is not None
    return kvm.cfg.is_intel or ecx < kvm.pmu.nr_arch_gp_counters


def save_restore_msrs(kvm: KvmVcpu) -> list[int]:
    """The PMU MSRs a VMM saves and restores (KVM_GET_MSR_INDEX_LIST order, controls after
    counters), restricted to those valid for this vPMU."""
    p = kvm.pmu
    out: list[int] = []
    if kvm.cfg.is_intel:
        out += [M.IA32_PMC0 + i for i in range(p.nr_arch_gp_counters)]
        out += [M.IA32_FIXED_CTR0 + i for i in range(p.nr_arch_fixed_counters)]
        out += [M.IA32_PERFEVTSEL0 + i for i in range(p.nr_arch_gp_counters)]
        if p.version > 1:
            out += [M.IA32_FIXED_CTR_CTRL, M.IA32_PERF_GLOBAL_STATUS, M.IA32_PERF_GLOBAL_CTRL]
    else:
        if kvm.cfg.perfctr_core:
            out += [M.MSR_F15H_PERF_CTL0 + 2 * i + 1 for i in range(p.nr_arch_gp_counters)]
            out += [M.MSR_F15H_PERF_CTL0 + 2 * i for i in range(p.nr_arch_gp_counters)]
        else:
            out += [M.MSR_K7_PERFCTR0 + i for i in range(p.nr_arch_gp_counters)]
            out += [M.MSR_K7_EVNTSEL0 + i for i in range(p.nr_arch_gp_counters)]
        if p.version > 1:
            out += [M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL]
    return [m for m in out if kvm_pmu_is_valid_msr(kvm, m)]


__all__ = ["FIXED_BASE", "emulator_check_rdpmc", "hardware_rdpmc_faults", "kvm_get_msr_common", "kvm_pmu_rdpmc",
           "kvm_set_msr_common", "save_restore_msrs"]
