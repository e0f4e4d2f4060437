"""The worked examples of spec kvm-vpmu.md reproduce with the stated numbers (§3.2, §3.3,
§3.4, §4.2, §4.5) and the post-patch residuals of §4.3 are reachable and visible."""

from __future__ import annotations

from vpmu import msrs as M
from vpmu.actions import (
    Batch,
    Cpuid,
    HostWrmsr,
    Insn,
    Native,
    Rdmsr,
    Rdpmc,
    SetFilter,
    Wrmsr,
)
from vpmu.config import preset
from vpmu.designs import EmulatedCounterDesign
from vpmu.eras import ERAS
from vpmu.host import PerfHost
from vpmu.kvm import KvmVcpu
from vpmu.lapic import Lapic
from vpmu.msrs import LVTPC_MASKED
from vpmu.world import World

CFG = preset("intel-v2")
INST_INT = 0x0053_00C0  # EN | INT | OS | USR, instructions retired (spec §3.2)
SETUP = [HostWrmsr(M.IA32_PERFEVTSEL0, INST_INT), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1)]


def run(era: str, seq: list, cfg=CFG, setup=SETUP):  # type: ignore[no-untyped-def]
    w = World(cfg, era)
    obs = [w.step(a) for a in [*setup, *seq]]
    return w, obs[len(setup):]


def sources(obs) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.source for o in obs for s in o.signals]


# --- §3.2: batch of 3 emulated instructions from -2 ----------------------------------------


def test_3_2_prev_counter_loses_overflow_in_batch() -> None:
    _, obs = run("6.6", [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFE), Batch((Insn(), Insn(), Insn()))])
    last = obs[-1]
    assert last.counters[0] == 1
    assert last.global_status == 0
    assert last.pmis == ()
    assert sources(obs) == []


def test_3_2_emulated_counter_reports_once() -> None:
    for era in ("6.8", "6.9"):
        _, obs = run(era, [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFE), Batch((Insn(), Insn(), Insn()))])
        last = obs[-1]
        assert last.counters[0] == 1
        assert last.global_status == 1
        assert last.pmis == (3,)
        assert sources(obs) == ["emulated"]
        assert [n.subject for n in last.log if n.kind == "request"].count("KVM_REQ_PMI") == 1


# --- §3.3: hardware wrap + emulated CPUID in the same exit ---------------------------------


def _dup_seq(point: str = "before-handler") -> list:  # type: ignore[type-arg]
    return [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FF9C), Native(100, hold_pmi=True), Cpuid(host_pmi=point)]  # type: ignore[arg-type]


def test_3_3_prev_counter_signals_twice() -> None:
    _, obs = run("6.6", _dup_seq())
    assert sources(obs) == ["hw", "emulated"]
    last = obs[-1]
    assert last.counters[0] == 1 and last.global_status == 1
    assert last.pmis == (101,)  # the two KVM_REQ_PMI coalesce in v6.6


def test_3_3_v61_delivers_two_nmis() -> None:
    _, obs = run("6.1", _dup_seq())
    assert sources(obs) == ["hw", "emulated"]
    assert obs[-1].pmis == (101, 101)


def test_3_3_emulated_counter_signals_once() -> None:
    for era in ("6.8", "6.9"):
        _, obs = run(era, _dup_seq())
        assert sources(obs) == ["hw"]
        assert obs[-1].counters[0] == 1 and obs[-1].global_status == 1 and obs[-1].pmis == (101,)


# --- §3.4 (6.1): unmasked legacy write -> spurious overflow per emulated event ---------------


def test_3_4_unmasked_legacy_write() -> None:
    cfg = preset("intel-v1")
    seq = [Wrmsr(M.IA32_PMC0, 0x8000_0000), Cpuid(), Wrmsr(M.IA32_PMC0, 0x8000_0000)]
    w, obs = run("6.1", seq, cfg=cfg, setup=[HostWrmsr(M.IA32_PERFEVTSEL0, INST_INT)])
    # Each negative legacy write followed by an emulated event (the WRMSR counts itself)
    # signals an overflow although the counter is nowhere near wrapping.
    assert [s.source for s in obs[0].signals] == ["emulated"]
    assert obs[0].counters[0] == 0xFFFF_8000_0001
    assert obs[0].pmis == (1,)
    assert [s.source for s in obs[2].signals] == ["emulated"]
    _, fixed = run("6.6", seq, cfg=cfg, setup=[HostWrmsr(M.IA32_PERFEVTSEL0, INST_INT)])
    assert sources(fixed) == []
    assert fixed[0].counters[0] == 0xFFFF_8000_0001


# --- §4.2: the three numeric cases of pmc_pause_counter -----------------------------------


def _pause_case(base: int, perf: int, emu: int) -> tuple[bool, int]:
    kvm = KvmVcpu(CFG, ERAS["6.8"], EmulatedCounterDesign(), Lapic(), PerfHost())
    kvm.kvm_pmu_init()
    pmc = kvm.pmu.gp_counters[0]
    pmc.eventsel = INST_INT
    pmc.counter = base
    assert kvm.pmc_reprogram_counter(pmc, 0xC0, False, False, True) == 0
    assert pmc.perf_event is not None
    pmc.perf_event.count = perf
    pmc.emulated_counter = emu
    return kvm.pmc_pause_counter(pmc), pmc.counter


