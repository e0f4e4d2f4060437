"""`kernel:PATH` designs: a tree's C behind the design seam behaves exactly like its Python twin.

The trees are vpmu's own C shaped like the kernel's functions (tests/kernel_trees/README.md).
Tests that compile need a C compiler and are skipped, with the reason, without one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helper import cli
from vpmu.actions import Action, Cpuid, Wrmsr
from vpmu.config import preset
from vpmu.designs import resolve_design
from vpmu.errors import VpmuError
from vpmu.explore import ACTION_KINDS, Bounds, Target, alphabet, counters_in_use, explore, setup_prefix
from vpmu.kernel_design import KernelDesign, build, load_kernel_design, tree_sources
from vpmu.kernel_source import Source, build_unit, find_function, mask_c
from vpmu.pmc_map import counter_msr
from vpmu.run import start_machines
from vpmu.world import World

ROOT = Path(__file__).resolve().parents[1]
TREES = ROOT / "tests" / "kernel_trees"
PREV, EMULATED = TREES / "prev-counter", TREES / "emulated-counter"
SNAPSHOT_BEFORE_PERF = f"{ROOT / 'examples' / 'my_design.py'}:SnapshotBeforePerf"
HAVE_CC = bool(os.environ.get("CC") or any(shutil.which(c) for c in ("cc", "gcc", "clang")))
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang or $CC) on this machine")
CFG = preset("intel-v2").with_width(4)


@pytest.fixture(autouse=True, scope="module")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compile into a throw-away cache, never the user's."""
    old = os.environ.get("VPMU_CACHE_DIR")
    os.environ["VPMU_CACHE_DIR"] = str(tmp_path_factory.mktemp("vpmu-cache"))
    yield
    if old is None:
        del os.environ["VPMU_CACHE_DIR"]
    else:
        os.environ["VPMU_CACHE_DIR"] = old


def _edited(tmp_path: Path, tree: Path, old: str, new: str, file: str = "pmu.c") -> Path:
    """A copy of `tree` with one edit to its pmu.c (or pmu.h)."""
    out = tmp_path / tree.name
    shutil.copytree(tree, out)
    path = out / "arch" / "x86" / "kvm" / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return out


def _snapshot_before_perf(tmp_path: Path) -> Path:
    """The emulated-counter tree with v1's bug: pmc_pause_counter snapshots before the perf count."""
    return _edited(tmp_path, EMULATED, "\tu64 snapshot;\n\n\tif (pmc->perf_event && !pmc->is_paused)\n"
                   "\t\tvalue += perf_event_pause(pmc->perf_event, true);\n\tsnapshot = value & pmc_bitmask(pmc);\n",
                   "\tu64 snapshot = value & pmc_bitmask(pmc);\n\n\tif (pmc->perf_event && !pmc->is_paused)\n"
                   "\t\tvalue += perf_event_pause(pmc->perf_event, true);\n")


# --- extraction (pure, no compiler) ----------------------------------------------------------------


def test_masking_blanks_comments_and_literals_only() -> None:
    text = 'a /* { */ b // }\nc "x{y" \'}\' d'
    masked = mask_c(text)
    assert len(masked) == len(text) and masked.count("\n") == 1
    assert "{" not in masked and "}" not in masked
    assert masked.split() == ["a", "b", "c", '"', '"', "'", "'", "d"]


def test_find_function_skips_prototypes_calls_and_braces_in_comments() -> None:
    src = Source("pmu.h", "void f(int x);\n/* f() { */\nstatic int\nf(int x)\n"
                          "{\n\tif (x) { g(f(x)); }\n\treturn 1;\n}\n")
    fn = find_function(src, "f")
    assert fn is not None
    assert fn.line == 3 and fn.text.startswith("static int\nf(int x)") and fn.text.endswith("}")
    assert find_function(src, "g") is None


def test_units_of_both_eras() -> None:
    prev = build_unit(*tree_sources(PREV))
    emulated = build_unit(*tree_sources(EMULATED))
    # v6.6 layout: write in pmu.h (callers re-arm perf), a reprogram_complete tail.
    assert (prev.writes_sample_period, prev.has_reprogram_complete) == (False, True)
    assert "return (pmc->counter < pmc->prev_counter);" in prev.c_source
    assert "pmc->prev_counter = 0;" in prev.c_source
    # v6.8 layout: write in pmu.c re-arms perf itself; the pause's flag is the test.
    assert (emulated.writes_sample_period, emulated.has_reprogram_complete) == (True, False)
    assert "wrapped = pmc_pause_counter(pmc);" in emulated.c_source and "return (wrapped);" in emulated.c_source
    # only the seam is taken from the tree
    assert "get_sample_period" not in emulated.c_source and "vpmu_banner" not in prev.c_source


