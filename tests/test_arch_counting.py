"""Counting, overflow and PMI rules of the architectural reference PMU (spec A.5, A.7, A.8, A.11)."""

from __future__ import annotations

from vpmu import msrs as M
from vpmu.arch import ArchPmu, Pmi, Wrap
from vpmu.config import PmuConfig, preset
from vpmu.events import ENCODINGS, EVENTSEL_CMASK, EVENTSEL_EDGE, make_eventsel
from vpmu.filter import EventFilter

INST = 0x00C0
UNMASKED = M.LVTPC_DELIVERY_NMI


def intel(width: int = 48, name: str = "intel-v2") -> ArchPmu:
    return ArchPmu(preset(name).with_width(width), lvtpc=UNMASKED)


def test_a5_gp_counts_only_when_enabled_globally_and_locally() -> None:
    """A.5: GP counter counts iff EN && GLOBAL_CTRL[i] && CPL filter."""
    p = intel()
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST, enable=False))
    p.retire(5)
    assert p.counter(0) == 0
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST))
    p.retire(5)
    assert p.counter(0) == 5
    p.wrmsr("IA32_PERF_GLOBAL_CTRL", 0)
    p.retire(5)
    assert p.counter(0) == 5


def test_a5_v1_has_no_global_gate() -> None:
    """A.1/A.5: v1 has no GLOBAL_CTRL: EN alone enables (AMD legacy likewise)."""
    for p in (ArchPmu(preset("intel-v1")), ArchPmu(preset("amd-k7"))):
        p.wrmsr("IA32_PERFEVTSEL0" if p.is_intel else "MSR_K7_EVNTSEL0", make_eventsel(INST))
        p.retire(3)
        assert p.counter(0) == 3


def test_a3_cpl_filter_os_usr() -> None:
    """A.3: USR counts at CPL > 0, OS at CPL 0."""
    p = intel()
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST, os=True, usr=False))
    p.wrmsr("IA32_PERFEVTSEL1", make_eventsel(INST, os=False, usr=True))
    p.retire(4, cpl=0)
    p.retire(3, cpl=3)
    p.retire(2, cpl=1)
    assert (p.counter(0), p.counter(1)) == (4, 5)


def test_a4_fixed_counter_predicate() -> None:
    """A.4: fixed i counts iff its OS/USR field matches CPL and GLOBAL_CTRL[32+i]."""
    p = intel()
    p.wrmsr("IA32_FIXED_CTR_CTRL", 0x1)  # fixed0 OS only
    p.retire(4)
    assert p.counter(32) == 0  # GLOBAL_CTRL resets with fixed counters disabled
    p.wrmsr("IA32_PERF_GLOBAL_CTRL", 1 << 32)
    p.retire(4, cpl=0)
    p.retire(4, cpl=3)
    assert p.counter(32) == 4


def test_filter_gate_gp_and_fixed() -> None:
    """Invariant I2 (kvm-vpmu §2.14): a filtered PMC does not count and holds its value."""
    p = intel()
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST))
    p.wrmsr("IA32_PERFEVTSEL1", make_eventsel(0xC4))
    p.wrmsr("IA32_FIXED_CTR_CTRL", 0x3)
    p.wrmsr("IA32_PERF_GLOBAL_CTRL", 0x1_0000_0003)
    p.set_filter(EventFilter.from_ioctl("deny", (INST,), fixed_counter_bitmap=0b1))
    p.retire(6, branches=2)
    assert (p.counter(0), p.counter(1), p.counter(32)) == (0, 2, 0)
    p.set_filter(EventFilter.from_ioctl("allow", (INST,), fixed_counter_bitmap=0b1))
    p.retire(6, branches=2)
    assert (p.counter(0), p.counter(1), p.counter(32)) == (6, 2, 6)
    p.set_filter(None)
    p.retire(1, branches=1)
    assert (p.counter(0), p.counter(1), p.counter(32)) == (7, 3, 7)


