"""MSR rules of the architectural reference PMU, one test per rule (spec architecture-and-peers.md A.2-A.11)."""

from __future__ import annotations

import pytest

from vpmu import msrs as M
from vpmu.arch import ArchPmu
from vpmu.config import PRESETS, PmuConfig, preset
from vpmu.errors import UnknownMsrError, ValueRangeError, VpmuError
from vpmu.events import EVENTSEL_ANY, EVENTSEL_INT, EVENTSEL_PIN_CONTROL, make_eventsel
from vpmu.trace import Result

GP = Result(None, True)
OK = Result(None, False)


def pmu(name: str, **kw: object) -> ArchPmu:
    return ArchPmu(preset(name), **kw)  # type: ignore[arg-type]


def expected_msrs(cfg: PmuConfig) -> set[int]:
    """The A.2 existence table, written out independently of arch.py."""
    out = {M.X2APIC_LVTPC}
    if cfg.is_intel:
        if cfg.pdcm:
            out.add(M.IA32_PERF_CAPABILITIES)
        if cfg.version == 0:
            return out
        for i in range(cfg.num_gp):
            out |= {0xC1 + i, 0x186 + i}
            if cfg.full_width_writes:
                out.add(0x4C1 + i)
        if cfg.version >= 2:
            out |= {0x38D, 0x38E, 0x38F, 0x390}
            for i in range(4):
                if i < cfg.num_fixed or cfg.fixed_bitmap >> i & 1:
                    out.add(0x309 + i)
        if cfg.version >= 4:
            out |= {0x391, 0x392}
        return out
    if cfg.version == 0:
        return out
    for i in range(min(4, cfg.num_gp)):
        out |= {0xC001_0000 + i, 0xC001_0004 + i}
    if cfg.perfctr_core:
        for n in range(cfg.num_gp):
            out |= {0xC001_0200 + 2 * n, 0xC001_0201 + 2 * n}
    if cfg.version == 2:
        out |= {0xC000_0300, 0xC000_0301, 0xC000_0302, 0xC000_0303}
    return out


CANDIDATES = sorted(set(M.CANONICAL.values()) | {0x10, 0x1D9, 0x3F1, 0x329, 0xC001_0008, 0xC001_020C})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a2_msr_existence_every_preset(name: str) -> None:
    """A.2: every PMU MSR exists exactly under its condition; everything else #GPs (read and write)."""
    cfg = PRESETS[name]
    p = ArchPmu(cfg)
    want = expected_msrs(cfg)
    assert {a for a in CANDIDATES if p.exists(a)} == want
    assert set(p.existing_msrs()) == want
    for a in CANDIDATES:
        assert p.rdmsr(a).fault == (a not in want), hex(a)
        if a not in want:
            assert p.wrmsr(a, 0) == GP
            # a VMM may restore an absent PERF_CAPABILITIES as 0 (KVM's host-access rule)
            assert p.wrmsr(a, 0, host=True) == (OK if a == M.IA32_PERF_CAPABILITIES else GP)
            assert p.wrmsr(a, 1 << 13, host=True) == GP


@pytest.mark.parametrize("cfg", [PmuConfig("intel", 0, 0), PmuConfig("amd", 0, 0),
                                 PmuConfig("intel", 0, 0, pdcm=True)])
def test_a1_version_0_has_no_pmu_msrs(cfg: PmuConfig) -> None:
    """A.1: version 0 = no architectural PMU: only LVTPC (and PERF_CAPABILITIES with PDCM)."""
    assert set(ArchPmu(cfg).existing_msrs()) == expected_msrs(cfg)
    assert ArchPmu(cfg).rdpmc(0) == GP


def test_a2_a_pmc_exists_iff_full_width_writes() -> None:
    """A.2: IA32_A_PMCx exist iff PERF_CAPABILITIES[13]."""
    no_fw = ArchPmu(PmuConfig("intel", 2, 4, 48, 3, 48, pdcm=True))
    assert not no_fw.exists("IA32_A_PMC0")
    assert no_fw.rdmsr("IA32_PERF_CAPABILITIES") == Result(0, False)
    fw = pmu("intel-v2")
    assert fw.exists("IA32_A_PMC3") and not fw.exists("IA32_A_PMC4")
    assert fw.rdmsr("IA32_PERF_CAPABILITIES") == Result(M.PERF_CAP_FW_WRITES, False)


