"""`vpmu check`: verdicts relative to a baseline (issue: vpmu check; docs/check.md)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from cli_helper import cli
from vpmu.actions import Native
from vpmu.check import Context, Runs, check
from vpmu.cli import main
from vpmu.config import preset
from vpmu.divergence import Divergence, Kind, Visibility
from vpmu.explore import Bounds
from vpmu.tolerances import CheckerOptions
from vpmu.trace import Observation

PATCHES = Path(__file__).parent / "designs" / "patches.py"
CFG = preset("intel-v2")


def div(kind: Kind, vis: Visibility = Visibility.GUEST, step: int = 0, observed: int = 0) -> Divergence:
    return Divergence(kind, vis, False, step, "gp0", 1, observed, "m")


def runs(base: list[Divergence], patch: list[Divergence]) -> Runs:
    obs = tuple(Observation(i, Native(1), i + 1, counters=(0,) * len(CFG.pmc_indices)) for i in range(2))
    ctx = Context(CFG, "6.8", "emulated-counter", "prev-counter", CheckerOptions())
    return Runs(ctx, (Native(1), Native(1)), obs, obs, tuple(base), tuple(patch))


# --- the regression definition -----------------------------------------------------------------


def test_a_divergence_only_the_patch_shows_is_a_regression_and_the_converse_a_fix() -> None:
    diffs = runs([div(Kind.LATE_PMI)], [div(Kind.LOST_OVERFLOW)]).differences("t")
    assert {(d.direction, d.kind) for d in diffs} == {("regression", "lost-overflow"), ("fix", "late-pmi")}


def test_the_same_divergence_on_both_designs_is_no_difference() -> None:
    assert runs([div(Kind.LOST_OVERFLOW)], [div(Kind.LOST_OVERFLOW)]).differences("t") == []


@pytest.mark.parametrize("change", [{"step": 1}, {"observed": 2}, {"kind": Kind.MISSING_PMI}])
def test_diverging_differently_is_a_regression(change: dict[str, Any]) -> None:
    base = div(Kind.LOST_OVERFLOW)
    args: dict[str, Any] = {"kind": Kind.LOST_OVERFLOW, **change}
    diffs = runs([base], [div(**args)]).differences("t")
    assert ("regression", args["kind"].value) in {(d.direction, d.kind) for d in diffs}


def test_tolerated_divergences_never_make_a_difference() -> None:
    tolerated = Divergence(Kind.LATE_PMI, Visibility.GUEST, True, 0, "gp0", 1, 2, "m", "R1")
    assert runs([], [tolerated]).differences("t") == []


def test_an_internal_divergence_is_no_difference_where_the_other_design_shows_it_to_the_guest() -> None:
    internal = div(Kind.SPURIOUS_OVERFLOW, Visibility.INTERNAL)
    guest = div(Kind.SPURIOUS_OVERFLOW, Visibility.GUEST)
    diffs = runs([guest], [internal]).differences("t")
    assert [(d.direction, d.visibility) for d in diffs] == [("fix", "guest")]
    # ... but it is one where the other design shows nothing of that kind
    assert [d.direction for d in runs([], [internal]).differences("t")] == ["regression"]


# --- whole checks --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_check() -> tuple[int, dict[str, Any]]:
    """Upstream 6.8 checked against itself at the default bounds, scenarios included (one run
    shared by the tests that read it)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as info:
        main(["check", "emulated-counter", "--kvm", "6.8", "--json", "--no-save"])
    code = info.value.code
    return (code if isinstance(code, int) else 0), json.loads(buf.getvalue())


def test_upstream_is_not_a_regression_of_itself(self_check: tuple[int, dict[str, Any]]) -> None:
    code, doc = self_check
    assert code == 0
    assert doc["regressions"] == [] and doc["fixes"] == []
    assert doc["scenarios"]["run"] >= 28 and doc["scenarios"]["regressed"] == []
    assert doc["explore"]["states"] > 1000 and doc["explore"]["depth_limited"] is True
    assert doc["explore"]["exhausted"] is False and doc["explore"]["frontier_left"] > 0
    assert doc["verdict"].startswith("no regression in ")


def test_json_has_the_documented_keys(self_check: tuple[int, dict[str, Any]]) -> None:
    _, doc = self_check
    assert {"design", "baseline", "kvm", "cpu", "bounds", "regressions", "fixes", "scenarios",
            "explore"} <= set(doc)
    assert doc["design"] == "emulated-counter" and doc["baseline"] == "emulated-counter"
    assert {"states", "transitions", "exhausted", "depth_limited", "frontier_left", "elapsed_seconds"} <= set(
        doc["explore"])