def test_retirement_drives_instructions_and_branches_only() -> None:
    """Retirement counts instructions/branches (exact select+umask), fixed0; not fixed1/2 (fed only)."""
    for vendor, name in (("intel", "intel-v2"), ("amd", "amd-perfmon-v2")):
        p = ArchPmu(preset(name))
        sel = "IA32_PERFEVTSEL{}" if vendor == "intel" else "MSR_F15H_PERF_CTL{}"
        p.wrmsr(sel.format(0), make_eventsel(ENCODINGS[vendor]["instructions"]))
        p.wrmsr(sel.format(1), make_eventsel(ENCODINGS[vendor]["branches"]))
        p.wrmsr(sel.format(2), make_eventsel(ENCODINGS[vendor]["instructions"] | 0x100))  # other umask
        p.wrmsr(sel.format(3), make_eventsel(0x3C))
        if vendor == "intel":
            p.wrmsr("IA32_FIXED_CTR_CTRL", 0x333)
            p.wrmsr("IA32_PERF_GLOBAL_CTRL", 0x7_0000_000F)
        p.retire(10, branches=4)
        assert [p.counter(i) for i in range(4)] == [10, 4, 0, 0]
        if vendor == "intel":
            assert (p.counter(32), p.counter(33), p.counter(34)) == (10, 0, 0)
            p.feed(0x003C, 7)
            p.feed(0x0300, 9)
            assert (p.counter(32), p.counter(33), p.counter(34), p.counter(3)) == (10, 7, 9, 7)


def test_amd_event_select_high_bits_must_match() -> None:
    """A.3: AMD event select includes bits 35:32: 0x1_0000_00C0 is not instructions retired."""
    p = ArchPmu(preset("amd-core"))
    p.wrmsr("MSR_F15H_PERF_CTL0", make_eventsel(0x1_0000_00C0))
    p.retire(5)
    assert p.counter(0) == 0
    p.feed(0x1_0000_00C0, 3)
    assert p.counter(0) == 3


def test_edge_or_cmask_not_driven_by_retirement() -> None:
    """A.3: with EDGE/INV/CMASK the counter counts a cycle condition; retirement does not drive it."""
    p = intel()
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST) | EVENTSEL_EDGE)
    p.wrmsr("IA32_PERFEVTSEL1", make_eventsel(INST) | (1 << 24 & EVENTSEL_CMASK))
    p.retire(5)
    assert (p.counter(0), p.counter(1)) == (0, 0)


def test_a7_overflow_sets_sticky_status_and_pmi_iff_int() -> None:
    """A.7: wrap sets the status bit whether or not INT; PMI requested iff INT; status sticky."""
    p = intel(width=4)
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST, intr=True))
    p.wrmsr("IA32_PERFEVTSEL1", make_eventsel(INST, intr=False))
    p.wrmsr("IA32_PMC0", 14)
    p.wrmsr("IA32_PMC1", 15)
    p.retire(3)
    assert p.wraps == [Wrap(1, 1), Wrap(0, 2)]
    assert p.pmis == [Pmi(2, True, (0,))]
    assert p.global_status == 0b11
    assert (p.counter(0), p.counter(1)) == (1, 2)
    p.retire(20)
    assert p.global_status == 0b11
    p.wrmsr("IA32_PERF_GLOBAL_OVF_CTRL", 0b11)
    assert p.global_status == 0


def test_a7_sdm_preset_minus_n_plus_1() -> None:
    """A.7 (KUT measure_for_overflow): preset 1-N, after N events the counter reads 1 and overflowed."""
    p = intel()
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST))
    p.wrmsr("IA32_A_PMC0", (1 - 100) & 0xFFFF_FFFF_FFFF)
    p.retire(100)
    assert p.counter(0) == 1 and p.global_status == 1
    assert p.wraps == [Wrap(0, 99)]


def test_a7_running_counter_write_minus_one_overflows() -> None:
    """A.7 (KUT check_running_counter_wrmsr): write -1 to a running counter, count, status bit 0 set."""
    p = intel()
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST))
    p.retire(10)
    p.wrmsr("IA32_PMC0", 0xFFFF_FFFF)  # legacy write, sign-extended: -1
    p.retire(1)
    assert p.global_status == 1 and p.counter(0) == 0


def test_a11_v1_pmus_have_no_status() -> None:
    """A.11/A.1: Intel v1 and AMD legacy have no global status; wraps still request PMIs."""
    for p, sel, ctr in ((ArchPmu(preset("intel-v1"), lvtpc=UNMASKED), "IA32_PERFEVTSEL0", "IA32_PMC0"),
                        (ArchPmu(preset("amd-k7"), lvtpc=UNMASKED), "MSR_K7_EVNTSEL0", "MSR_K7_PERFCTR0")):
        p.wrmsr(sel, make_eventsel(INST, intr=True))
        p.wrmsr(ctr, 0xFFFF_FFFF if p.is_intel else 0xFFFF_FFFF_FFFF)
        p.retire(2)
        assert p.global_status == 0
        assert p.wraps == [Wrap(0, 1)] and p.pmis == [Pmi(1, True, (0,))]