def test_a1_v5_fixed_counter_bitmap() -> None:
    """A.1: fixed counter i exists iff ECX[i] or i < EDX[4:0] (v5)."""
    p = ArchPmu(PmuConfig("intel", 5, 2, 48, 0, 48, fixed_bitmap=0b101))
    assert [p.exists(0x309 + i) for i in range(4)] == [True, False, True, False]
    assert p.rdpmc(0x4000_0002).fault is False
    assert p.rdpmc(0x4000_0001) == GP


def test_a2_perf_capabilities_read_only_for_guest() -> None:
    """A.2/A.6: PERF_CAPABILITIES exists iff PDCM, guest write #GP; the host chooses the
    enumerated bits before the CPU runs and may only repeat them afterwards."""
    p = pmu("intel-v4")
    assert p.wrmsr("IA32_PERF_CAPABILITIES", M.PERF_CAP_FW_WRITES) == GP
    assert p.wrmsr("IA32_PERF_CAPABILITIES", M.PERF_CAP_FW_WRITES, host=True) == OK
    assert p.wrmsr("IA32_PERF_CAPABILITIES", 1, host=True) == GP          # not a modelled bit
    assert p.wrmsr("IA32_PERF_CAPABILITIES", 0, host=True) == OK          # before the CPU ran
    assert not p.exists("IA32_A_PMC0") and p.rdmsr("IA32_PERF_CAPABILITIES") == Result(0, False)
    p.ran = True
    assert p.wrmsr("IA32_PERF_CAPABILITIES", M.PERF_CAP_FW_WRITES, host=True) == GP
    assert p.wrmsr("IA32_PERF_CAPABILITIES", 0, host=True) == OK
    v1 = pmu("intel-v1")
    assert not v1.exists("IA32_PERF_CAPABILITIES")
    assert v1.rdmsr("IA32_PERF_CAPABILITIES") == GP
    assert v1.rdmsr("IA32_PERF_CAPABILITIES", host=True) == Result(0, False)


def test_a2_wrmsr_rdmsr_at_cpl3_gp() -> None:
    """WRMSR/RDMSR are privileged: #GP at CPL > 0 (both vendors); host accesses have no CPL."""
    for name in ("intel-v2", "amd-perfmon-v2"):
        p = pmu(name)
        msr = p.existing_msrs()[0]
        assert p.rdmsr(msr, cpl=3) == GP
        assert p.wrmsr(msr, 1, cpl=1) == GP
        assert p.counter(0) == 0
        assert p.rdmsr(msr, cpl=0).fault is False


def test_a2_msrs_by_name_or_number() -> None:
    p = pmu("intel-v2")
    assert p.wrmsr("ia32_pmc1", 7) == OK
    assert p.rdmsr(0xC2) == Result(7, False)
    assert p.rdmsr("MSR_IA32_PMC1") == Result(7, False)  # Linux name of the A_PMC alias
    assert p.rdmsr("0xc2") == Result(7, False)


def test_a2_amd_core_ctl_ctr_alias_k7() -> None:
    """A.11: PERF_CTL/CTR 0-3 alias the K7 EvtSel/PerfCtr MSRs."""
    p = pmu("amd-core")
    assert p.wrmsr("MSR_K7_PERFCTR2", 0x1234) == OK
    assert p.rdmsr("MSR_F15H_PERF_CTR2") == Result(0x1234, False)
    assert p.wrmsr("MSR_F15H_PERF_CTL1", 0x4300C0) == OK
    assert p.rdmsr("MSR_K7_EVNTSEL1") == Result(0x4300C0, False)
    assert p.exists("MSR_F15H_PERF_CTR5") and not pmu("amd-k7").exists("MSR_F15H_PERF_CTR0")


