"""The explorer against the real models: what it must find on each era, shrinking, replay,
determinism and the `vpmu explore` command (issue: the explorer)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helper import cli
from vpmu import msrs
from vpmu.actions import Action, Batch, Cpuid, Native, Rdmsr, Wrmsr
from vpmu.checker import compare
from vpmu.config import preset
from vpmu.errors import VpmuError
from vpmu.explore import (
    Bounds,
    Finding,
    InMemoryExpander,
    Judge,
    ReplayExpander,
    Target,
    alphabet,
    bfs,
    counters_in_use,
    explore,
    run_unit,
    setup_prefix,
)
from vpmu.run import execute
from vpmu.scenario import dump_scenario, parse_scenario
from vpmu.tolerances import CheckerOptions

CFG = preset("intel-v2").with_width(4)
#: Every kind but save-restore: KVM_SET_MSRS of a running counter mis-arms its perf period
#: (spec kvm-vpmu.md §2.7 note, docs/findings.md F3), a finding of its own.
NO_SAVE_RESTORE = tuple(k for k in Bounds().kinds if k != "save-restore")
R7 = CheckerOptions(r7_ignored_overflow=True)
LETTERS = [a for _, a in alphabet(CFG, Bounds(kinds=NO_SAVE_RESTORE))]


def kinds_of(findings: Sequence[Finding]) -> set[tuple[str, str]]:
    return {(f.kind, f.visibility) for f in findings}


def by_kind(findings: Sequence[Finding], kind: str, visibility: str) -> Finding:
    return next(f for f in findings if (f.kind, f.visibility) == (kind, visibility))


# --- what it must find -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["random", "exhaustive"])
def test_finds_both_seed_bugs_on_6_6_shrunk(mode: str) -> None:
    report = explore(Target(CFG, "6.6"), Bounds(), mode=mode, seed=0)
    lost = by_kind(report.counterexamples, "lost-overflow", "guest")
    # the seed's bug (a): an invalid-guest-state batch crossing the wrap, nothing else
    assert len(lost.suffix) == 2 and isinstance(lost.suffix[-1], Batch)
    assert isinstance(lost.suffix[0], Wrmsr) and lost.suffix[0].value == CFG.gp_mask - 1
    assert len(lost.suffix[-1].items) == 2
    # the seed's bug (b): a second overflow signal for one wrap
    dup = by_kind(report.counterexamples, "spurious-overflow", "internal")
    assert "second signal" in dup.detail
    assert len(dup.suffix) <= 3


def test_exhaustive_counterexamples_are_shortest() -> None:
    result = bfs(InMemoryExpander(Target(CFG, "6.6"), Bounds(depth=3)), 3)
    lost = by_kind(result.findings, "lost-overflow", "guest")
    assert len(lost.suffix) == 2  # BFS: nothing shorter diverges this way
    assert result.stats.depth_limited and result.stats.depth_reached == 3 and not result.stats.exhausted


@pytest.mark.parametrize("era", ["6.8", "6.9", "mediated"])
def test_fixed_eras_show_neither_seed_kind(era: str) -> None:
    """Within the default bounds (R7 tolerated, save/restore left out: both are separate
    findings) the emulated-counter and mediated designs neither lose nor duplicate an
    overflow."""
    target = Target(CFG, era, checker_options=R7)
    report = explore(target, Bounds(kinds=NO_SAVE_RESTORE), mode="auto", seed=0, restarts=500)
    found = kinds_of(report.counterexamples)
    assert not {k for k in found if k[0] in ("lost-overflow", "spurious-overflow")}
    stats = report.searches[-1].stats
    assert stats.depth_reached == 5 and stats.depth_limited and not stats.stopped_by_budget


def test_delayed_detection_in_a_batch_is_tolerated_on_6_8() -> None:
    """The batch letter that reads GLOBAL_STATUS inside the exit: under emulated-counter the
    wrap shows only at the next VM-entry (R1), reported as tolerated late-overflow."""
    read_inside = next(a for a in LETTERS if isinstance(a, Batch) and isinstance(a.items[-1], Rdmsr))
    actions = setup_prefix(CFG, (0,)) + (Wrmsr(msrs.IA32_A_PMC0, CFG.gp_mask - 1), read_inside)
    node, divs = Judge(Target(CFG, "6.8")).root(actions)
    assert divs == []
    closed = compare(CFG, node.ref_obs, node.kvm_obs)
    assert [(d.kind, d.tolerated, d.relaxation) for d in closed if d.kind == "late-overflow"] == [
        ("late-overflow", True, "R1")]


def test_r7_ignored_hardware_overflow_is_reported_on_6_8() -> None:
    """Spec §4.3 item 4: a host PMI handled after an emulated increment of the same PMC is
    ignored (the reprogram bit is set). Reported by default, tolerated with r7."""
    report = explore(Target(CFG, "6.8"), Bounds(depth=3, kinds=NO_SAVE_RESTORE), mode="exhaustive")
    lost = by_kind(report.counterexamples, "lost-overflow", "guest")
    assert any(isinstance(a, Cpuid) and a.host_pmi == "after-handler" for a in lost.suffix)
    node, _ = Judge(Target(CFG, "6.8")).root(lost.actions)
    assert any(s.source == "ignored" for o in node.kvm_obs for s in o.signals)


# --- properties --------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(LETTERS), min_size=1, max_size=8))
def test_mediated_never_diverges_untolerated(steps: list[Action]) -> None:
    """The mediated vPMU counts on the real counters and checks every emulated increment at
    once: whatever the guest does, the checker finds nothing it does not tolerate."""
    target = Target(CFG, "mediated")
    _, divs = Judge(target).root(setup_prefix(CFG, (0,)) + tuple(steps))
    assert divs == []


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(LETTERS), min_size=1, max_size=6))
def test_open_end_judging_only_defers(steps: list[Action]) -> None:
    """Open-ended judging (the explorer's) reports a subset of the final judgement."""
    target = Target(CFG, "6.8")
    node, open_divs = Judge(target).root(setup_prefix(CFG, (0,)) + tuple(steps))
    final = {(d.kind, d.visibility, d.step) for d in compare(CFG, node.ref_obs, node.kvm_obs) if not d.tolerated}
    assert {(d.kind, d.visibility, d.step) for d in open_divs} <= final


# --- shrinking, replay, determinism, parallelism ----------------------------------------------


def test_shrinking_drops_unused_counters() -> None:
    report = explore(Target(CFG, "6.6"), Bounds(gp=2, depth=2), mode="exhaustive")
    lost = by_kind(report.counterexamples, "lost-overflow", "guest")
    assert lost.counters == (0,)
    assert len(setup_prefix(CFG, lost.counters)) < len(setup_prefix(CFG, counters_in_use(CFG, Bounds(gp=2))))


def test_saved_scenario_replays_the_same_divergence() -> None:
    report = explore(Target(CFG, "6.6"), Bounds(depth=2), mode="exhaustive")
    for f in report.counterexamples:
        text = dump_scenario("x", "replay", CFG, "6.6", None, CheckerOptions(), f.actions)
        scn = parse_scenario(text)
        assert scn.actions == f.actions
        res = execute(scn)
        assert res.failed
        assert (f.kind, f.visibility) in {(d.kind, d.visibility) for d in res.divergences if not d.tolerated}


@pytest.mark.parametrize("engine", ["kernel", "object"])
def test_same_seed_same_result_and_jobs_do_not_matter(engine: str) -> None:
    target = Target(CFG, "6.6")
    one = explore(target, Bounds(depth=3), mode="auto", seed=7, restarts=300, jobs=1, engine=engine)
    again = explore(target, Bounds(depth=3), mode="auto", seed=7, restarts=300, jobs=1, engine=engine)
    two = explore(target, Bounds(depth=3), mode="auto", seed=7, restarts=300, jobs=2, engine=engine)
    other_engine = explore(target, Bounds(depth=3), mode="auto", seed=7, restarts=300, jobs=2,
                           engine="object" if engine == "kernel" else "kernel")
    for other in (again, two, other_engine):
        assert [(f.kind, f.visibility, f.actions) for f in other.counterexamples] == [
            (f.kind, f.visibility, f.actions) for f in one.counterexamples]
        assert [(s.stats.states, s.stats.transitions) for s in other.searches] == [
            (s.stats.states, s.stats.transitions) for s in one.searches]


@pytest.mark.parametrize("partitions", [1, 3])
def test_partitioned_search_equals_single_process(partitions: int) -> None:
    target, bounds = Target(CFG, "6.9"), Bounds(depth=3)
    single = bfs(InMemoryExpander(target, bounds), bounds.depth)
    parted = bfs(ReplayExpander(target, bounds, partitions, lambda units: [run_unit(u) for u in units]), bounds.depth)
    assert (parted.stats.states, parted.stats.transitions) == (single.stats.states, single.stats.transitions)
    assert [(f.kind, f.visibility, f.actions) for f in parted.findings] == [
        (f.kind, f.visibility, f.actions) for f in single.findings]


def test_time_budget_stops_cleanly() -> None:
    report = explore(Target(CFG, "6.6"), Bounds(depth=8), mode="exhaustive", time_budget=0.2)
    stats = report.searches[-1].stats
    assert stats.stopped_by_budget and not stats.exhausted


def test_report_totals_add_the_searches_up() -> None:
    report = explore(Target(CFG, "6.6"), Bounds(depth=2), mode="auto", restarts=60)
    random_part, exhaustive = (s.stats for s in report.searches)
    total = report.stats
    assert (total.states, total.transitions, total.sequences) == (
        random_part.states + exhaustive.states, random_part.transitions + exhaustive.transitions, 60)
    assert total.depth_limited and total.depth_reached == 2 and not total.stopped_by_budget
    assert total.frontier_left == exhaustive.frontier_left > 0


def test_explore_runs_on_the_cpu_narrowed_to_the_width() -> None:
    report = explore(Target(preset("intel-v2"), "mediated"), Bounds(width=5, depth=1), mode="exhaustive")
    assert (report.target.cfg.gp_width, report.target.cfg.fixed_width) == (5, 5)
    assert all(f.cfg.gp_width == 5 for s in report.searches for f in s.findings)


class UnusableBackend:
    """A backend that fails the test if any work reaches it."""

    @property
    def partitions(self) -> int:
        raise AssertionError("the backend was used before the request was checked")

    def expander(self, target: Target, bounds: Bounds) -> Any:
        raise AssertionError("unreachable")

    def random_parts(self, jobs: Sequence[Any], progress: Any = None) -> list[Any]:
        raise AssertionError("unreachable")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("bounds, mode", [(Bounds(gp=9), "auto"), (Bounds(kinds=()), "auto"),
                                          (Bounds(width=1), "random"), (Bounds(), "bogus")])
def test_bad_request_fails_before_the_backend_is_used(bounds: Bounds, mode: str) -> None:
    with pytest.raises(VpmuError):
        explore(Target(CFG, "6.6"), bounds, mode=mode, backend=UnusableBackend())


# --- the command -------------------------------------------------------------------------------


def test_cli_explore_json_saves_replayable_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "explore", "--kvm", "6.6", "--mode", "exhaustive", "--depth", "2",
                       "--jobs", "1", "--save", str(tmp_path), "--json")
    assert code == 1
    data = json.loads(out)
    for key in ("mode", "bounds", "states", "transitions", "states_per_second", "exhausted", "counterexamples"):
        assert key in data
    assert data["bounds"]["width"] == 4 and data["exhausted"] is False and data["depth_limited"] is True
    lost = next(c for c in data["counterexamples"] if (c["kind"], c["visibility"]) == ("lost-overflow", "guest"))
    assert lost["steps"][-1]["kind"] == "batch"
    code, out, _ = cli(capsys, "run", lost["scenario_file"], "--json")
    assert code == 1
    assert "lost-overflow" in {d["kind"] for d in json.loads(out)["divergences"]}


