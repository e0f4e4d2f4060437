"""Scenario files: every step kind parses, -N presets, line-precise errors, built-ins load."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpmu import actions as A
from vpmu import msrs as M
from vpmu.scenario import ScenarioError, builtin_names, load_scenario, parse_scenario

ALL_KINDS = """\
name: all-kinds
description: every step kind
cpu: {preset: intel-v2, gp_width: 40}
kvm: "6.9"
design: emulated-counter
options: {pmi_skid: 1, r7_ignored_overflow: true, lvtpc: 0x400, lapic_in_kernel: true}
steps:
  - host_wrmsr: {msr: IA32_PERFEVTSEL0, value: 0x5300C0}
  - host_wrmsr: {msr: 0x4c1, value: -2}
  - wrmsr: {msr: ia32_pmc1, value: -1}
  - wrmsr: {msr: IA32_FIXED_CTR_CTRL, value: 0xb, cpl: 0, host_pmi: after-handler}
  - rdmsr: {msr: IA32_PERF_GLOBAL_STATUS}
  - rdpmc: {ecx: 0x40000000, pce: false, cpl: 3}
  - native: 5
  - native: {count: 10, branches: 2, cpl: 3, hold_pmi: true}
  - host_pmi
  - cpuid
  - hlt: {host_pmi: before-handler}
  - emulate: [insn, {insn: {branch: true}}, {rdpmc: {ecx: 0}}]
  - batch: {items: [insn, {wrmsr: {msr: IA32_A_PMC0, value: 0}}, {rdmsr: {msr: LVTPC}}]}
  - perf_fail: {on: true}
  - perf_fail
  - set_filter: {action: deny, events: [0x00C0], fixed_counter_bitmap: 0x1}
  - clear_filter
  - set_cpuid: {version: 2}
  - host_rdmsr: {msr: IA32_PERF_GLOBAL_CTRL}
  - save_restore
  - expect: {counters: {gp0: -2, fixed0: 0, 1: 5}, global_status: 0, pmis: 0, fault: false, result: 0,
             lvtpc: 0x400, insn: 3}