def test_reverting_the_seed_patch_regresses(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = cli(capsys, "check", "prev-counter", "--kvm", "6.8", "--depth", "3", "--json",
                       "--save", str(tmp_path / "cx"))
    doc = json.loads(out)
    assert code == 1
    kinds = {(r["kind"], r["visibility"]) for r in doc["regressions"]}
    assert ("lost-overflow", "guest") in kinds
    assert "seed-lost-overflow" in doc["scenarios"]["regressed"]
    for r in doc["regressions"]:
        assert set(r) >= {"kind", "visibility", "steps", "scenario_file", "baseline", "patched"}
        assert Path(r["scenario_file"]).is_file()
    # a regression's file replays, with exit 1, from any working directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    replay = doc["regressions"][0]["scenario_file"]
    code, out, err = cli(capsys, "run", replay)
    assert code == 1, err


@pytest.mark.parametrize("design, regressed", [
    ("RefactoredEmulated", False),
    ("ForgetClearEmulated", True),
    ("HardcodedWidth", True),
    ("NoReprogramRequest", True),
])
def test_patches_are_judged_against_upstream(design: str, regressed: bool) -> None:
    """Small bounds here; benchmarks/bench_check.py times them at the default bounds."""
    report = check(f"{PATCHES}:{design}", "6.8", CFG, Bounds(depth=4), restarts=300)
    assert report.regressed is regressed, [(d.kind, d.origin) for d in report.regressions]
    for d in report.regressions:
        assert d.actions and d.step < len(d.actions)


def test_a_scenario_with_computed_presets_is_checked_as_one_concrete_program() -> None:
    """kut-counter-overflow-amd-legacy presets `1 - C` from a calibration read: its differences
    shrink, replay and save as the reference's concrete values (a placeholder 0 would not)."""
    from vpmu.scenario import load_scenario

    scn = load_scenario(str(Path(__file__).parents[1] / "conformance" / "kut-counter-overflow-amd-legacy.yaml"))
    assert scn.computed
    report = check(f"{PATCHES}:ForgetClearEmulated", "6.8", scn.cpu, Bounds(depth=1, width=48), [scn], restarts=1)
    found = [d for d in report.regressions if d.origin == f"scenario {scn.name}" and d.kind != "expect"]
    assert found
    for d in found:
        replay = d.context.runs(d.actions).differences(d.origin)
        assert any(r.kind == d.kind and r.direction == d.direction for r in replay)


def test_a_width_bug_invisible_to_48_bit_scenarios_is_found_by_the_explorer() -> None:
    from vpmu.scenario import load_scenario

    report = check(f"{PATCHES}:HardcodedWidth", "6.8", CFG, Bounds(depth=4),
                   [load_scenario("seed-lost-overflow")], restarts=300)
    assert report.regressions and all(d.origin == "explore" for d in report.regressions)


# --- traces show the design's state ----------------------------------------------------------


def test_run_json_shows_the_designs_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "run", "seed-lost-overflow", "--kvm", "6.8", "--json")
    doc = json.loads(out)
    steps = doc["trace"]
    assert doc["kvm_from"] == "command line"
    assert "design" not in steps[0]["reference"]
    gp0 = steps[2]["kvm"]["design"]["gp0"]
    assert gp0 == {"counter": (1 << 48) - 2, "emulated_counter": 0, "prev_counter": 0, "extra": {}}


def test_trace_table_fits_80_columns_and_shows_the_design(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli(capsys, "run", "seed-lost-overflow", "--trace")
    assert code == 1
    assert "emu=0" in out and "the scenario's era" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    code, plain, _ = cli(capsys, "run", "seed-lost-overflow")
    assert "emu=0" not in plain and "verdict: FAIL" in plain


def test_debug_is_accepted_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "eras", "--debug")
    assert code == 0 and "6.8" in out


def test_conformance_runs_on_a_given_design(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "conformance", "--kvm", "6.8", "--design", f"{PATCHES}:ForgetClearEmulated",
                       "--json")
    doc = json.loads(out)
    assert code == 1 and doc["design"].endswith("ForgetClearEmulated") and doc["counts"]["FAIL"] > 0


def test_the_seed_patch_on_6_6_fixes_the_lost_overflow(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "check", "emulated-counter", "--kvm", "6.6", "--json", "--no-save")
    doc = json.loads(out)
    assert code == 0 and doc["regressions"] == []
    assert doc["bounds"]["assume"] == ["pmi-skid", "perf-create-fails"]
    assert ("lost-overflow", "guest") in {(f["kind"], f["visibility"]) for f in doc["fixes"]}


def test_regressions_beyond_the_default_assumptions_name_them(capsys: pytest.CaptureFixture[str]) -> None:
    """On 6.6 the stale prev_counter snapshot reports, by accident, a hardware overflow that
    the emulated-counter design loses when a late PMI lands after the handler (F3) or userspace
    rewrites a running counter (F4): both are opt-in."""
    code, out, _ = cli(capsys, "check", "emulated-counter", "--kvm", "6.6", "--assume", "all", "--json",
                       "--no-save", "--scenarios", "seed-lost-overflow")
    doc = json.loads(out)
    assert code == 1
    assert all(r["assumptions"] and set(r["assumptions"]) <= {"pmi-skid", "pmi-after-handler", "live-save-restore"}
               and set(r["assumptions"]) & {"pmi-after-handler", "live-save-restore"} for r in doc["regressions"])


