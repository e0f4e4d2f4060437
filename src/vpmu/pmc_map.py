"""Which MSR or RDPMC index names which PMC: the one map outside the two machines.

The reference (`vpmu.arch`) and the KVM model (`vpmu.kvm_msr`) each decode MSRs on their own,
on purpose: they are independent oracles. Everything else (the checker, the explorer, the
scenario loader, reports) asks this module. PMC indices are KVM's global ones: GP i -> i,
fixed i -> 32 + i (the GLOBAL_STATUS bit layout, `vpmu.config.FIXED_BASE`).
"""

from __future__ import annotations

from vpmu import msrs as M
from vpmu.config import FIXED_BASE, PmuConfig

#: RDPMC ECX type bit for fixed counters (ECX[30], Intel SDM RDPMC).
RDPMC_FIXED = 1 << 30
U64 = (1 << 64) - 1


def counter_name(pmc: int) -> str:
    """PMC index -> "gp0" / "fixed1" (how traces, reports and scenario files name counters)."""
    return f"fixed{pmc - FIXED_BASE}" if pmc >= FIXED_BASE else f"gp{pmc}"


def counter_msr(cfg: PmuConfig, pmc: int) -> int:
    """The MSR a guest writes to set PMC `pmc` to a full-width value where the CPU has one:
    IA32_A_PMCx with full-width writes, else IA32_PMCx; the F15h counter MSRs with the AMD core
    extension, else the K7 ones; IA32_FIXED_CTRx for fixed counters."""
    if pmc >= FIXED_BASE:
        return M.IA32_FIXED_CTR0 + pmc - FIXED_BASE
    if cfg.is_intel:
        return (M.IA32_A_PMC0 if cfg.full_width_writes else M.IA32_PMC0) + pmc
    if cfg.perfctr_core:
        return M.MSR_F15H_PERF_CTL0 + 2 * pmc + 1
    return M.MSR_K7_PERFCTR0 + pmc


def eventsel_msr(cfg: PmuConfig, pmc: int) -> int:
    """The event-select MSR of GP counter `pmc`."""
    if cfg.is_intel:
        return M.IA32_PERFEVTSEL0 + pmc
    if cfg.perfctr_core:
        return M.MSR_F15H_PERF_CTL0 + 2 * pmc
    return M.MSR_K7_EVNTSEL0 + pmc


def status_msr(cfg: PmuConfig) -> int:
    """GLOBAL_STATUS: Intel IA32_PERF_GLOBAL_STATUS, AMD PerfMonV2 PERF_CNTR_GLOBAL_STATUS."""
    return M.IA32_PERF_GLOBAL_STATUS if cfg.is_intel else M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS


def status_clear_msr(cfg: PmuConfig) -> int:
    """The MSR whose write clears GLOBAL_STATUS bits (OVF_CTRL / STATUS_CLR)."""
    return M.IA32_PERF_GLOBAL_OVF_CTRL if cfg.is_intel else M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR


def global_ctrl_msr(cfg: PmuConfig) -> int:
    """GLOBAL_CTRL: Intel IA32_PERF_GLOBAL_CTRL, AMD PerfMonV2 PERF_CNTR_GLOBAL_CTL."""
    return M.IA32_PERF_GLOBAL_CTRL if cfg.is_intel else M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL


def pmc_of_msr(cfg: PmuConfig, msr: int) -> int | None:
    """The PMC a counter MSR reads or writes (any alias), or None for any other MSR."""
    if cfg.is_intel:
        for base in (M.IA32_PMC0, M.IA32_A_PMC0):
            if base <= msr < base + cfg.num_gp:
                return msr - base
        if M.IA32_FIXED_CTR0 <= msr < M.IA32_FIXED_CTR0 + 4:
            return FIXED_BASE + msr - M.IA32_FIXED_CTR0
        return None
    if M.MSR_K7_PERFCTR0 <= msr < M.MSR_K7_PERFCTR0 + 4:
        return msr - M.MSR_K7_PERFCTR0
    off = msr - M.MSR_F15H_PERF_CTL0
    if 0 <= off < 12 and off % 2 == 1 and cfg.perfctr_core:
        return off // 2
    return None


def pmc_of_eventsel_msr(cfg: PmuConfig, msr: int) -> int | None:
    """The GP counter an event-select MSR programs, or None."""
    for pmc in range(cfg.num_gp):
        if eventsel_msr(cfg, pmc) == msr:
            return pmc
    return None


def pmc_of_rdpmc(cfg: PmuConfig, ecx: int) -> int | None:
    """The PMC an RDPMC index names (Intel: ECX[30] selects the fixed counters)."""
    if cfg.is_intel:
        idx = ecx & 0xFFFF
        return FIXED_BASE + idx if ecx & RDPMC_FIXED else idx
    return ecx & 0xFFFF


def rdpmc_ecx(pmc: int) -> int:
    """The RDPMC index that reads PMC `pmc` (the inverse of `pmc_of_rdpmc`)."""
    return RDPMC_FIXED | (pmc - FIXED_BASE) if pmc >= FIXED_BASE else pmc


def msr_write_value(cfg: PmuConfig, msr: int, value: int) -> int:
    """The 64-bit value a scenario's write of `value` to `msr` means: -N is 2^width - N for a
    counter MSR (as a test writes `-1` to preset a counter one event before its wrap).
    ValueError says why any other value does not fit."""
    if value > U64:
        raise ValueError(f"{value:#x} does not fit 64 bits")
    if value >= 0:
        return value
    pmc = pmc_of_msr(cfg, msr)
    if pmc is None:
        raise ValueError(f"negative values are only allowed for counter MSRs (-N = 2^width - N), "
                         f"not for {M.msr_name(msr)}")
    width = cfg.width_of(pmc)
    if -value > 1 << width:
        raise ValueError(f"{value} does not fit a {width}-bit counter")
    return (1 << width) + value
