"""More events (cycles ... topdown slots, CMASK/INV/EDGE, CPUID.0AH.EBX), host knobs as World
options, KVM_SET_CPUID2 before and after the first run, and emulated instructions by name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpmu import msrs as M
from vpmu.actions import (
    Action,
    Batch,
    Cpuid,
    Emulate,
    HostWrmsr,
    Insn,
    Native,
    Rdmsr,
    Rdpmc,
    SetCpuid,
    SetFilter,
    Wrmsr,
)
from vpmu.config import PmuConfig, preset
from vpmu.eras import ERAS
from vpmu.errors import VpmuError
from vpmu.events import ENCODINGS, EVENTSEL_CMASK, EVENTSEL_EDGE, EVENTSEL_INV, make_eventsel, step_count
from vpmu.insns import INSNS, retires_as_branch
from vpmu.reference import ReferenceMachine
from vpmu.run import run_actions
from vpmu.scenario import parse_scenario
from vpmu.world import World, WorldOptions

INTEL, AMD_V2 = preset("intel-v2"), preset("amd-perfmon-v2")
INTEL_EVENTS = ENCODINGS["intel"]


def one(world: World, action: Action) -> tuple[int | None, bool]:
    r = world.step(action).results[-1]
    return r.value, r.fault


def cmask(c: int) -> int:
    return c << 24


# --- per-step events ----------------------------------------------------------------------------------


@given(st.integers(0, 500), st.integers(0, 255), st.booleans(), st.booleans(),
       st.one_of(st.none(), st.integers(0, 200)))
def test_step_count_follows_the_sdm_rules(total: int, c: int, inv: bool, edge: bool, cycles: int | None) -> None:
    sel = cmask(c) | (EVENTSEL_INV if inv else 0) | (EVENTSEL_EDGE if edge else 0)
    n = step_count(total, sel, cycles)
    if not c and not edge:
        assert n == total                                           # INV without CMASK is ignored
    elif not cycles:
        assert n == 0                                               # no cycles to count in
    elif edge:
        assert n in (0, 1)
    else:
        assert 0 <= n <= cycles
        plain = step_count(total, cmask(c), cycles)
        assert n == (cycles - plain if inv else plain)              # INV counts the other cycles
        assert c > 1 or plain == min(total, cycles)                 # CMASK 1: cycles with an event


def test_step_count_spreads_events_evenly() -> None:
    assert step_count(10, cmask(2), 20) == 0           # 10 events over 20 cycles: never 2 in a cycle
    assert step_count(30, cmask(2), 20) == 10          # 10 cycles carry 2, 10 carry 1
    assert step_count(30, cmask(2) | EVENTSEL_INV, 20) == 10
    assert step_count(40, cmask(2), 20) == 20


@pytest.mark.parametrize("era", list(ERAS))
def test_native_step_events_count_on_gp_and_fixed_counters(era: str) -> None:
    sel = M.IA32_PERFEVTSEL0
    acts: list[Action] = [
        HostWrmsr(sel, make_eventsel(INTEL_EVENTS["cycles"], intr=True)),
        HostWrmsr(sel + 1, make_eventsel(INTEL_EVENTS["llc_misses"])),
        HostWrmsr(sel + 2, make_eventsel(INTEL_EVENTS["branch_misses"])),
        HostWrmsr(sel + 3, make_eventsel(INTEL_EVENTS["instructions"]) | cmask(1)),
        HostWrmsr(M.IA32_FIXED_CTR_CTRL, 0x333), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 0x7_0000_000F),
        HostWrmsr(M.IA32_A_PMC0, (1 << 48) - 5),
        Native(10, 2, cycles=20, ref_cycles=7, llc_misses=3, branch_misses=1, slots=40),
        Native(4),                                                  # no counts given: none happen
    ]
    res = run_actions(INTEL, era, acts)
    # agreement, but for the LVTPC mask a PMI sets in the reference and not in KVM before 6.6
    assert {d.label for d in res.divergences} == (set() if ERAS[era].lvtpc_auto_mask != "never" else {"wrong-value"})
    run, untimed = res.kvm_obs[-2], res.kvm_obs[-1]
    assert run.counters == (15, 3, 1, 10, 10, 20, 7)                # cycles wrapped at the last boundary
    assert run.pmis == (10,) and run.global_status == 1
    assert untimed.counters == (15, 3, 1, 10, 14, 20, 7)


@pytest.mark.parametrize("era", ["6.6", "6.8", "6.9"])
def test_held_pmi_lands_before_a_per_step_counter_wraps_again(era: str) -> None:
    """Bounded skid holds for per-step events too: 20 cycles wrap a 4-bit counter at 15 twice,
    so the first (held) PMI lands before the second wrap, which is held in its turn."""
    w = World(INTEL.with_width(4), era)
    for act in (Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INTEL_EVENTS["cycles"], intr=True)),
                Wrmsr(M.IA32_PERF_GLOBAL_CTRL, 1), Wrmsr(M.IA32_PMC0, 15)):
        w.step(act)
    obs = w.step(Native(1, cycles=20, hold_pmi=True))
    assert obs.counters[0] == 3 and obs.pmis == (4,) and w.pmi_in_flight


def test_amd_cycles_and_branch_misses() -> None:
    acts: list[Action] = [HostWrmsr(M.MSR_F15H_PERF_CTL0, make_eventsel(ENCODINGS["amd"]["cycles"])),
                          HostWrmsr(M.MSR_F15H_PERF_CTL0 + 2, make_eventsel(ENCODINGS["amd"]["branch_misses"])),
                          Native(6, 3, cycles=9, branch_misses=2)]
    res = run_actions(AMD_V2, "6.9", acts)
    assert res.divergences == () and res.kvm_obs[-1].counters[:2] == (9, 2)


def test_kvm_emulated_events_ignore_cmask() -> None:
    """KVM counts its emulated instructions on an instructions PMC whatever its CMASK (R6); the
    reference counts that PMC only per native step."""
    acts: list[Action] = [Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INTEL_EVENTS["instructions"]) | cmask(1)),
                          Cpuid(), Native(4, cycles=8)]
    res = run_actions(INTEL, "6.9", acts)
    assert res.ref_obs[-1].counters[0] == 4 and res.kvm_obs[-1].counters[0] == 6
    assert [d.label for d in res.divergences] == ["wrong-value"]


# --- CPUID.0AH.EBX: unavailable architectural events ------------------------------------------------------


@pytest.mark.parametrize("era", list(ERAS))
def test_unavailable_events_count_only_from_6_9(era: str) -> None:
    cfg = PmuConfig("intel", 2, 4, 48, 3, 48, pdcm=True, full_width_writes=True, unavailable_events=0b10)
    acts: list[Action] = [Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INTEL_EVENTS["instructions"])),
                          Wrmsr(M.IA32_FIXED_CTR_CTRL, 0x3), Wrmsr(M.IA32_PERF_GLOBAL_CTRL, 0x1_0000_0001),
                          Native(10), Cpuid()]
    res = run_actions(cfg, era, acts)
    counts = res.kvm_obs[-1].counters
    if ERAS[era].hw_event_available:
        assert (counts[0], counts[4]) == (0, 0)                     # hw_event_available refuses them
    else:
        ref = res.ref_obs[-1].counters
        assert (counts[0], counts[4]) == (ref[0], ref[4]) == (14, 12)   # the reference counts them


def test_event_vector_length_makes_events_unavailable() -> None:
    cfg = PmuConfig("intel", 2, 4, event_vector_length=1)          # only core cycles enumerated
    w = World(cfg, "6.6")
    w.step(Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INTEL_EVENTS["cycles"])))
    w.step(Wrmsr(M.IA32_PERFEVTSEL0 + 1, make_eventsel(INTEL_EVENTS["branches"])))
    w.step(Wrmsr(M.IA32_PERF_GLOBAL_CTRL, 3))
    assert w.step(Native(5, 5, cycles=9)).counters[:2] == (9, 0)


# --- host knobs -----------------------------------------------------------------------------------------------


def test_without_force_emulation_prefix_emulate_is_a_ud() -> None:
    w = World(INTEL, "6.9", options=WorldOptions(force_emulation_prefix=False))
    obs = w.step(Emulate((Insn(), Rdpmc(0))))
    assert obs.insn == 0 and [r.fault for r in obs.results] == [True]
    assert w.step(Batch((Insn(), Insn()))).insn == 2                 # invalid guest state is not FEP


@pytest.mark.parametrize("era", list(ERAS))
def test_vmware_backdoor_pseudo_pmcs(era: str) -> None:
    plain, backdoor = World(INTEL, era), World(INTEL, era, options=WorldOptions(enable_vmware_backdoor=True))
    for w in (plain, backdoor):
        w.step(Native(7))
        assert one(w, Rdpmc(0x10000)) == (7, False)                 # kvm_pmu_rdpmc answers them at CPL 0
    assert one(plain, Rdpmc(0x10001, cpl=3, pce=False)) == (None, True)
    assert one(backdoor, Rdpmc(0x10001, cpl=3, pce=False)) == (8, False)
    # the emulator's own check: before v6.9 it rejects the index unless the backdoor is on
    emulated = one(plain, Emulate((Rdpmc(0x10002),)))
    assert emulated == ((None, True) if ERAS[era].rdpmc_decoding == "v6.6" else (8, False))
    amd = World(AMD_V2, era, options=WorldOptions(enable_vmware_backdoor=True))
    assert one(amd, Rdpmc(0x10000)) == (0, False)
    assert one(World(AMD_V2, era), Rdpmc(0x10000)) == (None, True)  # AMD hardware #GPs first


@pytest.mark.parametrize("era", list(ERAS))
def test_pmu_cap_disable(era: str) -> None:
    off = WorldOptions(pmu_cap_disable=True)
    intel = World(INTEL, era, options=off)
    assert intel.kvm.pmu.version == 0
    assert one(intel, Wrmsr(M.IA32_PERFEVTSEL0, 0x4300C0)) == (None, False)   # P6 MSR: dropped
    assert one(intel, Rdmsr(M.IA32_PERFEVTSEL0)) == (0, False)
    assert one(intel, Rdmsr(M.IA32_FIXED_CTR0)) == (None, True)
    assert one(intel, Rdpmc(0)) == (None, True)
    amd = World(AMD_V2, era, options=off)
    stale = ERAS[era].amd_refresh_without_pmu     # before f933b88e2015 amd_pmu_refresh still ran
    assert amd.kvm.pmu.version == (2 if stale and ERAS[era].amd_perfmon_v2 else 1 if stale else 0)
    assert one(amd, Wrmsr(M.MSR_K7_EVNTSEL0, 0x4300C0)) == (None, stale)      # "valid" yet no PMC: #GP
    assert one(amd, Rdpmc(0)) == ((0, False) if stale else (None, True))


@pytest.mark.parametrize("vendor_cfg", [INTEL, AMD_V2])
def test_invalid_filter_action_and_flags_fail_in_both_models(vendor_cfg: PmuConfig) -> None:
    acts: list[Action] = [SetFilter(2, (0xC0,)), SetFilter("allow", (0xC0,), flags=2),
                          SetFilter(1, (0xC0,)), SetFilter("deny", (0xFF00_0000_0000_00C0,), flags=1)]
    res = run_actions(vendor_cfg, "6.9", acts)
    assert [o.results[0].fault for o in res.kvm_obs] == [True, True, False, False]
    assert res.divergences == ()


@pytest.mark.parametrize("era", list(ERAS))
def test_set_cpuid_before_and_after_the_first_run(era: str) -> None:
    acts: list[Action] = [SetCpuid(num_gp=2), Wrmsr(M.IA32_PERFEVTSEL0 + 2, 0), SetCpuid(num_gp=2),
                          SetCpuid(num_gp=4), Rdmsr(M.IA32_PERFEVTSEL0 + 3)]
    res = run_actions(INTEL, era, acts)
    assert [o.results[-1].fault for o in res.kvm_obs] == [False, True, False, True, True]
    assert res.divergences == ()
    assert len(res.kvm_obs[0].counters) == len(INTEL.pmc_indices)  # the scenario's counter layout


def test_set_cpuid_rejects_a_cpu_that_cannot_exist() -> None:
    with pytest.raises(VpmuError, match="num_gp"):
        World(INTEL, "6.9").step(SetCpuid(num_gp=9))


# --- emulated instructions by name ----------------------------------------------------------------------------


@pytest.mark.parametrize("era", list(ERAS))
def test_named_instructions_retire_as_branches_per_era(era: str) -> None:
    acts: list[Action] = [Wrmsr(M.IA32_PERFEVTSEL0, make_eventsel(INTEL_EVENTS["branches"])),
                          Wrmsr(M.IA32_PERF_GLOBAL_CTRL, 1),
                          Emulate((Insn(name="jmp"), Insn(name="enter"), Insn(name="leave"), Insn(name="nop")))]
    res = run_actions(INTEL, era, acts)
    assert res.ref_obs[-1].counters[0] == 1                          # ENTER/LEAVE are not branches
    assert res.kvm_obs[-1].counters[0] == (3 if ERAS[era].enter_leave_are_branches else 1)


def test_instruction_names() -> None:
    assert all(retires_as_branch(n, enter_leave_are_branches=True) == (INSNS[n] != "plain") for n in INSNS)
    with pytest.raises(VpmuError, match="unknown instruction name 'bogus'"):
        Insn(name="bogus")
    with pytest.raises(VpmuError, match="not both"):
        Insn(branch=True, name="nop")
    m = ReferenceMachine(INTEL)
    assert m.step(Batch((Insn(name="call"), Insn(name="ret")))).insn == 2


def test_scenario_grammar_for_the_new_fields() -> None:
    scn = parse_scenario("""\