def test_a8_lvtpc_reset_and_writable_bits() -> None:
    """A.8: LVTPC resets to 0x10000 (masked); vector 7:0, mode 10:8, mask 16 writable; other bits #GP."""
    for name in ("intel-v1", "amd-k7"):
        p = pmu(name)
        assert p.rdmsr("X2APIC_LVTPC") == Result(0x10000, False)
        assert p.wrmsr("LVTPC", 0x107FF) == OK
        assert p.rdmsr("LVTPC") == Result(0x107FF, False)
        for bad in (1 << 12, 1 << 17, 1 << 32):
            assert p.wrmsr("LVTPC", bad) == GP
        assert p.rdmsr("LVTPC") == Result(0x107FF, False)


def test_a3_intel_eventsel_reserved_bits_gp() -> None:
    """A.3: Intel eventsel bits 63:32 and 21 (AnyThread, no SMT sibling modelled) #GP; pin control is fine."""
    p = pmu("intel-v4")
    good = make_eventsel(0xC0) | EVENTSEL_PIN_CONTROL | EVENTSEL_INT
    assert p.wrmsr("IA32_PERFEVTSEL0", good) == OK
    assert p.rdmsr("IA32_PERFEVTSEL0") == Result(good, False)
    for bad in (EVENTSEL_ANY, 1 << 32, 1 << 63):
        assert p.wrmsr("IA32_PERFEVTSEL0", good | bad) == GP
    assert p.rdmsr("IA32_PERFEVTSEL0") == Result(good, False)


def test_a3_amd_eventsel_reserved_bits_dropped() -> None:
    """A.3/A.11: AMD drops bits of 0xFFFFFFF000280000 silently (no #GP); event select 35:32 kept."""
    p = pmu("amd-perfmon-v2")
    value = 0xF_0000_00C0 | EVENTSEL_PIN_CONTROL | EVENTSEL_ANY | 1 << 40 | 1 << 41 | 1 << 22
    assert p.wrmsr("MSR_F15H_PERF_CTL0", value) == OK
    assert p.rdmsr("MSR_F15H_PERF_CTL0") == Result(0xF_0040_00C0, False)


def test_a4_fixed_ctr_ctrl_writable_fields() -> None:
    """A.4: per existing fixed counter EN_OS, EN_USR, PMI writable; AnyThread (bit 2) and others #GP."""
    p = pmu("intel-v2")
    assert p.wrmsr("IA32_FIXED_CTR_CTRL", 0xBBB) == OK
    assert p.rdmsr("IA32_FIXED_CTR_CTRL") == Result(0xBBB, False)
    for bad in (0x4, 0x400, 0xB000, 1 << 32):
        assert p.wrmsr("IA32_FIXED_CTR_CTRL", bad) == GP
    gap = ArchPmu(PmuConfig("intel", 5, 2, 48, 0, 48, fixed_bitmap=0b101))
    assert gap.wrmsr("IA32_FIXED_CTR_CTRL", 0xB0B) == OK
    assert gap.wrmsr("IA32_FIXED_CTR_CTRL", 0x0B0) == GP


def test_a5_global_ctrl_reset_value() -> None:
    """A.5: GLOBAL_CTRL resets to GP bits n-1:0 set, fixed clear (= cfg.global_ctrl_reset)."""
    for name, cfg in PRESETS.items():
        p = ArchPmu(cfg)
        if cfg.has_global_msrs:
            msr = "IA32_PERF_GLOBAL_CTRL" if cfg.is_intel else "MSR_AMD64_PERF_CNTR_GLOBAL_CTL"
            assert p.rdmsr(msr) == Result(cfg.global_ctrl_reset, False), name
        assert p.global_ctrl == cfg.global_ctrl_reset


def test_a5_intel_global_ctrl_gp_on_missing_counters() -> None:
    """A.5: setting GLOBAL_CTRL bits of non-existent counters #GPs (Intel)."""
    p = pmu("intel-v2")
    assert p.wrmsr("IA32_PERF_GLOBAL_CTRL", 0x7_0000_000F) == OK
    for bad in (1 << 4, 1 << 35, 1 << 48):
        assert p.wrmsr("IA32_PERF_GLOBAL_CTRL", bad) == GP
    assert p.rdmsr("IA32_PERF_GLOBAL_CTRL") == Result(0x7_0000_000F, False)