def test_shrinking_a_difference_stops_at_the_deadline() -> None:
    """Past the time budget an explored difference is only cut after its divergent step;
    before it, the same difference shrinks further."""
    import time

    from vpmu.check import shrink_difference
    from vpmu.explore import Target, random_search, setup_prefix

    cfg = CFG.with_width(4)
    found = random_search(Target(cfg, "6.8", "prev-counter"), Bounds(depth=5), 0, range(200)).findings
    ctx = Context(cfg, "6.8", "emulated-counter", "prev-counter", CheckerOptions(), open_end=True)
    f = next(f for f in found if len(f.suffix) >= 4)
    d = ctx.runs(f.actions).differences("explore")[0]
    keep = len(setup_prefix(cfg, f.counters))
    late = shrink_difference(d, keep, deadline=time.time() - 1)
    assert late.record_key == d.record_key and late.actions == d.actions[:late.step + 1]
    full = shrink_difference(d, keep)
    assert full.record_key == d.record_key and len(full.actions) < len(late.actions)


def test_check_says_which_saved_files_replaced_existing_ones(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    args = ("check", "prev-counter", "--kvm", "6.8", "--depth", "1", "--restarts", "5", "--scenarios",
            "seed-lost-overflow", "--save", str(tmp_path))
    code, first, _ = cli(capsys, *args)
    assert code == 1 and "replay:" in first and "replaced" not in first
    code, second, _ = cli(capsys, *args)
    replays = [line for line in second.splitlines() if "replay:" in line]
    assert replays and all(line.endswith("(replaced an existing file of that name)") for line in replays)
    code, out, _ = cli(capsys, *args, "--json")
    assert all(Path(r["scenario_file"]).is_file() for r in json.loads(out)["regressions"])


# --- the engine (docs/check.md "What it runs") ---------------------------------------------------

WRONG_FAST = f"{PATCHES}:ForgetClearUpstreamFast"
EXAMPLE = f"{Path(__file__).resolve().parents[1] / 'examples' / 'my_design.py'}:SnapshotBeforePerf"


def test_a_wrong_fast_form_would_make_the_kernel_search_another_design() -> None:
    """Why the guard exists: with the wrong fast form the kernel's product search is not the
    search of the hooks under review (other states, other differences); `vpmu check` refuses
    the kernel for it, says why, and gives the object engine's answer."""
    from vpmu.check import KernelPairExpander, PairExpander, PairJudge
    from vpmu.explore import alphabet, bfs, counters_in_use
    from vpmu.explore.compact import Plan, plan

    b = Bounds(depth=3)
    cfg = b.fit(CFG)
    judge = PairJudge(Context(cfg, "6.8", "emulated-counter", WRONG_FAST, CheckerOptions(), open_end=True),
                      counters_in_use(cfg, b), b.event_map(cfg))
    base, patch = plan(judge.base.target, b), plan(judge.patch.target, b)
    assert isinstance(base, Plan) and isinstance(patch, Plan)  # what plan() alone would run
    k = bfs(KernelPairExpander(judge, base, patch), b.depth)
    o = bfs(PairExpander(judge, [a for _, a in alphabet(cfg, b)]), b.depth)
    assert (k.stats.states, {d.record_key for d in k.findings}) != (o.stats.states, {d.record_key for d in o.findings})
    report = check(WRONG_FAST, "6.8", CFG, b, restarts=100)
    assert report.engine == "object" and "its fast form disagrees with its hooks" in report.engine_note
    same = check(WRONG_FAST, "6.8", CFG, b, restarts=100, engine="object")
    assert same.engine == "object" and same.engine_note == ""
    assert [(d.record_key, d.actions) for d in report.regressions] == [
        (d.record_key, d.actions) for d in same.regressions] and report.regressed


def test_check_runs_on_the_engine_asked_for_and_says_which(capsys: pytest.CaptureFixture[str]) -> None:
    """--engine kernel (default) and --engine object give the same verdict; the text and the
    JSON name the engine, and why when the kernel was asked for but not used."""
    args = ("check", EXAMPLE, "--kvm", "6.8", "--depth", "3", "--restarts", "100", "--scenarios",
            "seed-lost-overflow", "--no-save")
    docs = {}
    for engine in ("kernel", "object"):
        code, out, _ = cli(capsys, *args, "--engine", engine, "--json")
        docs[engine] = json.loads(out)
        assert code == 1 and docs[engine]["engine"] == engine and docs[engine]["engine_note"] is None
        code, out, _ = cli(capsys, *args, "--engine", engine)
        assert f"\nengine: {engine}\n" in out
    strip = ("engine", "explore")
    assert {k: v for k, v in docs["kernel"].items() if k not in strip} == {
        k: v for k, v in docs["object"].items() if k not in strip}
    code, out, _ = cli(capsys, "check", "mediated", "--depth", "1", "--restarts", "5", "--scenarios",
                       "seed-lost-overflow", "--no-save", "--json")
    doc = json.loads(out)
    assert doc["engine"] == "object" and "no fast form" in doc["engine_note"]
    code, _, err = cli(capsys, "check", EXAMPLE, "--engine", "gpu")
    assert code == 2 and "unknown --engine 'gpu' (known: kernel, object)" in err