name: new-fields
cpu: {preset: intel-v2, unavailable_events: 0x4, event_vector_length: 8}
kvm: "6.6.y"
options: {force_emulation_prefix: false, enable_vmware_backdoor: true, pmu_cap_disable: false}
steps:
  - native: {count: 10, cycles: 30, ref_cycles: 5, llc_refs: 2, llc_misses: 1, branch_misses: 0, slots: 40}
  - emulate: [{insn: jmp}, {insn: {name: leave, cpl: 3}}]
  - set_filter: {action: 2, events: [0xC0], flags: 0x2}
  - set_cpuid: {num_gp: 2, unavailable_events: 0}
""")
    assert scn.cpu.unavailable_events == 4 and scn.world["enable_vmware_backdoor"] is True
    native, emulate, flt, cpuid = scn.actions
    assert native == Native(10, cycles=30, ref_cycles=5, llc_refs=2, llc_misses=1, branch_misses=0, slots=40)
    assert emulate == Emulate((Insn(name="jmp"), Insn(cpl=3, name="leave")))
    assert flt == SetFilter(2, (0xC0,), flags=2) and cpuid == SetCpuid(num_gp=2, unavailable_events=0)


@pytest.mark.parametrize(("step", "field", "what"), [
    ("emulate: [{insn: jnz}]", "steps[0].emulate[0].insn.name", "expected an instruction name"),
    ("emulate: [{insn: {name: jmp, branch: true}}]", "steps[0].emulate[0].insn", "not both"),
    ("set_filter: {action: sideways}", "steps[0].set_filter.action", "expected allow, deny or"),
])
def test_scenario_errors_for_the_new_fields(step: str, field: str, what: str) -> None:
    with pytest.raises(VpmuError) as err:
        parse_scenario(f"name: x\ncpu: intel-v2\nsteps:\n  - {step}\n", "x.yaml")
    assert f"x.yaml:4: {field}: " in str(err.value) and what in str(err.value)


def test_mask_bits_are_what_the_sdm_says() -> None:
    assert (EVENTSEL_CMASK, EVENTSEL_INV, EVENTSEL_EDGE) == (0xFF << 24, 1 << 23, 1 << 18)


def test_the_documented_instruction_names_are_the_table() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "scenario-format.md").read_text(encoding="utf-8")
    listed = doc.split("A named instruction (the names of `vpmu.insns.INSNS`:", 1)[1].split(")", 1)[0]
    assert {w.strip(" ,\n") for w in listed.split()} - {""} == set(INSNS)


def test_new_fields_survive_a_dump_and_reload() -> None:
    from vpmu.scenario.dump import dump_scenario
    from vpmu.tolerances import CheckerOptions

    acts: list[Action] = [Native(5, cycles=3, slots=9), Emulate((Insn(name="jmp"), Insn(branch=True))),
                          SetFilter(2, (0xC0,), flags=2), SetCpuid(num_gp=2, pdcm=False)]
    text = dump_scenario("x", "d", INTEL, "6.6.y", None, CheckerOptions(), acts)
    assert parse_scenario(text).actions == tuple(acts)
