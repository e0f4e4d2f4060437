"""The public KVM PMU tests as vpmu scenarios (conformance/*.yaml, docs/conformance.md).

Every conformance scenario runs on each era it declares and must give what its record says:
`pass`, or `expected-fail` exactly as recorded. An unexplained failure (`FAIL`) or a stale
expected failure (`unexpected-pass`) fails the test. Then: the `conformance:` block and `any_of`
validate line-precisely, the classification reacts to model regressions, the `legacy_msrs_ignored`
checker option, and the `vpmu conformance` command (exit codes, --json).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cli_helper import cli
from vpmu.checker import legacy_msr_missing
from vpmu.config import config_from_mapping, preset
from vpmu.conformance import STATUSES, classify, collect, failure_signature, run_all
from vpmu.eras import ERAS
from vpmu.run import execute
from vpmu.scenario import Scenario, ScenarioError, parse_scenario
from vpmu.tolerances import CheckerOptions

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
SCENARIOS: dict[str, Scenario] = {s.name: s for s in collect([str(CONFORMANCE)])}
CASES = [(name, rec.era) for name, scn in SCENARIOS.items()
         for rec in (scn.conformance.eras if scn.conformance else ())]


# --- every upstream check on every declared era ---------------------------------------------------


@pytest.mark.parametrize(("name", "era"), CASES, ids=[f"{n}@{e}" for n, e in CASES])
def test_upstream_check(name: str, era: str) -> None:
    scn = SCENARIOS[name]
    res = classify(scn, execute(scn, kvm=era))
    assert res.status in ("pass", "expected-fail"), f"{name} on KVM {era}: {res.status}: {res.why}"


def test_every_scenario_records_every_era() -> None:
    assert len(SCENARIOS) >= 46
    for name, scn in SCENARIOS.items():
        assert scn.conformance is not None
        assert [r.era for r in scn.conformance.eras] == list(ERAS), name
        for rec in scn.conformance.eras:
            if rec.expected == "fail":
                assert rec.reason and rec.spec and "§" in rec.spec, (name, rec.era)


def test_the_known_era_behaviours_are_recorded() -> None:
    """The diagnoses of docs/conformance.md, pinned: which runs are expected failures, judged (as
    every conformance scenario is, `judge: expects`) on the upstream test's own asserts."""
    fails = {(n, r.era) for n, scn in SCENARIOS.items() if scn.conformance
             for r in scn.conformance.eras if r.expected == "fail"}
    pre69 = ("6.1", "6.6", "6.6.y", "6.8")
    want = (
        {("kut-emulated-instr-amd", e) for e in ("6.1", "6.6.y", "6.9", "mediated")}  # (a), (g)
        | {(n, "6.1") for n in ("kut-emulated-instr-amd-2025", "kut-counter-overflow-amd",
                                "kut-running-counter-wrmsr-amd")}                          # (g)
        | {(n, e) for n in ("st-fixed-counters-1of3", "st-fixed-counters-3of3", "st-gp-counters-fw",
                            "st-gp-counters-legacy-1gp", "st-fixed-counters-v5-enumerated")
           for e in pre69}                                                  # (c)
        | {("st-arch-event-unavailable", e) for e in pre69}                 # (h)
        | {("st-pmu-caps-guest-wrmsr", "6.1")}                              # (k)
        | {("st-pmu-caps-unsupported", e) for e in ERAS if e != "mediated"}  # (k)
    )
    assert fails == want
    assert all(scn.judge == "expects" for scn in SCENARIOS.values())


def test_judging_everything_shows_what_the_upstream_asserts_do_not_look_at() -> None:
    """Under `judge: all` the architecture's other differences fail runs the upstream test passes."""
    scn = SCENARIOS["kut-rdpmc-legacy"]
    judged = execute(scn, kvm="6.8")
    assert not judged.failed and judged.divergences and not judged.judged
    assert "not judged" in judged.verdict
    strict = execute(scn, kvm="6.8", judge="all")
    assert strict.failed and failure_signature(strict) == (("missing-fault",), ())
    assert classify(scn, judged).status == "pass"


# --- the classification reacts to model regressions -------------------------------------------------


def _status(name: str, era: str, options: CheckerOptions | None = None) -> tuple[str, str]:
    scn = SCENARIOS[name]
    res = classify(scn, execute(scn, kvm=era, options=options))
    return res.status, res.why