def test_cli_explore_clean_era_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "explore", "--kvm", "mediated", "--depth", "2", "--jobs", "1", "--no-save")
    assert code == 0
    assert "no untolerated divergence" in out and "4 bits wide" in out


def test_cli_explore_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("explore", "--kvm", "6.6", "--mode", "random", "--restarts", "200", "--seed", "3", "--jobs", "1",
            "--no-save", "--json")
    runs = []
    for _ in range(2):
        data = json.loads(cli(capsys, *args)[1])
        for k in ("states_per_second", "elapsed_seconds"):
            data.pop(k)
        for s in data["searches"]:
            s.pop("elapsed_seconds")
        runs.append(data)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("args", [
    ("--width", "1"), ("--counters", "9"), ("--counters", "1,1,1"), ("--kinds", "bogus"), ("--mode", "bogus"),
    ("--kvm", "5.0"), ("--cpu", "nope"), ("--address", "x:1"), ("--native", "a"), ("--jobs", "0"),
    ("--backend", "mpi"), ("--cpu", "amd-core", "--width", "8"),
])
def test_cli_explore_bad_input_exits_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, out, err = cli(capsys, "explore", "--no-save", "--depth", "1", *args)
    assert code == 2
    assert err.startswith("vpmu: error:") and err[-1] == "\n" and err.count("\n") == 1