def test_a11_amd_global_ctl_clears_missing_bits() -> None:
    """A.11: AMD PerfMonV2 GlobalCtl silently clears bits of non-existent counters."""
    p = pmu("amd-perfmon-v2")
    assert p.wrmsr("MSR_AMD64_PERF_CNTR_GLOBAL_CTL", 0xFFFF_FFFF_FFFF_FFFF) == OK
    assert p.rdmsr("MSR_AMD64_PERF_CNTR_GLOBAL_CTL") == Result(0x3F, False)


def test_a5_global_status_read_only_intel_gp() -> None:
    """A.5: guest WRMSR of GLOBAL_STATUS #GPs on Intel; a host write sets it."""
    p = pmu("intel-v2")
    assert p.wrmsr("IA32_PERF_GLOBAL_STATUS", 1) == GP
    assert p.global_status == 0
    assert p.wrmsr("IA32_PERF_GLOBAL_STATUS", 0x1_0000_0001, host=True) == OK
    assert p.rdmsr("IA32_PERF_GLOBAL_STATUS") == Result(0x1_0000_0001, False)
    assert p.wrmsr("IA32_PERF_GLOBAL_STATUS", 1 << 20, host=True) == GP


def test_a11_amd_global_status_write_ignored() -> None:
    """A.11: AMD GlobalStatus is read-only: guest writes are ignored (no #GP); host writes set it."""
    p = pmu("amd-perfmon-v2")
    assert p.wrmsr("MSR_AMD64_PERF_CNTR_GLOBAL_STATUS", 3) == OK
    assert p.global_status == 0
    assert p.wrmsr("MSR_AMD64_PERF_CNTR_GLOBAL_STATUS", 0xFF03, host=True) == OK
    assert p.global_status == 3


def test_a5_ovf_ctrl_write_one_to_clear() -> None:
    """A.5: OVF_CTRL/STATUS_RESET clears the written bits, #GPs outside the clearable set, reads 0."""
    p = pmu("intel-v2")
    p.wrmsr("IA32_PERF_GLOBAL_STATUS", 0xC000_0001_0000_0003, host=True)
    assert p.wrmsr("IA32_PERF_GLOBAL_OVF_CTRL", 0x1) == OK
    assert p.global_status == 0xC000_0001_0000_0002
    assert p.wrmsr("IA32_PERF_GLOBAL_STATUS_RESET", 0xC000_0000_0000_0000) == OK
    assert p.global_status == 0x1_0000_0002
    for bad in (1 << 4, 1 << 59, 1 << 35):
        assert p.wrmsr("IA32_PERF_GLOBAL_OVF_CTRL", bad) == GP
    assert p.global_status == 0x1_0000_0002
    assert p.rdmsr("IA32_PERF_GLOBAL_OVF_CTRL") == Result(0, False)


def test_a5_status_set_v4_sets_without_pmi() -> None:
    """A.5: STATUS_SET (v4+) sets status bits, requests no PMI, #GPs outside the status bits."""
    p = pmu("intel-v4", lvtpc=0x400)
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(0xC0, intr=True))
    assert p.wrmsr("IA32_PERF_GLOBAL_STATUS_SET", 0x1_0000_0001) == OK
    assert p.global_status == 0x1_0000_0001
    assert p.pmis == [] and p.wraps == []
    assert p.wrmsr("IA32_PERF_GLOBAL_STATUS_SET", 1 << 8) == GP
    assert p.rdmsr("IA32_PERF_GLOBAL_STATUS_SET") == Result(0, False)
    assert not pmu("intel-v2").exists("IA32_PERF_GLOBAL_STATUS_SET")


