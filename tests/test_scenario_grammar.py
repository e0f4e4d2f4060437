"""The scenario grammar of fidelity round 2 (docs/scenario-format.md): comparisons, saved and
computed values, `judge:` / `--judge`, and the `before_run:` phase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli_helper import cli
from vpmu.run import execute
from vpmu.scenario import ScenarioError, parse_scenario
from vpmu.scenario.expr import Expr, ExprError
from vpmu.scenario.model import Condition

# A counter preset one event before its wrap on a 48-bit Intel CPU, then one emulated instruction.
HEAD = "name: t\ncpu: intel-v2\nkvm: '6.8'\n"
COUNT = ("  - wrmsr: {msr: IA32_PERF_GLOBAL_CTRL, value: 0x0}\n"
         "  - wrmsr: {msr: IA32_PERFEVTSEL0, value: 0x4300c0}\n"
         "  - wrmsr: {msr: IA32_PERF_GLOBAL_CTRL, value: 0x1}\n"
         "  - native: {count: 10}\n")


def scenario(steps: str, head: str = HEAD) -> str:
    return head + "steps:\n" + steps


def run(text: str, judge: str | None = None):  # type: ignore[no-untyped-def]
    return execute(parse_scenario(text, "t.yaml"), judge=judge)


# --- comparisons ------------------------------------------------------------------------------


@pytest.mark.parametrize(("check", "ok"), [
    ("{gt: 10}", True), ("{gt: 11}", False), ("{ge: 11}", True), ("{lt: 12}", True), ("{lt: 11}", False),
    ("{le: 11}", True), ("{ne: 11}", False), ("{eq: 11}", True), ("{range: [11, 13]}", True),
    ("{range: [12, 13]}", False), ("{bits_set: 0xa}", True), ("{bits_set: 0x5}", False),
    ("{bits_clear: 0x4}", True), ("{bits_clear: 0x2}", False), ("{ge: 5, lt: 12}", True),
    ("{ge: 5, lt: 11}", False),
])
def test_comparisons(check: str, ok: bool) -> None:
    """gp0 reads 11 = 0b1011: the 10 native instructions and the enabling WRMSR."""
    res = run(scenario(COUNT + "  - rdmsr: {msr: IA32_PMC0}\n" + f"  - expect: {{result: {check}}}\n"))
    assert [e.ok for e in res.expects] == [ok]
    assert res.failed is not ok


def test_failed_comparison_shows_what_it_expected() -> None:
    res = run(scenario(COUNT + "  - expect: {counters: {gp0: {ge: 0x20, lt: 0x30}}}\n"))
    (e,) = res.expects
    assert not e.ok and e.expected == ">= 0x20, < 0x30" and e.observed == 11


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_condition_agrees_with_python(observed: int, v: int) -> None:
    """Each comparison means what its name says, for any 64-bit values."""
    def holds(op: str) -> bool:
        return Condition(((op, v),)).holds(observed, lambda x: x)
    assert holds("eq") == (observed == v) and holds("ne") == (observed != v)
    assert holds("ge") == (observed >= v) and holds("lt") == (observed < v)
    assert holds("gt") == (observed > v) and holds("le") == (observed <= v)
    assert holds("bits_set") == (observed & v == v) and holds("bits_clear") == (observed & v == 0)


# --- expressions ------------------------------------------------------------------------------


_OPS = ["+", "-", "*", "&", "|", "^"]


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=6), st.lists(st.sampled_from(_OPS), max_size=5),
       st.integers(-(2**40), 2**40))
def test_expressions_evaluate_like_integer_arithmetic(nums: list[int], ops: list[str], c: int) -> None:
    """An expression over a saved name evaluates as Python's integer arithmetic would (with C bound)."""
    terms = [f"({n})" for n in nums]
    text = terms[0] + "".join(f" {op} {t}" for op, t in zip(ops, terms[1:], strict=False)) + " + C"
    assert Expr.parse(text).evaluate({"C": c}) == eval(text, {"__builtins__": {}}, {"C": c})  # noqa: S307


@pytest.mark.parametrize("text", [
    "__import__('os')", "C.real", "C[0]", "f(C)", "1 if C else 2", "C < 2", "'a'", "1.5", "lambda: 1",
    "(C := 1)", "[C]", "C ** 2", "x" * 300,
])
def test_expressions_admit_no_python(text: str) -> None:
    with pytest.raises(ExprError):
        Expr.parse(text)


def test_expression_limits() -> None:
    with pytest.raises(ExprError, match="has no value"):
        Expr.parse("C + 1").evaluate({})
    with pytest.raises(ExprError, match="division by zero"):
        Expr.parse("C // 0").evaluate({"C": 1})
    with pytest.raises(ExprError, match="shift"):
        Expr.parse("1 << C").evaluate({"C": 10**9})
    with pytest.raises(ExprError, match="bits"):
        Expr.parse("C * C * C").evaluate({"C": 2**60})


# --- saved and computed values ----------------------------------------------------------------