@pytest.mark.parametrize(("args", "message"), [
    # fixed1 counts cycles: too many counters, whatever --events says (it was not given)
    (("--counters", "1,3"), "invalid bound --counters: fixed1 counts only its own event (cycles), which the "
     "explorer cannot drive; use at most 1 fixed counter (--counters 1,1)"),
    (("--counters", "0,2", "--events", "instructions"), "invalid bound --counters: fixed1"),
    # fixed0 can count instructions only: the event is what is wrong
    (("--counters", "1,1", "--events", "branches"),
     "invalid bound --events: fixed0 counts only its own event (instructions), not branches"),
])
def test_a_bad_counter_bound_blames_the_flag_at_fault(capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                                     message: str) -> None:
    code, _, err = cli(capsys, "explore", "--no-save", "--depth", "1", *args)
    assert code == 2 and message in err, err


def test_cli_explore_width_defaults_per_vendor(capsys: pytest.CaptureFixture[str]) -> None:
    """Intel counters are narrowed to 4 bits by default; AMD ones stay 48 bits (the only width
    KVM gives an AMD guest), with the near-wrap write values keeping wraps reachable."""
    for cpu, width in (("intel-v2", 4), ("amd-perfmon-v2", 48)):
        code, out, _ = cli(capsys, "explore", "--no-save", "--json", "--cpu", cpu, "--depth", "1",
                           "--mode", "exhaustive", "--kinds", "write-counter")
        doc = json.loads(out)
        assert doc["bounds"]["width"] == width and doc["cpu"]["gp_width"] == width
        assert code == (1 if doc["counterexamples"] else 0)


