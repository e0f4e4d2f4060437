"""The explorer's honest account (issue: honest search): what bounds it searched, how the
search ended, counted events, assumptions, and one counterexample per cause. The issue's
done-when commands run once each (module fixtures) and every assertion reads their output."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from cli_helper import cli
from vpmu import msrs
from vpmu.actions import Cpuid, Emulate, Insn, Native, PerfFail, SaveRestore, SetFilter, Wrmsr
from vpmu.cli import main
from vpmu.config import preset
from vpmu.errors import VpmuError
from vpmu.events import ENCODINGS
from vpmu.explore import (
    ACTION_KINDS,
    Bounds,
    Candidates,
    Finding,
    Judge,
    Target,
    alphabet,
    explore,
    kind_of,
    select_causes,
    setup_prefix,
    signature,
)
from vpmu.explore import causes as causes_mod
from vpmu.explore.trail import save_counterexamples
from vpmu.run import execute
from vpmu.scenario import load_scenario

CFG = preset("intel-v2").with_width(4)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = cli(capsys, "explore", "--kvm", "6.8", "--mode", "exhaustive", "--jobs", "1", "--json", *args)
    assert code in (0, 1), err
    data: dict[str, Any] = json.loads(out)
    return data


def guest_losses(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in data["counterexamples"] if (c["kind"], c["visibility"]) == ("lost-overflow", "guest")]


# --- the done-when commands ------------------------------------------------------------------


def explore_json(*args: str) -> dict[str, Any]:
    """`vpmu explore --kvm 6.8 --mode exhaustive --jobs 1 --json ARGS` in-process (for module
    fixtures, which cannot use capsys)."""
    buf = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stdout(buf):
        main(["explore", "--kvm", "6.8", "--mode", "exhaustive", "--jobs", "1", "--json", *args])
    data: dict[str, Any] = json.loads(buf.getvalue())
    return data


@pytest.fixture(scope="module")
def default_68() -> tuple[dict[str, Any], dict[str, Any]]:
    """The default bounds with every cause listed, and the same with `--assume none`."""
    every = ("--no-save", "--max-counterexamples", "100")
    return explore_json(*every), explore_json(*every, "--assume", "none")


def test_every_guest_lost_overflow_names_its_assumption(default_68: tuple[dict[str, Any], ...]) -> None:
    """Every guest-visible lost overflow on 6.8 rests on pmi-after-handler (F3) or on userspace
    rewriting a running counter (F4 through save/restore: live-save-restore)."""
    full, _ = default_68
    losses = guest_losses(full)
    assert any("pmi-after-handler" in c["assumptions"] for c in losses)
    for c in losses:
        through_f4 = any(s["kind"] == "save_restore" for s in c["steps"])
        assert "pmi-after-handler" in c["assumptions"] or (through_f4 and "live-save-restore" in c["assumptions"])


def test_with_no_assumption_no_overflow_is_lost(default_68: tuple[dict[str, Any], ...]) -> None:
    _, none = default_68
    assert none["bounds"]["assume"] == []
    assert all(c["assumptions"] == [] for c in none["counterexamples"])
    assert guest_losses(none) == []
    kinds = set(none["bounds"]["kinds"])
    assert "native-held" in kinds  # asked for, but no letter of it is allowed
    assert not any(s.get("hold_pmi") for c in none["counterexamples"] for s in c["steps"])


def test_default_output_has_every_bound_and_the_new_keys(default_68: tuple[dict[str, Any], ...]) -> None:
    full, _ = default_68
    assert full["bounds"] == {"width": 4, "gp": 1, "fixed": 0, "depth": 5, "batch": 3, "native": [1, 2, 3],
                              "values": [-1, -2, -3, 0], "kinds": list(Bounds().kinds), "events": ["instructions"],
                              "skid": 1, "assume": list(Bounds().assume)}
    assert full["options"]["r7_ignored_overflow"] is False
    assert full["exhausted"] is False and full["depth_limited"] is True and full["frontier_left"] > 0
    assert full["causes_found"] == len(full["counterexamples"])
    sigs = [c["signature"] for c in full["counterexamples"]]
    assert len(set(sigs)) == len(sigs)
    # two causes of one kind are both reported: F3 (held PMI after the handler) and F4
    assert len({c["signature"] for c in guest_losses(full)}) >= 2


def test_depth_2_is_depth_limited(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--depth", "2", "--no-save")
    assert data["exhausted"] is False and data["depth_limited"] is True
    assert data["frontier_left"] == data["searches"][0]["frontier_left"] > 0
    _, out, _ = cli(capsys, "explore", "--kvm", "6.8", "--mode", "exhaustive", "--jobs", "1", "--depth", "2",
                    "--no-save")
    assert f"depth-limited at 2, {data['frontier_left']:,} frontier states unexplored" in out
    assert "events instructions; skid 1;" in out
    assert "assume pmi-skid,pmi-after-handler,perf-create-fails,live-save-restore" in out


def test_the_late_pmi_space_of_one_counter_reaches_a_fixpoint(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--native", "1", "--values=-2,-3", "--depth", "64", "--kinds",
                    "native,native-held,host-pmi,cpuid,emulate,batch,write-counter", "--no-save")
    assert data["exhausted"] is True and data["depth_limited"] is False and data["frontier_left"] == 0
    assert data["depth_reached"] < 64
    _, out, _ = cli(capsys, "explore", "--kvm", "6.8", "--mode", "exhaustive", "--jobs", "1", "--native", "1",
                    "--values=-2,-3", "--depth", "64", "--kinds",
                    "native,native-held,host-pmi,cpuid,emulate,batch,write-counter", "--no-save",
                    "--max-counterexamples", "1")
    assert f"exhausted: no new state at depth {data['depth_reached']}" in out
    assert f"showing 1 of {data['causes_found']}" in out


@pytest.fixture(scope="module")
def f4_guest(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    save = tmp_path_factory.mktemp("f4")
    data = explore_json("--events", "branches", "--kinds", "native,emulate,batch,write-counter,read,clear-status",
                        "--save", str(save))
    return data, save


def test_f4_through_a_guest_wrmsr_with_branches(f4_guest: tuple[dict[str, Any], Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Counting branches, a guest WRMSR of 0 to the running counter arms perf from the base
    (75189d1de1b3): KVM reports an overflow the reference never has (docs/findings.md F4)."""
    data, _ = f4_guest
    assert data["bounds"]["events"] == ["branches"]
    spurious = next(c for c in data["counterexamples"]
                    if (c["kind"], c["visibility"]) == ("spurious-overflow", "guest"))
    explored = spurious["steps"][spurious["setup_steps"]:]
    assert [s["kind"] for s in explored] == ["native", "wrmsr", "native"]
    assert explored[0]["branches"] > 0 and explored[1]["value"] == 0 and spurious["assumptions"] == []
    code, out, _ = cli(capsys, "run", spurious["scenario_file"], "--json")
    replay = json.loads(out)
    assert code == 1 and replay["assumptions"] == []
    assert ("spurious-overflow", "guest", False) in {(d["kind"], d["visibility"], d["tolerated"])
                                                     for d in replay["divergences"]}