def test_trees_the_seam_cannot_read_are_one_line_errors(tmp_path: Path) -> None:
    no_write = _edited(tmp_path, PREV, "static inline void pmc_write_counter", "static inline void old_write",
                       file="pmu.h")
    with pytest.raises(VpmuError, match=r"no definition of pmc_write_counter\(\).*v6\.6"):
        load_kernel_design(str(no_write))
    (tmp_path / "b").mkdir()
    no_test = _edited(tmp_path / "b", EMULATED, "\tif (wrapped)\n\t\t__kvm_perf_overflow(pmc, false);\n", "")
    with pytest.raises(VpmuError, match="emulated-overflow test"):
        load_kernel_design(str(no_test))
    with pytest.raises(VpmuError, match="no arch/x86/kvm/pmu.c"):
        resolve_design(f"kernel:{tmp_path / 'nowhere'}", "prev-counter")


# --- the compiled design equals its Python twin ------------------------------------------------------


TWINS = [(PREV, "6.6", "prev-counter"), (EMULATED, "6.8", "emulated-counter"), (EMULATED, "6.9", "emulated-counter")]


def _report(design: str, era: str, bounds: Bounds, mode: str) -> tuple[object, ...]:
    rep = explore(Target(CFG, era, design), bounds, mode=mode, seed=3, restarts=60)
    return (tuple((s.stats.states, s.stats.transitions, s.stats.depth_reached) for s in rep.searches),
            tuple((f.kind, f.visibility, f.step, f.actions) for f in rep.counterexamples))


@needs_cc
@pytest.mark.parametrize(("tree", "era", "twin"), TWINS)
def test_kernel_design_explores_like_its_twin(tree: Path, era: str, twin: str) -> None:
    for bounds, mode in ((Bounds(depth=3), "exhaustive"), (Bounds(depth=2, gp=1, fixed=1), "exhaustive"),
                         (Bounds(depth=6, kinds=ACTION_KINDS), "random")):
        ours, theirs = _report(f"kernel:{tree}", era, bounds, mode), _report(twin, era, bounds, mode)
        assert ours == theirs
        assert ours[0][0][0] > 10  # a real search, not an empty one


def _sequences(bounds: Bounds) -> st.SearchStrategy[list[Action]]:
    letters = [a for _, a in alphabet(CFG, bounds)]
    return st.lists(st.sampled_from(letters), min_size=1, max_size=12)


PROPERTY_BOUNDS = Bounds(gp=2, fixed=1, kinds=ACTION_KINDS)


@needs_cc
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(TWINS), steps=_sequences(PROPERTY_BOUNDS))
def test_every_step_matches_the_twin(case: tuple[Path, str, str], steps: list[Action]) -> None:
    """Same observation (counters, status, PMIs, signals, log) and same state after each step."""
    tree, era, twin = case
    ours, theirs = World(CFG, era, f"kernel:{tree}"), World(CFG, era, twin)
    for action in (*setup_prefix(CFG, counters_in_use(CFG, PROPERTY_BOUNDS)), *steps):
        assert ours.step(action) == theirs.step(action)
        assert ours.state_key() == theirs.state_key()


@needs_cc
def test_a_buggy_pause_is_a_regression_and_matches_its_twin(tmp_path: Path) -> None:
    buggy = f"kernel:{_snapshot_before_perf(tmp_path)}"
    bounds = Bounds(depth=4)
    bad, good = _report(buggy, "6.8", bounds, "exhaustive"), _report(f"kernel:{EMULATED}", "6.8", bounds, "exhaustive")
    assert bad == _report(SNAPSHOT_BEFORE_PERF, "6.8", bounds, "exhaustive")
    new_kinds = {(k, v) for k, v, *_ in bad[1]} - {(k, v) for k, v, *_ in good[1]}
    assert {("spurious-overflow", "guest"), ("extra-pmi", "guest")} <= new_kinds