"""


def test_every_step_kind_parses() -> None:
    s = parse_scenario(ALL_KINDS, "all.yaml")
    assert s.kvm == "6.9" and s.design == "emulated-counter" and s.cpu.gp_width == 40
    assert s.checker.pmi_skid == 1 and s.checker.r7_ignored_overflow and s.world == {"lvtpc": 0x400,
                                                                                     "lapic_in_kernel": True}
    kinds = [a.KIND for a in s.actions]
    assert set(kinds) == set(A.ACTION_TYPES) - {"insn"}
    assert s.actions[1] == A.HostWrmsr(M.IA32_A_PMC0, (1 << 40) - 2)
    assert s.actions[2] == A.Wrmsr(M.IA32_PMC0 + 1, (1 << 40) - 1)
    assert s.actions[6] == A.Native(5)
    assert s.actions[11] == A.Emulate((A.Insn(), A.Insn(branch=True), A.Rdpmc(0)))
    (e,) = s.expects
    assert e.after == len(s.actions) - 1 and e.line == 28
    assert ("counter:gp0", (1 << 40) - 2) in e.checks and ("counter:gp1", 5) in e.checks


@pytest.mark.parametrize(("text", "line", "field", "what"), [
    ("name: x\ncpu: intel-v2\nsteps:\n  - cpuid\n  - wrmsr: {msr: IA32_PMC0, valu: 1}\n", 5,
     "steps[1].wrmsr.valu", "unknown field"),
    ("name: x\ncpu: intel-v2\nsteps:\n  - cpuid\n  - native: {count: many}\n", 5, "steps[1].native.count",
     "expected an integer"),
    ("name: x\ncpu: intel-v2\nbogus: 1\nsteps: [cpuid]\n", 3, "bogus", "unknown key"),
    ("name: x\ncpu: intel-v9\nsteps: [cpuid]\n", 2, "cpu.preset", "unknown preset"),
    ("name: x\ncpu: {preset: intel-v2, num_gp: 12}\nsteps: [cpuid]\n", 2, "cpu.num_gp", "must be 0..8"),
    ("name: x\ncpu: intel-v2\nkvm: '5.0'\nsteps: [cpuid]\n", 3, "kvm", "expected a KVM era"),
    ("name: x\ncpu: intel-v2\nkvm: 6.10\nsteps: [cpuid]\n", 3, "kvm", 'quote the era (kvm: "6.1")'),
    ("name: x\ncpu: intel-v2\nkvm: 6.8\nsteps: [cpuid]\n", 3, "kvm", "quote the era"),
    ("name: x\ncpu: intel-v2\nsteps:\n  - frobnicate\n", 4, "steps[0]", "unknown step kind"),
    ("name: x\ncpu: intel-v2\nsteps:\n  - wrmsr: {msr: IA32_PERFEVTSEL0, value: -1}\n", 4,
     "steps[0].wrmsr.value", "negative values are only allowed for counter MSRs"),
    ("name: x\ncpu: intel-v2\nsteps:\n  - rdmsr: {msr: NOT_AN_MSR}\n", 4, "steps[0].rdmsr.msr",
     "unknown MSR name"),
    ("name: x\ncpu: intel-v2\nsteps:\n  - cpuid\n  - expect: {counters: {gp7: 0}}\n", 5,
     "steps[1].expect.counters.gp7", "does not exist"),
    ("name: x\ncpu: intel-v2\noptions: {r1_vm_entry: 3}\nsteps: [cpuid]\n", 3, "options.r1_vm_entry",
     "true or false"),
    ("name: x\ncpu: intel-v2\noptions: {colour: red}\nsteps: [cpuid]\n", 3, "options.colour", "unknown option"),
    ("name: x\ncpu: intel-v2\nsteps:\n  - batch: [insn, {cpuid: {}}]\n", 4, "steps[0].batch[1]",
     "unknown step kind"),
    ("name: x\ncpu: intel-v2\nsteps:\n  - insn\n", 4, "steps[0]", "only allowed inside"),
    ("name: x\nsteps: [cpuid]\n", 1, "cpu", "required"),
    ("name: x\ncpu: intel-v2\nsteps: [cpuid\n", 4, "<yaml>", "not valid YAML"),
])
def test_errors_name_file_line_and_field(text: str, line: int, field: str, what: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.yaml")
    err = info.value
    assert (err.line, err.field) == (line, field), str(err)
    assert what in err.reason
    assert str(err).startswith(f"bad.yaml:{line}: {field}: ")


def test_file_errors(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: x\ncpu: intel-v2\nsteps:\n  - native: {count: 1, branches: 2}\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml:4: steps\[0\]\.native\.branches"):
        load_scenario(str(p))
    with pytest.raises(Exception, match="cannot read scenario"):
        load_scenario(str(tmp_path / "missing.yaml"))
    with pytest.raises(Exception, match="no scenario file or built-in"):
        load_scenario("no-such-scenario")


def test_builtins_load() -> None:
    names = builtin_names()
    for required in ("seed-lost-overflow", "seed-duplicate-overflow", "seed-delayed-detection",
                     "kut-emulated-instr"):
        assert required in names
    for n in names:
        s = load_scenario(n)
        assert s.name == n and s.description and s.actions
    lost = load_scenario("seed-lost-overflow")
    assert lost.actions[2] == A.HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFE)
    assert lost.actions[3] == A.Batch((A.Insn(), A.Insn(), A.Insn()))


def test_design_path_is_relative_to_the_file(tmp_path: Path) -> None:
    p = tmp_path / "d.yaml"
    p.write_text("name: x\ncpu: intel-v2\ndesign: my.py:Mine\nsteps: [cpuid]\n")
    assert load_scenario(str(p)).design == f"{tmp_path}/my.py:Mine"