def test_saved_files_are_one_per_cause_and_replay(f4_guest: tuple[dict[str, Any], Path]) -> None:
    data, save = f4_guest
    files = [c["scenario_file"] for c in data["counterexamples"]]
    assert len(set(files)) == len(files) == len(list(save.iterdir()))
    seen: set[tuple[str, str]] = set()
    for c in data["counterexamples"]:
        stem = f"explore-6.8-{c['kind']}-{c['visibility']}"
        name = Path(c["scenario_file"]).stem
        assert name == stem if (c["kind"], c["visibility"]) not in seen else name.startswith(stem + "-")
        seen.add((c["kind"], c["visibility"]))
        res = execute(load_scenario(c["scenario_file"]))
        assert (c["kind"], c["visibility"]) in {(d.kind, d.visibility) for d in res.divergences if not d.tolerated}


# --- the alphabet, counted events and bounds --------------------------------------------------


def test_counted_events_bring_the_letters_that_move_them() -> None:
    plain = [a for _, a in alphabet(CFG, Bounds())]
    assert not any(isinstance(a, Native) and (a.branches or a.cpl) for a in plain)
    usr_branches = alphabet(CFG, Bounds(events=("branches:usr",)))
    runs = {(a.count, a.branches, a.cpl, a.hold_pmi) for _, a in usr_branches if isinstance(a, Native)}
    assert {(2, 2, 0, False), (2, 0, 3, False), (3, 3, 3, True)} <= runs
    assert Emulate((Insn(branch=True),)) in [a for _, a in usr_branches]
    deny = next(a for _, a in usr_branches if isinstance(a, SetFilter))
    assert deny.events == (ENCODINGS["intel"]["branches"],)
    toggles = [a for k, a in usr_branches if k == "toggle"]
    assert [t.value for t in toggles if isinstance(t, Wrmsr)] == [0x1000C4 | 1 << 16, 0x5100C4]


def test_set_up_programs_each_counter_for_its_event() -> None:
    cfg = preset("intel-v2").with_width(4)
    events = Bounds(gp=1, fixed=1, events=("branches:usr", "instructions:os")).event_map(cfg)
    written = {a.msr: a.value for a in setup_prefix(cfg, (0, 32), events) if isinstance(a, Wrmsr)}
    assert written[msrs.IA32_PERFEVTSEL0] == 0x5100C4  # EN | INT | USR, branches
    assert written[msrs.IA32_FIXED_CTR_CTRL] == 0x9     # PMI | OS