@needs_cc
@pytest.mark.parametrize(("tree", "rearms_itself"), [(EMULATED, True), (PREV, False)])
def test_the_sample_period_is_applied_once_per_write(tree: Path, rearms_itself: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """v6.8+ pmc_write_counter re-arms perf itself; the seam must not re-arm it again."""
    _, world = start_machines(CFG, "6.8", f"kernel:{tree}")
    for action in setup_prefix(CFG, (0,)):
        world.step(action)
    assert world.design.writes_sample_period is rearms_itself
    calls: list[int] = []
    real = world.kvm.pmc_update_sample_period
    monkeypatch.setattr(world.kvm, "pmc_update_sample_period", lambda pmc: (calls.append(pmc.idx), real(pmc)))
    world.step(Wrmsr(counter_msr(CFG, 0), 5))
    assert calls == [0]


# --- what the shim does not model is reported, never guessed -------------------------------------------


@needs_cc
def test_missing_symbols_are_one_error_naming_function_and_symbol(tmp_path: Path) -> None:
    tree = _edited(tmp_path, EMULATED, "\tpmc->is_paused = true;\n\treturn",
                   "\tpmc->is_paused = true;\n\ttrace_pmc_paused(pmc, pmc->pebs);\n\treturn")
    with pytest.raises(VpmuError) as info:
        load_kernel_design(str(tree))
    msg = str(info.value)
    assert "\n" not in msg
    assert "pmc_pause_counter() (pmu.c:" in msg
    assert "calls trace_pmc_paused()" in msg and "uses struct kvm_pmc field pebs" in msg


@needs_cc
@pytest.mark.parametrize(("old", "new", "error"), [
    ("\tpmc->emulated_counter++;", "\tpmc->emulated_counter++;\n\tpmc->eventsel = 0;",
     r"kvm_pmu_incr_counter\(\) changed eventsel; a counter-tracking design may change only"),
    ("\tpmc->emulated_counter++;", "\tperf_event_pause(pmc->perf_event, true);",
     r"kvm_pmu_incr_counter\(\) called perf_event_pause\(NULL\)"),
    ("\tu64 snapshot;\n", "\tu64 snapshot;\n\n\tif (pmc->perf_event)\n\t\tperf_event_pause(pmc->perf_event, false);\n",
     r"pmc_pause_counter\(\) called perf_event_pause\(reset=false\)"),
])
def test_changes_outside_the_seam_are_errors(tmp_path: Path, old: str, new: str, error: str) -> None:
    world = World(CFG, "6.8", f"kernel:{_edited(tmp_path, EMULATED, old, new)}")
    with pytest.raises(VpmuError, match=error):
        for action in (*setup_prefix(CFG, (0,)), Cpuid()):
            world.step(action)


@needs_cc
def test_a_read_with_side_effects_is_an_error(tmp_path: Path) -> None:
    tree = _edited(tmp_path, EMULATED, "\treturn value & pmc_bitmask(pmc);",
                   "\tpmc->emulated_counter = 0;\n\treturn value & pmc_bitmask(pmc);", file="pmu.h")
    world = World(CFG, "6.8", f"kernel:{tree}")
    pmc = world.kvm.pmu.gp_counters[0]
    pmc.emulated_counter = 2
    with pytest.raises(VpmuError, match=r"pmc_read_counter\(\) changed emulated_counter.*free of side effects"):
        world.kvm.pmc_read_counter(pmc)


# --- building and caching ----------------------------------------------------------------------------


@needs_cc
def test_objects_are_cached_by_source_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = build_unit(*tree_sources(EMULATED))
    first = build(unit, "t")
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("recompiled an unchanged unit"))
    assert build(unit, "t") == first
    monkeypatch.undo()
    edited = build_unit(*tree_sources(_snapshot_before_perf(tmp_path)))
    assert build(edited, "t") != first
    design = load_kernel_design(str(EMULATED))
    assert isinstance(design, KernelDesign) and load_kernel_design(str(EMULATED)) is design


# --- front ends ---------------------------------------------------------------------------------------


@needs_cc
def test_cli_explore_and_run_accept_kernel_designs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "explore", "--kvm", "6.6", "--design", f"kernel:{PREV}", "--mode", "exhaustive",
                       "--depth", "3", "--no-save", "--jobs", "1", "--json")
    assert code == 1 and f'"design": "kernel:{PREV}"' in out
    code, out, _ = cli(capsys, "run", "seed-lost-overflow", "--kvm", "6.8", "--design", f"kernel:{EMULATED}")
    assert code == 0
    code, _, err = cli(capsys, "run", "seed-lost-overflow", "--design", "kernel:/no/such/tree")
    assert code == 2 and "no arch/x86/kvm/pmu.c" in err
    code, out, _ = cli(capsys, "designs")
    assert "kernel:PATH" in out


def test_scenario_kernel_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    from vpmu.scenario import load_scenario

    scn = tmp_path / "s.yaml"
    scn.write_text("name: s\ncpu: intel-v2\nkvm: '6.8'\ndesign: kernel:trees/x\nsteps:\n  - cpuid\n")
    assert load_scenario(str(scn)).design == f"kernel:{tmp_path / 'trees' / 'x'}"