CALIBRATE = (COUNT
             + "  - wrmsr: {msr: IA32_PERF_GLOBAL_CTRL, value: 0x0}\n"
             + "  - rdmsr: {msr: IA32_PMC0, save: C}\n"
             + "  - wrmsr: {msr: IA32_PMC0, value: '1 - C'}\n"
             + "  - wrmsr: {msr: IA32_PERF_GLOBAL_CTRL, value: 0x1}\n"
             + "  - native: {count: 10}\n"
             + "  - wrmsr: {msr: IA32_PERF_GLOBAL_CTRL, value: 0x0}\n"
             + "  - rdmsr: {msr: IA32_PMC0}\n")


def test_a_calibrated_preset_overflows_exactly_once() -> None:
    """check_counter_overflow's shape: measure C, preset 1 - C, rerun: the counter wraps to 1."""
    text = scenario(CALIBRATE + "  - expect: {result: 1}\n  - rdmsr: {msr: IA32_PERF_GLOBAL_STATUS}\n"
                    "  - expect: {result: {bits_set: 1}}\n")
    res = run(text)
    assert all(e.ok for e in res.expects) and not res.failed
    assert res.saved == {"reference": {"C": 11}, "kvm": {"C": 11}}  # 10 native + the enabling WRMSR
    preset = res.kvm_obs[6].action
    assert getattr(preset, "value", None) == (1 << 48) - 10  # 1 - 11 on a 48-bit counter
    assert res.to_dict()["saved"]["kvm"] == {"C": 11}


def test_each_side_computes_from_its_own_read() -> None:
    """The reference and KVM each compute a write from their own read, and the expect uses KVM's."""
    text = scenario(
        "  - wrmsr: {msr: IA32_PERF_GLOBAL_CTRL, value: 0x0}\n"
        "  - wrmsr: {msr: IA32_PERFEVTSEL0, value: 0x4300c0}\n"
        "  - wrmsr: {msr: IA32_PERF_GLOBAL_CTRL, value: 0x1}\n"
        "  - rdmsr: {msr: IA32_PMC0, save: C}\n"
        "  - wrmsr: {msr: IA32_PMC1, value: 'C + 100'}\n"
        "  - rdmsr: {msr: IA32_PMC1}\n"
        "  - expect: {result: 'C + 100'}\n")
    res = run(text)
    ref_c, kvm_c = res.saved["reference"]["C"], res.saved["kvm"]["C"]  # type: ignore[index]
    assert ref_c == kvm_c == 1  # the enabling WRMSR retired and counted
    assert res.expects[0].ok and res.expects[0].expected == kvm_c + 100


def test_computed_write_inside_a_batch() -> None:
    text = scenario("  - rdmsr: {msr: IA32_PMC0, save: C}\n"
                    "  - batch: [{wrmsr: {msr: IA32_PMC0, value: 'C - 3'}}]\n"
                    "  - expect: {counters: {gp0: -3}}\n")
    res = run(text)
    assert res.expects[0].ok and res.expects[0].expected == (1 << 48) - 3


@pytest.mark.parametrize(("steps", "where"), [
    ("  - wrmsr: {msr: IA32_PMC0, value: 'C'}\n", "t.yaml:5: steps[0].wrmsr.value: expected an integer or a name "
     "saved by an earlier read step, not 'C' (saved so far: none)"),
    ("  - host_wrmsr: {msr: IA32_PMC0, value: yes}\n", "t.yaml:5: steps[0].host_wrmsr.value: expected an integer "
     "or a name saved by an earlier read step, not 'yes' (saved so far: none)"),
    ("  - rdmsr: {msr: IA32_PMC0, save: C}\n  - wrmsr: {msr: IA32_PMC0, value: 'D + 1'}\n",
     "t.yaml:6: steps[1].wrmsr.value: D is not saved by an earlier read step (saved so far: C)"),
    ("  - rdmsr: {msr: IA32_PMC0, save: C}\n  - rdmsr: {msr: IA32_PMC1, save: C}\n",
     "t.yaml:6: steps[1].rdmsr.save: C is already saved at line 5"),
    ("  - rdmsr: {msr: IA32_PMC0, save: 1x}\n", "t.yaml:5: steps[0].rdmsr.save: expected a name"),
    ("  - batch: [{rdmsr: {msr: IA32_PMC0, save: C}}]\n", "steps[0].batch[0].rdmsr.save: save is only allowed"),
    ("  - rdmsr: {msr: IA32_PMC0, save: C}\n  - wrmsr: {msr: IA32_PMC0, value: 'C ** 2'}\n",
     "t.yaml:6: steps[1].wrmsr.value: expected only + - * // % & | ^ << >> ~"),
    ("  - rdpmc: {ecx: 0}\n  - expect: {result: 'D'}\n",
     "t.yaml:6: steps[1].expect.result: expected an integer or a name saved by an earlier read step, not 'D'"),
    ("  - rdpmc: {ecx: 0}\n  - expect: {result: {about: 3}}\n",
     "t.yaml:6: steps[1].expect.result.about: unknown comparison"),
    ("  - rdpmc: {ecx: 0}\n  - expect: {result: {range: [1]}}\n",
     "steps[1].expect.result.range: expected [low, high] (both included), not a list of 1 value"),
    ("  - native: 1\n  - expect: {insn: {range: [1, 2, 3]}}\n",
     "steps[1].expect.insn.range: expected [low, high] (both included), not a list of 3 values"),
    ("  - native: 1\n  - expect: {insn: {range: 1}}\n",
     "steps[1].expect.insn.range: expected [low, high] (both included), not 1"),
    ("  - cpuid\n  - wrmsr: {msr: IA32_PERF_GLOBAL_STATUS, value: 1, save: X}\n",
     "steps[1].wrmsr.save: unknown field"),
])
def test_grammar_errors_name_line_and_field(steps: str, where: str) -> None:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(scenario(steps), "t.yaml")
    assert where in str(e.value)