def test_a5_global_inuse_computed_read_only() -> None:
    """A.5: GLOBAL_INUSE bit i = eventsel[7:0] != 0, 32+i = fixed EN bits != 0, 63 = any PMI enable."""
    p = pmu("intel-v4")
    assert p.rdmsr("IA32_PERF_GLOBAL_INUSE") == Result(0, False)
    p.wrmsr("IA32_PERFEVTSEL2", 0xC0)  # event selected, not enabled: still in use
    p.wrmsr("IA32_FIXED_CTR_CTRL", 0x820)  # fixed1 USR, fixed2 PMI only
    assert p.rdmsr("IA32_PERF_GLOBAL_INUSE") == Result(0x8000_0002_0000_0004, False)
    p.wrmsr("IA32_PERFEVTSEL2", EVENTSEL_INT)
    assert p.rdmsr("IA32_PERF_GLOBAL_INUSE") == Result(0x8000_0002_0000_0000, False)
    assert p.wrmsr("IA32_PERF_GLOBAL_INUSE", 0) == GP


def test_a11_amd_status_clr_and_set() -> None:
    """A.11: GlobalStatusClr is W1C, GlobalStatusSet W1S; other bits ignored; both read 0."""
    p = pmu("amd-perfmon-v2")
    assert p.wrmsr("MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET", 0xFF00_0000_0000_0025) == OK
    assert p.global_status == 0x25
    assert p.wrmsr("MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR", 0xFFFF_0000_0000_0004) == OK
    assert p.global_status == 0x21
    assert p.rdmsr("MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR") == Result(0, False)
    assert p.rdmsr("MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET") == Result(0, False)


def test_a6_legacy_pmc_write_sign_extends() -> None:
    """A.6: IA32_PMCx writes take EAX sign-extended from bit 31, truncated to the width; EDX ignored."""
    p = pmu("intel-v2")
    assert p.wrmsr("IA32_PMC0", 0x8000_0000) == OK
    assert p.counter(0) == 0xFFFF_8000_0000
    assert p.wrmsr("IA32_PMC0", 0xDEAD_0000_0005) == OK
    assert p.counter(0) == 5
    narrow = ArchPmu(preset("intel-v1").with_width(20))
    narrow.wrmsr("IA32_PMC1", 0xFFFF_FFFF)
    assert narrow.counter(1) == 0xFFFFF


def test_a6_host_legacy_write_not_sign_extended() -> None:
    """A.6: host-initiated writes (migration restore) are full values: no sign extension; above width #GP."""
    p = pmu("intel-v2")
    assert p.wrmsr("IA32_PMC0", 0x8000_0000, host=True) == OK
    assert p.counter(0) == 0x8000_0000
    assert p.wrmsr("IA32_PMC0", 0x1234_5678_9ABC, host=True) == OK
    assert p.counter(0) == 0x1234_5678_9ABC
    assert p.wrmsr("IA32_PMC0", 1 << 48, host=True) == GP


def test_a6_full_width_write_gp_above_width() -> None:
    """A.6: IA32_A_PMCx writes the full width; bits above it #GP; both aliases read the same."""
    p = pmu("intel-v2")
    assert p.wrmsr("IA32_A_PMC2", 0xFFFF_FFFF_FFFF) == OK
    assert p.rdmsr("IA32_PMC2") == Result(0xFFFF_FFFF_FFFF, False)
    assert p.rdmsr("IA32_A_PMC2") == Result(0xFFFF_FFFF_FFFF, False)
    assert p.wrmsr("IA32_A_PMC2", 1 << 48) == GP
    assert p.counter(2) == 0xFFFF_FFFF_FFFF


def test_a6_fixed_counter_gp_above_width() -> None:
    """A.4/A.6: fixed-counter bits above the width are reserved: #GP (no sign extension)."""
    p = pmu("intel-v2")
    assert p.wrmsr("IA32_FIXED_CTR1", 0x8000_0000) == OK
    assert p.counter(33) == 0x8000_0000
    assert p.wrmsr("IA32_FIXED_CTR1", 1 << 48) == GP
    assert p.wrmsr("IA32_FIXED_CTR1", 1 << 48, host=True) == GP
    assert p.counter(33) == 0x8000_0000