def test_progress_is_reported_during_both_searches() -> None:
    seen: list[tuple[int, int]] = []
    explore(Target(CFG, "6.6"), Bounds(depth=3), mode="auto", restarts=120,
            progress=lambda stats, found: seen.append((stats.states, found)))
    assert len(seen) >= 3
    assert any(found > 0 for _, found in seen)


def test_rediscovers_the_amd_lvtpc_mask_bug_and_its_fix() -> None:
    """KVM 6.6-6.8 set LVTPC.M on every PMI, AMD's APIC does not (fixed upstream in Apr 2024,
    our 6.9 era, and backported: 6.6.y): the explorer finds it on 6.8 and not on 6.9 or 6.6.y
    (docs/findings.md F6). AMD counters are 48 bits wide; the written values stay near the wrap."""
    amd = preset("amd-perfmon-v2")
    bounds = Bounds(width=48, depth=2, kinds=("write-counter",))
    found = explore(Target(amd, "6.8"), bounds, mode="exhaustive").counterexamples
    lvtpc = by_kind(found, "wrong-value", "guest")
    assert "LVTPC" in lvtpc.detail and len(lvtpc.suffix) == 1
    for era in ("6.9", "6.6.y"):
        assert not explore(Target(amd, era), bounds, mode="exhaustive").counterexamples, era


def test_r3_minimum_period_loss_is_signalled_and_tolerated_only_under_r3() -> None:
    """Counter at -1 after the WRMSR retires: perf arms 2 events for a period of 1. One native
    instruction wraps on the reference; the guest then rewrites the counter, so perf never
    reports that wrap. The model records a `min-period` signal and the checker tolerates the
    loss only under r3_min_period."""
    steps = setup_prefix(CFG, (0,)) + (Wrmsr(msrs.IA32_A_PMC0, CFG.gp_mask - 1), Native(1),
                                       Wrmsr(msrs.IA32_A_PMC0, 0))
    node, _ = Judge(Target(CFG, "6.8")).root(steps)
    assert [s.source for s in node.kvm_obs[-1].signals] == ["min-period"]
    divs = compare(CFG, node.ref_obs, node.kvm_obs)
    assert {(d.kind, d.tolerated, d.relaxation) for d in divs} >= {("lost-overflow", True, "R3")}
    strict = compare(CFG, node.ref_obs, node.kvm_obs, CheckerOptions(r3_min_period=False))
    assert ("lost-overflow", False) in {(d.kind, d.tolerated) for d in strict}


def test_saving_says_which_files_it_replaced_and_which_it_left(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    """Names are stable, so a second run overwrites the first one's files (and says so, per
    file); files it does not write stay, counted in one note."""
    args = ("explore", "--kvm", "6.6", "--depth", "2", "--restarts", "20", "--save", str(tmp_path))
    code, first, _ = cli(capsys, *args)
    replays = [line for line in first.splitlines() if "replay:" in line]
    assert code == 1 and replays and not any("replaced" in line for line in replays)
    (tmp_path / "explore-6.6-older-guest.yaml").write_text("name: older\n")
    code, second, _ = cli(capsys, *args)
    again = [line for line in second.splitlines() if "replay:" in line]
    assert len(again) == len(replays) and all(line.endswith("(replaced an existing file of that name)")
                                              for line in again)
    assert f"{tmp_path} also holds 1 explore-*.yaml file this run did not write" in second
    assert (tmp_path / "explore-6.6-older-guest.yaml").read_text() == "name: older\n"
