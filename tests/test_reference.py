"""ReferenceMachine: guest actions on the architectural PMU (actions.py conventions, spec A)."""

from __future__ import annotations

import pytest

from vpmu import actions as A
from vpmu import msrs as M
from vpmu.config import PRESETS, preset
from vpmu.errors import ValueRangeError
from vpmu.events import make_eventsel
from vpmu.reference import ReferenceMachine
from vpmu.trace import Observation, Result, Signal, run_all

INST, BR = 0x00C0, 0x00C4
UNMASK = A.Wrmsr(M.X2APIC_LVTPC, M.LVTPC_DELIVERY_NMI)


def machine(name: str = "intel-v2", width: int = 48) -> ReferenceMachine:
    return ReferenceMachine(preset(name).with_width(width))


def test_observation_shape_and_counter_order() -> None:
    m = machine()
    o = m.step(A.Native(5))
    assert isinstance(o, Observation) and o.step == 0 and o.insn == 5
    assert len(o.counters) == len(m.cfg.pmc_indices) == 7
    assert o.lvtpc == M.LVTPC_RESET and o.global_status == 0
    assert m.step(A.Cpuid()).step == 1


def test_intercepted_instruction_counts_itself_after_effect() -> None:
    """actions.py / R9: WRMSR takes effect, then retires and counts: writing -1 wraps at that insn."""
    m = machine()
    run_all(m, [UNMASK, A.Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INST, intr=True))])
    o = m.step(A.Wrmsr(M.IA32_PMC0, 0xFFFF_FFFF))
    assert o.results == (Result(None, False),)
    assert o.insn == 3 and o.counters[0] == 0
    assert o.signals == (Signal(0, 3, "wrap"),)
    assert o.pmis == (3,) and o.global_status == 1
    assert o.lvtpc == M.LVTPC_DELIVERY_NMI | M.LVTPC_MASKED
    assert [n.kind for n in o.log] == ["overflow", "pmi", "pmi"]   # wrap, delivery, Intel auto-mask


def test_reads_see_value_before_own_retirement() -> None:
    m = machine()
    m.step(A.Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INST)))  # counts itself: 1
    o = m.step(A.Rdpmc(0))
    assert o.results == (Result(1, False),) and o.counters[0] == 2
    o = m.step(A.Rdmsr(M.IA32_PMC0))
    assert o.results == (Result(2, False),) and o.counters[0] == 3


def test_faulting_instruction_does_not_retire() -> None:
    m = machine()
    o = m.step(A.Wrmsr(M.IA32_PERF_GLOBAL_STATUS, 1))
    assert o.results == (Result(None, True),) and o.insn == 0
    o = m.step(A.Rdmsr(M.IA32_PMC0, cpl=3))
    assert o.results == (Result(None, True),) and o.insn == 0
    o = m.step(A.Rdpmc(0, cpl=3, pce=False))
    assert o.results == (Result(None, True),) and o.insn == 0
    assert [n.kind for n in m.step(A.Wrmsr(M.IA32_PERF_GLOBAL_STATUS, 1)).log] == ["access"]


def test_cpuid_hlt_and_native_cpl() -> None:
    m = machine()
    m.step(A.Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INST, os=True, usr=False)))
    m.step(A.Wrmsr(M.IA32_PERFEVTSEL0 + 1, make_eventsel(INST, os=False, usr=True)))
    m.step(A.Cpuid(cpl=3))
    m.step(A.Hlt())
    o = m.step(A.Native(10, 0, cpl=3))
    assert o.counters[:2] == (3, 11) and o.insn == 14


def test_emulate_and_batch_items_in_order() -> None:
    m = machine()
    m.step(A.Wrmsr(M.IA32_PERFEVTSEL0 + 1, make_eventsel(BR)))
    items = (A.Insn(branch=True), A.Insn(), A.Rdpmc(1), A.Wrmsr(M.IA32_PMC0 + 1, 7), A.Insn(branch=True, cpl=3),
             A.Rdmsr(M.IA32_PMC0 + 1), A.Rdmsr(0x10))
    for act in (A.Emulate(items), A.Batch(items)):
        mm = machine()
        mm.step(A.Wrmsr(M.IA32_PERFEVTSEL0 + 1, make_eventsel(BR)))
        o = mm.step(act)
        assert o.results == (Result(1, False), Result(None, False), Result(8, False), Result(None, True))
        assert o.insn == 1 + 6 and o.counters[1] == 8


def test_native_branches_first() -> None:
    m = machine(width=3)
    run_all(m, [UNMASK, A.Wrmsr(M.IA32_PERFEVTSEL0 + 1, make_eventsel(BR, intr=True))])
    o = m.step(A.Native(20, branches=8))
    # counter 1 holds 0 after the write retired (not an instruction-count event) -> wraps at the 8th branch
    assert o.signals == (Signal(1, 2 + 8, "wrap"),) and o.pmis == (10,)


def test_host_and_timing_actions_have_no_architectural_effect() -> None:
    m = machine()
    before = m.step(A.Native(3))
    for act in (A.HostPmi(), A.PerfFail(True), A.PerfFail(False)):
        o = m.step(act)
        assert (o.insn, o.counters, o.results, o.pmis, o.signals) == (before.insn, before.counters, (), (), ())