@pytest.mark.parametrize("bounds, why", [
    (Bounds(events=("cycles",)), "cycles"),
    (Bounds(events=("instructions", "branches")), "one per counter"),
    (Bounds(fixed=1, events=("branches",)), "fixed0 counts only"),
    (Bounds(fixed=2), "fixed1 counts only"),
    (Bounds(skid=-1), "skid"),
    (Bounds(assume=("maybe",)), "unknown assumption"),
    (Bounds(kinds=("native-held",), assume=("perf-create-fails",)), "allowed by --assume"),
])
def test_bounds_that_cannot_be_searched_are_refused(bounds: Bounds, why: str) -> None:
    with pytest.raises(VpmuError, match=why):
        bounds.fit(preset("intel-v2"))


@pytest.mark.parametrize("args", [("--events", "branches:kernel"), ("--skid", "-1"), ("--assume", "skid"),
                                  ("--max-counterexamples", "0")])
def test_cli_refuses_bad_new_bounds(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, _, err = cli(capsys, "explore", "--no-save", "--depth", "1", *args)
    assert code == 2 and err.startswith("vpmu: error:") and err.count("\n") == 1


def test_assumptions_leave_the_alphabet() -> None:
    full = alphabet(CFG, Bounds(kinds=tuple(ACTION_KINDS)))
    none = alphabet(CFG, Bounds(kinds=tuple(ACTION_KINDS), assume=()))
    gone = [a for k, a in full if (k, a) not in none]
    assert all(isinstance(a, Native) and a.hold_pmi or a in (Cpuid(host_pmi="after-handler"), PerfFail(True),
                                                             SaveRestore()) for a in gone) and PerfFail(True) in gone


def test_every_letter_is_classified_as_its_kind() -> None:
    bounds = Bounds(gp=2, kinds=tuple(ACTION_KINDS), events=("branches:os",))
    for kind, letter in alphabet(CFG, bounds):
        assert kind_of(CFG, letter) == kind


# --- candidates and causes -------------------------------------------------------------------


def finding(kind: str, suffix: tuple[Any, ...], counter: str = "gp0") -> Finding:
    return Finding(CFG, kind, "guest", (0,), suffix, 4, "", counter)


def test_candidates_keep_the_first_few_per_coarse_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(causes_mod, "KEYS_PER_KIND", 2)
    a, b, c = (Native(1),), (Native(2), Cpuid()), (SaveRestore(),)
    found = [finding("lost-overflow", s) for s in (a, a, a, b, c)] + [finding("missing-pmi", a)]
    kept = Candidates(found)
    assert [f.suffix for f in kept.findings()] == [a, a, b, a]  # 2 per key, 2 keys per kind
    assert kept.kinds == 2
    merged = Candidates()
    for part in (found[:2], found[2:]):
        for f in Candidates(part).findings():
            merged.add(f)
    assert merged.findings() == kept.findings()


def test_causes_are_shrunk_deduplicated_and_capped() -> None:
    """Two paths to the seed bug shrink to one cause; the cap keeps each kind's shortest
    cause before any second one."""
    target = Target(CFG, "6.6")
    report = explore(target, Bounds(depth=3), mode="exhaustive", max_counterexamples=100)
    many = report.counterexamples
    assert report.causes_found == len(many) and len({signature(f) for f in many}) == len(many)
    kinds = sorted({(f.kind, f.visibility) for f in many})
    capped, total = select_causes(report.target, [f for s in report.searches for f in s.findings], len(kinds))
    assert total == report.causes_found and sorted((f.kind, f.visibility) for f in capped) == kinds


def test_a_shrunk_trace_ends_at_its_divergence() -> None:
    report = explore(Target(CFG, "6.8"), Bounds(depth=3), mode="exhaustive", max_counterexamples=100)
    judge = Judge(report.target)
    for f in report.counterexamples:
        _, before = judge.root(setup_prefix(CFG, f.counters, f.events) + f.suffix[:-1])
        assert (f.kind, f.visibility) not in {(d.kind, d.visibility) for d in before}


def test_save_names_first_cause_of_a_kind_plainly(tmp_path: Path) -> None:
    report = explore(Target(CFG, "6.8"), Bounds(depth=3), mode="exhaustive", max_counterexamples=100)
    paths = [Path(p) for p in save_counterexamples(report, str(tmp_path)) if p]
    assert len(set(paths)) == len(report.counterexamples)
    text = paths[0].read_text()
    assert "assumes:" in text and "options" not in text  # default skid is not written


def test_saved_names_carry_a_design_other_than_the_eras_own(tmp_path: Path) -> None:
    """Two designs' searches saved into one directory do not overwrite each other."""
    own = explore(Target(CFG, "6.6"), Bounds(depth=2), mode="exhaustive")
    other = explore(Target(CFG, "6.6", "emulated-counter"), Bounds(depth=3), mode="exhaustive")
    names = {Path(p).name for p in save_counterexamples(own, str(tmp_path)) if p}
    assert names and all(n.startswith("explore-6.6-") and "emulated-counter" not in n for n in names)
    more = {Path(p).name for p in save_counterexamples(other, str(tmp_path)) if p}
    assert more and all(n.startswith("explore-6.6-emulated-counter-") for n in more)
    assert len(list(tmp_path.iterdir())) == len(names) + len(more)