def test_a8_masked_lvtpc_drops_pmi_not_latched() -> None:
    """A.8: a PMI while LVTPC is masked is dropped, and unmasking later does not deliver it."""
    p = ArchPmu(preset("intel-v2").with_width(4))  # reset LVTPC: masked
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST, intr=True))
    p.retire(16)
    assert p.pmis == [Pmi(16, False, (0,))]
    assert [n.kind for n in p.log] == ["overflow", "pmi"]  # the wrap, the dropped PMI: no auto-mask
    p.wrmsr("LVTPC", UNMASKED)
    p.retire(1)
    assert [x.delivered for x in p.pmis] == [False]


def test_a8_intel_masks_lvtpc_on_delivery_amd_does_not() -> None:
    """A.8: Intel sets LVTPC.M on PMI delivery; AMD does not, so every wrap delivers."""
    p = intel(width=4)
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST, intr=True))
    p.retire(40)
    assert [(x.insn, x.delivered) for x in p.pmis] == [(16, True), (32, False)]
    assert p.lvtpc == UNMASKED | M.LVTPC_MASKED
    a = ArchPmu(preset("amd-perfmon-v2"), lvtpc=UNMASKED)  # AMD counters are 48 bits wide
    a.wrmsr("MSR_F15H_PERF_CTL0", make_eventsel(INST, intr=True))
    for _ in range(2):
        a.wrmsr("MSR_F15H_PERF_CTR0", (1 << 48) - 16)
        a.retire(16)
    assert [(x.insn, x.delivered) for x in a.pmis] == [(16, True), (32, True)]
    assert a.lvtpc == UNMASKED


def test_a8_simultaneous_wraps_coalesce_into_one_pmi() -> None:
    """Wraps at the same instruction raise one PMI (one interrupt per instruction boundary)."""
    a = ArchPmu(PmuConfig("amd", 2, 3, perfctr_core=True), lvtpc=UNMASKED)
    for i in range(3):
        a.wrmsr(f"MSR_F15H_PERF_CTL{i}", make_eventsel(INST, intr=i != 1))
        a.wrmsr(f"MSR_F15H_PERF_CTR{i}", (1 << 48) - 16)
    a.retire(16)
    assert a.pmis == [Pmi(16, True, (0, 2))]
    assert len(a.wraps) == 3 and a.global_status == 0b111


def test_bulk_multiple_counters_and_multiple_wraps() -> None:
    """retire() lands on every wrap in order, several per counter, across counters and branches."""
    p = intel(width=3)
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST))
    p.wrmsr("IA32_PERFEVTSEL1", make_eventsel(0xC4))
    p.wrmsr("IA32_PMC0", 5)
    p.wrmsr("IA32_PMC1", 6)
    p.retire(20, branches=11)
    assert p.wraps == [Wrap(1, 2), Wrap(0, 3), Wrap(1, 10), Wrap(0, 11), Wrap(0, 19)]
    assert (p.counter(0), p.counter(1)) == ((5 + 20) % 8, (6 + 11) % 8)
    assert p.insn == 20


def test_feed_wraps_at_current_boundary() -> None:
    """feed(): all wraps happen after the current instruction count; their PMI requests coalesce."""
    p = intel(width=4)
    p.wrmsr("IA32_FIXED_CTR_CTRL", 0x80 | 0x30)  # fixed1: OS|USR, PMI
    p.wrmsr("IA32_PERF_GLOBAL_CTRL", 1 << 33)
    p.retire(7)
    p.feed(0x003C, 40)
    assert p.wraps == [Wrap(33, 7), Wrap(33, 7)]
    assert p.pmis == [Pmi(7, True, (33,))]
    assert p.counter(33) == 40 % 16


def test_take_hands_over_and_clears() -> None:
    p = intel(width=4)
    p.wrmsr("IA32_PERFEVTSEL0", make_eventsel(INST, intr=True))
    p.retire(16)
    wraps, pmis, log = p.take()
    assert wraps == [Wrap(0, 16)] and pmis == [Pmi(16, True, (0,))]
    assert [n.kind for n in log] == ["overflow", "pmi", "pmi"]  # wrap, delivery, Intel auto-mask
    assert p.take() == ([], [], [])