def test_run_time_value_errors_name_the_step_line() -> None:
    """A computed write that does not fit its MSR is an error at the write's line, not a crash."""
    text = scenario("  - rdmsr: {msr: IA32_PERF_GLOBAL_CTRL, save: G}\n"
                    "  - wrmsr: {msr: IA32_PERF_GLOBAL_STATUS_RESET, value: 'G - 1'}\n")
    with pytest.raises(ScenarioError, match=r"t.yaml:6: value: 'G - 1': negative values are only allowed"):
        run(text)


def test_a_faulting_read_saves_nothing() -> None:
    text = scenario("  - rdpmc: {ecx: 0x80000000, save: F}\n  - wrmsr: {msr: IA32_PMC0, value: 'F'}\n",
                    head="name: t\ncpu: intel-v2\nkvm: '6.9'\n")
    with pytest.raises(ScenarioError, match="F has no value"):
        run(text)


# --- judge ------------------------------------------------------------------------------------

#: 6.6's prev_counter design signals an overflow that no wrap caused when 0 is written to a
#: running counter (kut-running-counter-wrmsr's diagnosis (b)); the expect still holds.
SPURIOUS = ("name: t\ncpu: intel-v2\nkvm: '6.6'\nJUDGE\nsteps:\n" + COUNT
            + "  - wrmsr: {msr: IA32_PMC0, value: 0}\n  - rdmsr: {msr: IA32_PMC0}\n"
            + "  - expect: {result: {lt: 5}}\n")


def test_judge_expects_lets_the_expects_decide() -> None:
    everything = run(SPURIOUS.replace("JUDGE", ""))
    assert everything.judge == "all" and everything.failed and everything.expects[0].ok
    only_expects = run(SPURIOUS.replace("JUDGE", "judge: expects"))
    assert not only_expects.failed and only_expects.divergences == everything.divergences
    assert "not judged" in only_expects.verdict
    d = only_expects.to_dict()
    assert d["judge"] == "expects" and all(not x["judged"] for x in d["divergences"])
    assert run(SPURIOUS.replace("JUDGE", "judge: expects"), judge="all").failed


def test_judge_on_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SPURIOUS.replace("JUDGE", ""))
    assert cli(capsys, "run", str(path))[0] == 1
    code, out, _ = cli(capsys, "run", str(path), "--judge", "expects", "--json")
    assert code == 0 and json.loads(out)["judge"] == "expects"
    code, _, err = cli(capsys, "run", str(path), "--judge", "some")
    assert code == 2 and "--judge: expected all or expects" in err
    path.write_text(SPURIOUS.replace("JUDGE", "judge: most"))
    code, _, err = cli(capsys, "run", str(path))
    assert code == 2 and "s.yaml:4: judge: expected all or expects, not 'most'" in err


# --- before_run -------------------------------------------------------------------------------


def test_before_run_is_userspace_set_up_before_the_first_kvm_run() -> None:
    text = ("name: t\ncpu: intel-v2\nkvm: '6.8'\nbefore_run:\n  - set_cpuid: {num_gp: 2}\n"
            "  - expect: {fault: false}\nsteps:\n  - set_cpuid: {num_gp: 3}\n  - expect: {fault: false}\n"
            "  - cpuid\n  - set_cpuid: {num_gp: 1}\n  - expect: {fault: true}\n")
    scn = parse_scenario(text, "t.yaml")
    assert scn.before_run == 1 and len(scn.actions) == 4
    res = execute(scn)
    assert all(e.ok for e in res.expects), [e for e in res.expects if not e.ok]


def test_before_run_refuses_guest_steps() -> None:
    text = "name: t\ncpu: intel-v2\nbefore_run:\n  - set_cpuid: {num_gp: 2}\n  - cpuid\nsteps:\n  - cpuid\n"
    with pytest.raises(ScenarioError, match=r"t.yaml:5: before_run\[1\]: before_run holds userspace set-up only"):
        parse_scenario(text, "t.yaml")
    with pytest.raises(ScenarioError, match="steps: needs at least one action"):
        parse_scenario("name: t\ncpu: intel-v2\nbefore_run: [clear_filter]\nsteps:\n  - expect: {pmis: 0}\n",
                       "t.yaml")