def test_a11_amd_counter_write_truncated() -> None:
    """A.6/A.11: AMD counters are 48 bits; bits above are ignored (no #GP), no sign extension."""
    p = pmu("amd-k7")
    assert p.wrmsr("MSR_K7_PERFCTR0", 0xFFFF_0000_8000_0000) == OK
    assert p.counter(0) == 0x8000_0000


def test_a6_write_does_not_signal_overflow() -> None:
    """A.6: a write is a write: wrapping the value by writing sets no status bit."""
    p = pmu("intel-v2")
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(0xC0, intr=True))
    p.wrmsr("IA32_A_PMC0", 0xFFFF_FFFF_FFFF)
    p.wrmsr("IA32_A_PMC0", 0)
    assert p.global_status == 0 and p.wraps == []


@pytest.mark.parametrize(("ecx", "value"), [
    (0, 0x111), (3, 0x444), (0x4000_0000, 0xAAA), (0x4000_0002, 0xCCC),
    (4, None), (0x4000_0003, None), (0x8000_0000, None), (0x2000_0000, None), (0x0001_0000, None),
    (0xC000_0000, None), (0x8000_0001, None),
])
def test_a10_intel_rdpmc_decoding(ecx: int, value: int | None) -> None:
    """A.10: Intel ECX[31:16] type (0 GP, 0x4000 fixed), index ECX[15:0]; fast bit 31 and others #GP."""
    p = pmu("intel-v2")
    for i, v in enumerate((0x111, 0x222, 0x333, 0x444)):
        p.wrmsr(0x4C1 + i, v)
    for i, v in enumerate((0xAAA, 0xBBB, 0xCCC)):
        p.wrmsr(0x309 + i, v)
    assert p.rdpmc(ecx) == (Result(value, False) if value is not None else GP)


def test_a10_rdpmc_result_masked_to_width() -> None:
    """A.10: RDPMC returns the counter masked to its width."""
    p = ArchPmu(preset("intel-v2").with_width(8))
    p.wrmsr("IA32_PMC0", 0xFFFF_FFFF)
    assert p.rdpmc(0) == Result(0xFF, False)


def test_a10_amd_rdpmc_index_only() -> None:
    """A.10: AMD ECX is the index only (0..num_gp-1); anything else #GP."""
    p = pmu("amd-core")
    p.wrmsr("MSR_F15H_PERF_CTR5", 0x55)
    assert p.rdpmc(5) == Result(0x55, False)
    for bad in (6, 0x4000_0000, 0x8000_0000, 0x1_0000):
        assert p.rdpmc(bad) == GP
    assert pmu("amd-k7").rdpmc(4) == GP


def test_a10_rdpmc_pce_and_cpl() -> None:
    """A.10: CR4.PCE = 0 and CPL > 0 -> #GP; CPL 0 always allowed; PCE = 1 allows every ring."""
    for name in ("intel-v1", "amd-k7"):
        p = pmu(name)
        assert p.rdpmc(0, cpl=3, pce=False) == GP
        assert p.rdpmc(0, cpl=0, pce=False) == Result(0, False)
        assert p.rdpmc(0, cpl=3, pce=True) == Result(0, False)


def test_bad_input_raises_vpmu_errors() -> None:
    """Values that do not fit 64 bits and unknown names are input errors, not #GP; messages in hex."""
    p = pmu("intel-v2")
    with pytest.raises(ValueRangeError, match="0x10000000000000000"):
        p.wrmsr("IA32_PMC0", 1 << 64)
    with pytest.raises(ValueRangeError):
        p.wrmsr("IA32_PMC0", -1)
    with pytest.raises(UnknownMsrError, match="IA32_NOPE"):
        p.rdmsr("IA32_NOPE")
    with pytest.raises(ValueRangeError, match="32-bit"):
        p.rdpmc(1 << 32)
    with pytest.raises(ValueRangeError, match="CPL"):
        p.rdmsr(0xC1, cpl=4)
    with pytest.raises(VpmuError):
        ArchPmu(preset("intel-v2"), lvtpc=1 << 20)
    assert p.rdmsr(0x1234) == GP  # a number that is no PMU MSR here: architectural #GP