def test_filter_actions() -> None:
    m = machine()
    m.step(A.Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INST)))
    o = m.step(A.SetFilter("deny", (INST,)))
    assert o.results == (Result(None, False),)
    assert m.step(A.Native(5)).counters[0] == 1
    bad = m.step(A.SetFilter("deny", (1 << 20,), masked=True))
    assert bad.results == (Result(None, True),)
    assert m.step(A.Native(5)).counters[0] == 1  # previous filter still installed
    m.step(A.ClearFilter())
    assert m.step(A.Native(5)).counters[0] == 6


def test_host_msr_accesses() -> None:
    """A.5/A.6: host writes: GLOBAL_STATUS writable, legacy counter writes not sign-extended, no retire."""
    m = machine()
    o = m.step(A.HostWrmsr(M.IA32_PERF_GLOBAL_STATUS, 0x1_0000_0001))
    assert o.results == (Result(None, False),) and o.global_status == 0x1_0000_0001 and o.insn == 0
    o = m.step(A.HostWrmsr(M.IA32_PMC0, 0x8000_0000))
    assert o.counters[0] == 0x8000_0000
    assert m.step(A.HostRdmsr(M.IA32_PMC0)).results == (Result(0x8000_0000, False),)
    assert m.step(A.HostRdmsr(0x10)).results == (Result(None, True),)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_save_restore_is_invisible(name: str) -> None:
    cfg = PRESETS[name]
    cfg = cfg.with_width(8) if cfg.is_intel else cfg   # AMD counters are always 48 bits
    m = ReferenceMachine(cfg, lvtpc=M.LVTPC_DELIVERY_NMI)
    ref = ReferenceMachine(cfg, lvtpc=M.LVTPC_DELIVERY_NMI)
    setup: list[A.Action] = []
    for msr in m.pmu.existing_msrs():
        kind = m.pmu.decode(msr)
        assert kind is not None
        if kind[0] == "evtsel":
            setup.append(A.Wrmsr(msr, make_eventsel(INST, intr=True)))
    if cfg.has_global_msrs and cfg.is_intel:
        setup += [A.Wrmsr(M.IA32_FIXED_CTR_CTRL, 0xB), A.Wrmsr(M.IA32_PERF_GLOBAL_CTRL, cfg.global_ctrl_valid_bits)]
    setup.append(A.Native(300, 100))
    run_all(m, setup)
    run_all(ref, setup)
    o = m.step(A.SaveRestore())
    r = ref.step(A.HostPmi())
    assert m.state_key() == ref.state_key()
    assert (o.results, o.insn, o.counters, o.global_status, o.lvtpc, o.pmis, o.signals) == (
        r.results, r.insn, r.counters, r.global_status, r.lvtpc, r.pmis, r.signals)
    after_m, after_r = m.step(A.Native(77, 5)), ref.step(A.Native(77, 5))
    assert after_m.counters == after_r.counters and after_m.global_status == after_r.global_status


def test_deterministic_and_clone_independent() -> None:
    acts: list[A.Action] = [UNMASK, A.Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INST, intr=True)),
                            A.Native(100, 10), UNMASK, A.Native(50)]
    a, b = machine(width=5), machine(width=5)
    assert run_all(a, acts) == run_all(b, acts)
    c = a.clone()
    assert c.state_key() == a.state_key()
    c.step(A.Native(7))
    assert c.state_key() != a.state_key()
    assert a.step(A.Cpuid()).step == c.steps - 1


def test_state_key_ignores_instruction_count() -> None:
    a, b = machine(), machine()
    a.step(A.Native(10))
    assert a.state_key() != b.state_key()   # b has not run yet: its CPU model may still change
    b.step(A.Native(0))
    assert a.state_key() == b.state_key()


def test_amd_machine_pmis_not_auto_masked() -> None:
    m = ReferenceMachine(preset("amd-perfmon-v2"), lvtpc=M.LVTPC_DELIVERY_NMI)
    m.step(A.HostWrmsr(M.MSR_F15H_PERF_CTL0 + 1, (1 << 48) - 15))
    m.step(A.Wrmsr(M.MSR_F15H_PERF_CTL0, make_eventsel(INST, intr=True)))
    o = m.step(A.Native(15))
    m.step(A.HostWrmsr(M.MSR_F15H_PERF_CTL0 + 1, (1 << 48) - 16))
    o2 = m.step(A.Native(16))
    # the WRMSR counted itself (insn 1 -> -14): wraps at insns 15 and 32, neither PMI masks LVTPC
    assert (o.pmis, o2.pmis) == ((15,), (32,)) and o2.lvtpc == M.LVTPC_DELIVERY_NMI


def test_bad_input_raises() -> None:
    m = machine()
    with pytest.raises(ValueRangeError):
        m.step(A.Wrmsr(M.IA32_PMC0, 1 << 64))
    with pytest.raises(ValueRangeError):
        m.step(A.Rdpmc(-1))