def test_a_regressed_era_switch_is_an_unexplained_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _status("st-gp-counters-fw", "6.9")[0] == "pass"
    monkeypatch.setitem(ERAS, "6.9", dataclasses.replace(ERAS["6.9"], rdpmc_decoding="v6.6"))
    status, why = _status("st-gp-counters-fw", "6.9")
    assert status == "FAIL" and "fast-rdpmc-0" in why
    assert _status("st-fixed-counters-1of3", "6.9")[0] == "FAIL"


def test_failing_differently_than_recorded_is_unexplained(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _status("st-gp-counters-fw", "6.8")[0] == "expected-fail"
    monkeypatch.setitem(ERAS, "6.8", dataclasses.replace(ERAS["6.8"], global_ctrl_reset_enables_gp=True))
    status, why = _status("st-gp-counters-fw", "6.8")
    assert status == "FAIL" and "recorded: expects fast-rdpmc-0" in why and "global-ctrl-reset" in why


def test_a_fixed_model_makes_a_stale_record_an_unexpected_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _status("st-fixed-counters-1of3", "6.8")[0] == "expected-fail"
    monkeypatch.setitem(ERAS, "6.8", dataclasses.replace(ERAS["6.8"], rdpmc_decoding="v6.9"))
    status, why = _status("st-fixed-counters-1of3", "6.8")
    assert status == "unexpected-pass" and "update the record" in why


def test_legacy_msrs_option() -> None:
    """(e): KVM drops P6 PERFCTR0/1 accesses the vPMU lacks instead of #GP; tolerated by default."""
    scn = SCENARIOS["st-gp-counters-v0"]
    res = execute(scn, kvm="6.9")
    assert not res.failed and res.divergences
    assert {(d.kind, d.relaxation) for d in res.divergences} == {("missing-fault", "legacy-msrs")}
    strict = execute(scn, kvm="6.9", options=dataclasses.replace(scn.checker, legacy_msrs_ignored=False),
                     judge="all")
    assert strict.failed and failure_signature(strict) == (("missing-fault",), ())


def test_legacy_msr_missing() -> None:
    intel, amd = preset("intel-v2"), preset("amd-k7")
    one_gp = config_from_mapping({"preset": "intel-v2", "num_gp": 1})
    v0 = config_from_mapping({"vendor": "intel", "version": 0, "num_gp": 0})
    assert not legacy_msr_missing(intel, 0xC2) and legacy_msr_missing(one_gp, 0xC2)
    assert legacy_msr_missing(one_gp, 0x187) and not legacy_msr_missing(one_gp, 0x186)
    assert legacy_msr_missing(intel, 0xC001_0004) and not legacy_msr_missing(amd, 0xC001_0007)
    assert legacy_msr_missing(amd, 0xC1) and legacy_msr_missing(v0, 0xC1)
    assert not legacy_msr_missing(one_gp, 0xC3)  # IA32_PMC2 is not on x86.c's list: it #GPs
    assert not legacy_msr_missing(v0, 0x4C1)


# --- the format -------------------------------------------------------------------------------------

HEAD = "name: t\ncpu: intel-v2\nsteps:\n  - rdpmc: {ecx: 0x80000000}\n  - expect: {id: fast, fault: true}\n"


def conf(eras: str, extra: str = "") -> str:
    return (HEAD + "conformance:\n  source: {suite: kvm-unit-tests, repo: r, file: x86/pmu.c, function: f, "
            f"version: v}}\n  asserts: a\n  tolerance: exact\n{extra}  eras:\n{eras}")


FAIL_69 = ('    "6.6":\n      expected: fail\n      divergences: [missing-fault]\n      expects: [fast]\n'
           '      reason: fast RDPMC\n      spec: "kvm-vpmu.md §2.6 R12"\n')


@pytest.mark.parametrize("spec", ["kvm-vpmu.md §2.6 R12", "x86-pmu.md A.8", "architecture-and-peers.md A.2"])
def test_spec_references_point_into_the_facts(spec: str) -> None:
    rec = parse_scenario(conf(FAIL_69.replace("kvm-vpmu.md §2.6 R12", spec)), "t.yaml").conformance
    assert rec is not None and rec.eras[0].spec == spec


def test_conformance_block_parses_and_classifies() -> None:
    scn = parse_scenario(conf(FAIL_69 + '    "6.9": pass\n'), "t.yaml")
    assert scn.conformance is not None
    assert [r.era for r in scn.conformance.eras] == ["6.6", "6.9"]
    rec = scn.conformance.record("6.6")
    assert rec is not None and rec.expects == ("fast",) and rec.divergences == ("missing-fault",)
    assert [classify(scn, execute(scn, kvm=e)).status for e in ("6.6", "6.9", "6.8")] == \
        ["expected-fail", "pass", "FAIL"]  # 6.8 has no record: expected to pass
    stale = parse_scenario(conf(FAIL_69.replace('"6.6"', '"6.9"')), "t.yaml")
    assert classify(stale, execute(stale, kvm="6.9")).status == "unexpected-pass"


@pytest.mark.parametrize(("text", "where"), [
    (conf('    "6.9": pass\n', "  extra: 1\n"), "t.yaml:10: conformance.extra: unknown key"),
    (conf('    6.9: pass\n'), "t.yaml:11: conformance.eras.6.9: quote the era"),
    (conf('    "6.7": pass\n'), "t.yaml:11: conformance.eras.6.7: unknown KVM era"),
    (conf('    "6.9": fine\n'), "t.yaml:11: conformance.eras.6.9: expected pass or a mapping"),
    (conf('    "6.9": {expected: pass, reason: x}\n'), "t.yaml:11: conformance.eras.6.9.reason: only allowed"),
    (conf(FAIL_69.replace("      reason: fast RDPMC\n", "")), "t.yaml:11: conformance.eras.6.6.reason: required"),
    (conf(FAIL_69.replace("kvm-vpmu.md §2.6 R12", "somewhere")),
     "t.yaml:16: conformance.eras.6.6.spec: expected a spec"),
    (conf(FAIL_69.replace("kvm-vpmu.md §2.6 R12", "x86-pmu.md §2")),
     "t.yaml:16: conformance.eras.6.6.spec: expected a spec"),
    (conf(FAIL_69.replace("[missing-fault]", "[lost-fault]")), "t.yaml:13: conformance.eras.6.6.divergences: unknown"),
    (conf(FAIL_69.replace("[fast]", "[slow]")),
     "t.yaml:14: conformance.eras.6.6.expects: no expect step has id 'slow'"),
    (conf(FAIL_69.replace("      divergences: [missing-fault]\n      expects: [fast]\n", "")),
     "t.yaml:11: conformance.eras.6.6: an expected failure needs"),
    (conf('    "6.9": pass\n').replace("tolerance: exact", "tolerance: [exact, roughly]"),
     "t.yaml:9: conformance.tolerance: 'roughly' is not one of"),
    (conf('    "6.9": pass\n').replace("suite: kvm-unit-tests", "suite: ltp"), "t.yaml:7: conformance.source.suite"),
    (conf('    "6.9": pass\n').replace("version: v", "versio: v"), "t.yaml:7: conformance.source.versio: unknown key"),
    (HEAD + "  - expect: {id: fast, fault: true}\n", "t.yaml:6: steps[2].expect.id: id 'fast' is already used"),
    (HEAD + "  - expect: {id: x}\n", "t.yaml:6: steps[2].expect: expected at least one of"),
    (HEAD + "  - expect: {any_of: [{fault: true}]}\n", "t.yaml:6: steps[2].expect.any_of: expected a list of at least"),
    (HEAD + "  - expect:\n      any_of:\n        - {fault: true}\n        - {any_of: []}\n",
     "t.yaml:9: steps[2].expect.any_of[1].any_of: unknown expectation"),
])
def test_format_errors_are_line_precise(text: str, where: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "t.yaml")
    assert str(info.value).startswith(where), str(info.value)


def test_any_of() -> None:
    text = HEAD + "  - expect: {id: either, any_of: [{fault: true}, {fault: false, result: 0x0}]}\n"
    scn = parse_scenario(text, "t.yaml")
    for era in ("6.6", "6.9"):  # 6.6 returns the low 32 bits of 0, 6.9 #GPs: both allowed
        (_, outcome) = execute(scn, kvm=era).expects
        assert outcome.ok and outcome.check == "any_of" and outcome.id == "either"
    bad = parse_scenario(text.replace("result: 0x0", "result: 0x1"), "t.yaml")
    (_, outcome) = execute(bad, kvm="6.6").expects
    assert not outcome.ok
    assert outcome.expected == "fault=true | fault=false, result=0x1"
    assert outcome.observed == "fault=false, result=0x0"
    assert outcome.to_dict()["id"] == "either"


# --- the command ----------------------------------------------------------------------------------


def test_conformance_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "conformance", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert set(doc) == {"eras", "design", "counts", "ok", "results"}
    assert doc["design"] is None
    assert doc["eras"] is None and doc["ok"] is True
    assert len(doc["results"]) == len(CASES) == sum(doc["counts"].values())
    assert doc["counts"]["FAIL"] == doc["counts"]["unexpected-pass"] == 0 and doc["counts"]["expected-fail"] > 0
    keys = {"scenario", "file", "source", "asserts", "tolerance", "kvm", "status", "why", "verdict", "expected",
            "declared", "recorded", "observed", "divergences", "failed_expects"}
    for r in doc["results"]:
        assert set(r) == keys and r["status"] in STATUSES
        assert set(r["source"]) == {"suite", "repo", "file", "function", "version", "adapted"}
    amd = {r["kvm"]: r for r in doc["results"] if r["scenario"] == "kut-emulated-instr-amd"}
    assert amd["6.9"]["status"] == "expected-fail"
    assert amd["6.9"]["observed"] == {"divergences": [], "expects": ["after-blob", "instructions-count"]}
    assert amd["6.9"]["recorded"]["spec"].startswith("kvm-vpmu.md §2.1")
    assert [f["id"] for f in amd["6.9"]["failed_expects"]] == ["after-blob", "instructions-count"]


def test_conformance_command_table_and_eras(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(CONFORMANCE / "st-gp-counters-fw.yaml"), str(CONFORMANCE / "st-gp-counters-v0.yaml")]
    code, out, _ = cli(capsys, "conformance", *files, "--kvm", "6.6", "--kvm", "6.9")
    assert code == 0
    assert "st-gp-counters-fw" in out and "expected-fail" in out and "legacy-msrs" in out
    assert "2 scenarios, 4 runs: 3 pass, 1 expected-fail, 0 FAIL, 0 unexpected-pass" in out
    code, out, _ = cli(capsys, "conformance", files[0], "--kvm", "6.9", "--json")
    assert code == 0 and json.loads(out)["eras"] == ["6.9"]


@pytest.mark.parametrize("args", [
    ("conformance", "--kvm", "6.7"), ("conformance", "--kvm", "6.9", "--kvm", "nope"),
    ("conformance", "no-such-dir"), ("conformance", str(Path(__file__))),
])
def test_conformance_command_bad_input(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("vpmu: error: ") and err.count("\n") == 1, err


def test_conformance_command_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "stale.yaml").write_text(conf(FAIL_69.replace('"6.6"', '"6.9"')))
    code, out, _ = cli(capsys, "conformance", str(tmp_path))
    assert code == 1 and "unexpected-pass" in out and "update the record" in out
    (tmp_path / "stale.yaml").write_text(conf('    "6.6": pass\n').replace("name: t", "name: u"))
    code, out, _ = cli(capsys, "conformance", str(tmp_path), "--json")
    assert code == 1
    (res,) = json.loads(out)["results"]
    assert res["status"] == "FAIL" and res["why"].startswith("missing-fault, expect fast")
    (tmp_path / "plain.yaml").write_text(HEAD)
    code, _, err = cli(capsys, "conformance", str(tmp_path))
    assert code == 2 and "plain.yaml: conformance: required key is missing" in err


def test_run_all_validates_eras_and_defaults_to_declared() -> None:
    scn = SCENARIOS["kut-gp-write-width"]
    assert [r.kvm for r in run_all([scn])] == list(ERAS)
    assert [r.kvm for r in run_all([scn], ["6.9", "6.9", "6.6"])] == ["6.9", "6.6"]


def test_docs_table_matches_the_records() -> None:
    """docs/conformance.md's verdict table says what the records say (and test_upstream_check
    says the records are what the runs give)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "conformance.md").read_text(encoding="utf-8")
    header = "| Upstream check (file → function) | Scenario | " + " | ".join(ERAS) + " |"
    assert header in doc
    table: dict[str, list[str]] = {}
    for line in doc.split(header, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[1]] = [c.split(" ")[0] for c in cells[2:]]
    assert set(table) == set(SCENARIOS)
    for name, scn in SCENARIOS.items():
        assert scn.conformance is not None
        want = ["expected-fail" if r.expected == "fail" else "pass" for r in scn.conformance.eras]
        assert table[name] == want, name