def test_4_2_numeric_cases() -> None:
    assert _pause_case(0xFFFF_FFFF_FF9C, 100, 1) == (False, 1)   # hardware already reported it
    assert _pause_case(0xFFFF_FFFF_FF9C, 99, 1) == (True, 0)     # the emulated event wrapped
    assert _pause_case(0xFFFF_FFFF_FFFE, 0, 3) == (True, 1)      # §3.2 under the new code


def test_4_2_emulation_caused_wrap_in_world() -> None:
    _, obs = run("6.8", [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FF9C), Native(99), Cpuid()])
    assert sources(obs) == ["emulated"]
    assert obs[-1].counters[0] == 0 and obs[-1].global_status == 1 and obs[-1].pmis == (100,)


# --- §4.5: timeline and request order --------------------------------------------------------


def test_4_5_timeline() -> None:
    for era, cancelled in (("6.9", False), ("6.8", False), ("6.6", True)):
        _, obs = run(era, [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFF), Cpuid(),
                           Rdmsr(M.IA32_PERF_GLOBAL_STATUS), Rdpmc(0)])
        cpuid = obs[1]
        assert cpuid.pmis == (1,)                     # injected before the 2nd guest instruction
        assert cpuid.counters[0] == 0 and cpuid.global_status == 1
        assert cpuid.lvtpc & LVTPC_MASKED             # Intel auto-mask
        assert obs[2].results[0].value == 1           # handler reads STATUS.0 = 1
        assert obs[3].results[0].value == 1           # counter = 1 (the RDMSR counted itself)
        served = [n.subject for n in cpuid.log if n.kind == "service"]
        order = [served.index(x) for x in ("KVM_REQ_PMU", "KVM_REQ_PMI", "KVM_REQ_NMI")]
        assert order == sorted(order)
        assert any(n.kind == "entry-cancelled" for n in cpuid.log) is cancelled


# --- §4.3 residuals ---------------------------------------------------------------------


def test_4_3_1_delayed_detection_inside_batch() -> None:
    _, obs = run("6.8", [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFE),
                         Batch((Insn(), Insn(), Rdmsr(M.IA32_PERF_GLOBAL_STATUS), Rdpmc(0)))])
    batch = obs[-1]
    assert batch.results[0].value == 0          # STATUS still 0 after the wrap at I2
    assert batch.results[1].value == 1          # while the counter already wrapped
    assert batch.global_status == 1             # set when KVM_REQ_PMU runs after the loop
    assert batch.pmis == (4,)


def test_4_3_3_overflow_dropped_when_filtered() -> None:
    # HLT wraps the counter (emulated); KVM_REQ_PMU is not processed while halted; userspace
    # installs a filter denying the event; the next wake-up reprograms a disallowed PMC.
    from vpmu.actions import Hlt

    _, obs = run("6.8", [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFF), Hlt(),
                         SetFilter("deny", (0x00C0,)), Cpuid()])
    assert obs[1].global_status == 0 and obs[1].counters[0] == 0
    assert all(o.global_status == 0 for o in obs) and all(o.pmis == () for o in obs)
    assert sources(obs) == ["disallowed"] and obs[-1].signals[0].pmc == 0   # R11, at the reprogram


def test_4_3_4_hw_overflow_ignored_when_reprogram_bit_set() -> None:
    _, obs = run("6.8", _dup_seq("after-handler"))
    assert sources(obs) == ["ignored"]
    assert obs[-1].global_status == 0 and obs[-1].pmis == () and obs[-1].counters[0] == 1


def test_4_3_5_perf_minimum_period_two() -> None:
    _, obs = run("6.8", [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFE), Cpuid(), Native(1), Native(1)])
    assert obs[1].counters[0] == 0xFFFF_FFFF_FFFF
    assert obs[2].counters[0] == 0 and obs[2].global_status == 0   # wrapped, not reported yet
    assert obs[3].global_status == 1 and obs[3].pmis == (3,)       # perf fired after 2 events


# --- HLT (§2.13) ------------------------------------------------------------------------


def test_hlt_overflow_waits_for_wake_in_emulated_designs_but_wakes_mediated() -> None:
    from vpmu.actions import Hlt

    seq = [HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFF), Hlt(), Cpuid()]
    halted, _ = run("6.9", seq[:2])
    assert halted.halted                                        # KVM_REQ_PMU does not wake it
    _, obs = run("6.9", seq)
    assert obs[1].global_status == 0 and obs[1].pmis == ()      # KVM_REQ_PMU not processed while halted
    assert obs[2].global_status == 1 and obs[2].pmis == (1,)    # detected when the vCPU next enters
    woken, med = run("mediated", seq[:2])
    assert med[1].global_status == 1 and med[1].pmis == (1,)    # KVM_REQ_PMI is a wake event
    assert not woken.halted
