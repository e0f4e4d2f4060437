"""The compact kernel against its oracle, the object models (issue 14): the same states,
transitions and findings; every step equal to the objects' step; the monitor equal to
`compare(..., open_end=True)`; and a one-line note wherever the kernel does not cover."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helper import cli
from vpmu.checker import compare
from vpmu.config import preset
from vpmu.designs import (
    DESIGNS,
    EmulatedCounterDesign,
    EmulatedCounterFast,
    PrevCounterFast,
    fast_form,
    resolve_design,
)
from vpmu.eras import ERAS
from vpmu.explore import Bounds, InMemoryExpander, SearchResult, Target, alphabet, bfs, explore
from vpmu.explore.compact import Plan, compiled_search, kernel_bfs, plan
from vpmu.explore.compact.compiled import compiled_bfs
from vpmu.explore.compact.layout import GLOBALS, R_MASKED, STRIDE
from vpmu.explore.compact.monitor import Monitor
from vpmu.kvm import KvmPmc
from vpmu.tolerances import CheckerOptions

ROOT = Path(__file__).resolve().parents[1]
ERAS_WITH_FAST_DEFAULT = [e for e in ERAS if e != "mediated"]


@pytest.fixture(autouse=True)
def _monitor_rules_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every monitor of these tests also asks the checker where one of its rules decided a
    step, and fails on any difference (`Monitor.verify`)."""
    init = Monitor.__post_init__

    def post_init(self: Monitor) -> None:
        init(self)
        self.verify = True

    monkeypatch.setattr(Monitor, "__post_init__", post_init)


def _target(era: str, design: str | None = None, cpu: str = "intel-v2",
            bounds: Bounds | None = None) -> tuple[Target, Bounds]:
    b = bounds or Bounds(depth=3)
    cfg = b.fit(preset(cpu))
    t = Target(cfg, era, design)
    return replace(t, world=replace(t.world, skid=b.skid)), b


def _findings(r: SearchResult) -> list[tuple[object, ...]]:
    return [(f.kind, f.visibility, f.counter, f.step, f.detail, f.suffix) for f in r.findings]


def _ending(r: SearchResult) -> tuple[object, ...]:
    st = r.stats
    return st.states, st.transitions, st.exhausted, st.depth_limited, st.frontier_left, st.depth_reached


def _agree(target: Target, bounds: Bounds) -> None:
    """The object engine, the kernel in Python and the compiled kernel give the same states,
    transitions, ending and findings."""
    p = plan(target, bounds)
    assert isinstance(p, Plan), p
    k = kernel_bfs(p, bounds.depth)
    o = bfs(InMemoryExpander(target, bounds), bounds.depth)
    assert _ending(k) == _ending(o)
    assert {(f.kind, f.visibility) for f in k.findings} == {(f.kind, f.visibility) for f in o.findings}
    assert _findings(k) == _findings(o)
    p = plan(target, bounds)
    assert isinstance(p, Plan)
    cs = compiled_search(p)
    assert not isinstance(cs, str), cs
    c = compiled_bfs(p, bounds.depth, cs)
    assert _ending(c) == _ending(o)
    assert _findings(c) == _findings(o)


@pytest.mark.parametrize("era", ERAS_WITH_FAST_DEFAULT)
def test_engines_agree_at_depth_3_on_default_bounds(era: str) -> None:
    """The issue's done-when: states, transitions and divergence kinds (and every finding)."""
    _agree(*_target(era))


@pytest.mark.parametrize("design", ["emulated-counter", "prev-counter"])
@pytest.mark.parametrize("era", ["6.1", "6.6", "6.8", "6.9"])
def test_engines_agree_for_each_builtin_design(era: str, design: str) -> None:
    _agree(*_target(era, design, bounds=Bounds(depth=2)))


@pytest.mark.parametrize("cpu", ["intel-v4", "intel-v5"])
def test_engines_agree_on_other_intel_presets(cpu: str) -> None:
    _agree(*_target("6.8", cpu=cpu, bounds=Bounds(depth=2)))


@pytest.mark.parametrize("bounds", [Bounds(gp=2, depth=2), Bounds(gp=1, fixed=1, depth=2),
                                    Bounds(gp=0, fixed=1, depth=3), Bounds(depth=4, skid=0),
                                    Bounds(depth=4, skid=2, kinds=("native-held", "host-pmi", "cpuid", "batch"))])
def test_engines_agree_with_more_counters_and_other_skids(bounds: Bounds) -> None:
    _agree(*_target("6.6", bounds=bounds))


def test_engines_agree_on_an_exhausted_seed_question() -> None:
    """The SPIN anchor's bounds at 4 bits: exhausted, and the same fixpoint."""
    b = Bounds(values=(-2, -3), kinds=("native", "emulate", "batch", "write-counter"), depth=64, native=(1,))
    target, _ = _target("6.8", bounds=b)
    p = plan(target, b)
    assert isinstance(p, Plan)
    k = kernel_bfs(p, b.depth)
    assert k.stats.exhausted and k.stats.states == 378 and not k.findings
    _agree(target, b)


def test_a_user_design_with_a_fast_form_runs_on_the_kernel_and_agrees() -> None:
    ref = f"{ROOT / 'examples' / 'my_design.py'}:SnapshotBeforePerf"
    _agree(*_target("6.8", ref, bounds=Bounds(depth=3)))


@pytest.mark.parametrize(("cpu", "design", "bounds", "why"), [
    ("amd-perfmon-v2", None, Bounds(width=48, depth=2), "Intel PMUs"),
    ("intel-v1", None, Bounds(depth=2), "global MSRs"),
    ("intel-v2", None, Bounds(events=("instructions:usr",), depth=2), "instructions at every CPL"),
    ("intel-v2", None, Bounds(events=("branches",), depth=2), "instructions at every CPL"),
    ("intel-v2", None, Bounds(kinds=("native", "perf-fail"), depth=2), "perf-fail"),
    ("intel-v2", "mediated", Bounds(depth=2), "no fast form"),
    ("intel-v2", "tests/designs/patches.py:ForgetClearEmulated", Bounds(depth=2), "overrides pause_counter"),
])
def test_what_the_kernel_does_not_cover_gets_a_one_line_reason(cpu: str, design: str | None, bounds: Bounds,
                                                              why: str) -> None:
    if design and design.startswith("tests/"):
        design = str(ROOT / design)
    target, b = _target("6.8", design, cpu, bounds)
    note = plan(target, b)
    assert isinstance(note, str) and why in note and "\n" not in note
    report = explore(target, b, mode="exhaustive", jobs=1)
    assert report.engine == "object" and report.engine_note == note


def test_a_fast_form_speaks_only_for_the_class_that_declares_it() -> None:
    class Overrides(EmulatedCounterDesign):
        name = "overrides"

        def read_counter(self, kvm: object, pmc: KvmPmc) -> int:  # type: ignore[override]
            return 0

    assert isinstance(fast_form(resolve_design("emulated-counter", "6.8")), EmulatedCounterFast)
    assert isinstance(fast_form(resolve_design("prev-counter", "6.8")), PrevCounterFast)
    assert fast_form(Overrides()) == ("design 'overrides' overrides read_counter of EmulatedCounterDesign "
                                      "without its own fast form")
    assert set(DESIGNS) - {"mediated"} == {n for n, cls in DESIGNS.items() if not isinstance(fast_form(cls()), str)}


# --- every step: the kernel's state and observation equal the objects' ----------------------


def _obs_of(ref_obs: object, kvm_obs: object, insn_before: int) -> tuple[object, ...]:
    """The objects' observation of one step in the kernel's compact form."""
    r, k = ref_obs, kvm_obs
    return (r.insn - insn_before,  # type: ignore[attr-defined]
            tuple((x.value, x.fault) for x in r.results), tuple((x.value, x.fault) for x in k.results),  # type: ignore[attr-defined]
            tuple(p - insn_before for p in r.pmis), tuple(p - insn_before for p in k.pmis),  # type: ignore[attr-defined]
            tuple((s.pmc, s.insn - insn_before, s.source) for s in r.signals),  # type: ignore[attr-defined]
            tuple((s.pmc, s.insn - insn_before, s.source) for s in k.signals))  # type: ignore[attr-defined]


SPACES = [(era, design, gp) for era in ERAS_WITH_FAST_DEFAULT for design in ("emulated-counter", "prev-counter")
          for gp in (1, 2, -1)]  # -1: one GP and one fixed counter


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=st.sampled_from(SPACES), data=st.data())
def test_each_step_and_verdict_equals_the_object_models_and_the_checker(space: tuple[str, str, int],
                                                                        data: st.DataObject) -> None:
    """Random paths of the default alphabet: after every step the kernel's state is the
    encoded object state, its observation the objects' observation, and the monitor's verdict
    `compare(..., open_end=True)`'s untolerated divergences, until the first one."""
    era, design, gp = space
    target, b = _target(era, design, bounds=Bounds(gp=1, fixed=1, depth=8) if gp < 0 else Bounds(gp=gp, depth=8))
    p = plan(target, b)
    assert isinstance(p, Plan)
    letters = alphabet(target.cfg, b)
    # swarm: a few letters per path, so that rare interleavings (a period of 1 elapsing
    # silently, a held PMI meeting a filter) come up often
    few = data.draw(st.lists(st.integers(0, len(letters) - 1), min_size=1, max_size=4, unique=True))
    path = data.draw(st.lists(st.sampled_from(few), min_size=1, max_size=8))
    ref, world = target.machines()
    prefix_obs = [(ref.step(a), world.step(a)) for a in p.prefix]
    ref_obs, kvm_obs = [o[0] for o in prefix_obs], [o[1] for o in prefix_obs]
    state = p.root
    assert p.kernel.encode(ref, world) == state
    monitor = Monitor(target.cfg, target.checker_options, [a for _, a in letters], p.monitor.layout)
    window = monitor.start(p.shown(state))
    for li in path:
        insn = ref_obs[-1].insn
        state, obs = p.kernel.step(state, p.letters[li])
        r, k = ref.step(letters[li][1]), world.step(letters[li][1])
        ref_obs.append(r)
        kvm_obs.append(k)
        assert p.kernel.encode(ref, world) == state, letters[li]
        assert _obs_of(r, k, insn) == obs, letters[li]
        assert (r.lvtpc >> 16 & 1) == state[R_MASKED]
        pos = p.monitor.layout
        assert p.kernel.counters(state) == (tuple(r.counters[i] for i in pos), tuple(k.counters[i] for i in pos))
        verdict, window = monitor.advance(window, li, obs, p.shown(state))
        full = compare(target.cfg, ref_obs, kvm_obs, target.checker_options, open_end=True)
        assert sorted(verdict, key=str) == sorted(((d.kind, d.visibility, d.counter) for d in full if not d.tolerated),
                                                  key=str)
        if verdict:
            break


def test_the_state_is_a_flat_tuple_of_ints() -> None:
    target, b = _target("6.8", bounds=Bounds(gp=3, depth=2))
    p = plan(target, b)
    assert isinstance(p, Plan)
    assert len(p.root) == GLOBALS + 3 * STRIDE and all(type(v) is int for v in p.root)


# --- the command -------------------------------------------------------------------------------


def test_explore_says_which_engine_ran(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("explore", "--kvm", "6.8", "--mode", "exhaustive", "--depth", "2", "--no-save", "--jobs", "1")
    code, out, _ = cli(capsys, *args)
    assert code == 0 and "  engine: kernel (compiled with numba (" in out
    code, out, _ = cli(capsys, *args, "--engine", "object")
    assert code == 0 and "  engine: object\n" in out
    code, out, _ = cli(capsys, *args, "--events", "instructions:os")
    assert "  engine: object (the compact kernel covers counters of instructions at every CPL only)" in out
    code, _, err = cli(capsys, *args, "--engine", "fast")
    assert code == 2 and err.strip() == "vpmu: error: unknown --engine 'fast' (known: kernel, object)"


def test_both_engines_report_the_same_counterexamples(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("explore", "--kvm", "6.6", "--mode", "exhaustive", "--depth", "3", "--no-save", "--jobs", "1", "--json")
    code_k, out_k, _ = cli(capsys, *args)
    code_o, out_o, _ = cli(capsys, *args, "--engine", "object")
    import json

    k, o = json.loads(out_k), json.loads(out_o)
    assert code_k == code_o == 1
    assert (k["engine"], o["engine"]) == ("kernel", "object")
    assert k["counterexamples"] == o["counterexamples"] and k["states"] == o["states"]


@pytest.mark.parametrize("era", ["6.6", "6.8"])
def test_random_search_on_the_kernel_is_the_object_engines(era: str) -> None:
    """The same restarts draw the same paths: statistics and findings are identical."""
    from vpmu.explore import random_search
    from vpmu.explore.compact import kernel_random

    target, b = _target(era, bounds=Bounds(depth=5))
    p = plan(target, b)
    assert isinstance(p, Plan)
    k = kernel_random(p, 3, range(300))
    o = random_search(target, b, 3, range(300))
    assert (k.stats.states, k.stats.transitions, k.stats.sequences, k.stats.depth_reached) == (
        o.stats.states, o.stats.transitions, o.stats.sequences, o.stats.depth_reached)
    assert _findings(k) == _findings(o) and (era != "6.6" or k.findings)


def test_vpmu_checks_product_search_on_the_kernel_is_the_object_engines() -> None:
    """`vpmu check`'s exhaustive search of two designs' product: the same states, transitions
    and differences on the kernel as on the object models."""
    from vpmu.check import Context, KernelPairExpander, PairExpander, PairJudge
    from vpmu.explore import counters_in_use
    from vpmu.tolerances import CheckerOptions

    b = Bounds(depth=3)
    cfg = b.fit(preset("intel-v2"))
    judge = PairJudge(Context(cfg, "6.6", "prev-counter", "emulated-counter", CheckerOptions(), world=(),
                              open_end=True), counters_in_use(cfg, b), b.event_map(cfg))
    base, patch = plan(judge.base.target, b), plan(judge.patch.target, b)
    assert isinstance(base, Plan) and isinstance(patch, Plan)
    k = bfs(KernelPairExpander(judge, base, patch), b.depth)
    o = bfs(PairExpander(judge, [a for _, a in alphabet(cfg, b)]), b.depth)
    assert (k.stats.states, k.stats.transitions) == (o.stats.states, o.stats.transitions)
    assert [(d.record_key, d.step, d.actions) for d in k.findings] == [
        (d.record_key, d.step, d.actions) for d in o.findings] and k.findings


@pytest.mark.parametrize("options", [
    CheckerOptions(r3_min_period=False),
    CheckerOptions(r7_ignored_overflow=True, r11_disallowed_overflow=True, pmi_skid=1),
])
def test_engines_agree_under_other_checker_options(options: CheckerOptions) -> None:
    """The monitor asks the checker itself, so any options hold; what settles a window
    follows the options' tolerated losses."""
    target, b = _target("6.8", bounds=Bounds(depth=3))
    _agree(replace(target, checker_options=options), b)


# --- the run-time guard of a user design's fast form (vpmu.explore.fastguard) -------------------

WRONG_FAST = f"{ROOT / 'tests' / 'designs' / 'patches.py'}:ForgetClearUpstreamFast"
EXAMPLE = f"{ROOT / 'examples' / 'my_design.py'}:SnapshotBeforePerf"


@pytest.mark.parametrize("era", ["6.6", "6.8"])
@pytest.mark.parametrize("design", ["emulated-counter", "prev-counter", EXAMPLE])
def test_the_guard_passes_a_fast_form_that_says_what_its_hooks_do(era: str, design: str) -> None:
    from vpmu.explore.fastguard import fast_form_disagreement, guarded_plan

    target, b = _target(era, design, bounds=Bounds())
    p = plan(target, b)
    assert isinstance(p, Plan)
    for seed in range(3):
        assert fast_form_disagreement(p, seed=seed) is None
    assert isinstance(guarded_plan(target, b), Plan)


def test_the_guard_refuses_a_wrong_fast_form_in_one_line_naming_the_steps() -> None:
    from vpmu.explore.fastguard import fast_form_disagreement, guarded_plan

    target, b = _target("6.8", WRONG_FAST, bounds=Bounds())
    p = plan(target, b)
    assert isinstance(p, Plan)  # plan() alone would run it on the kernel
    why = fast_form_disagreement(p)
    assert why is not None and "\n" not in why
    assert why.startswith(f"design {WRONG_FAST!r}: its fast form disagrees with its hooks after ")
    assert "past the set-up (" in why and "by the fast form" in why and why.endswith("(docs/designs.md)")
    assert guarded_plan(target, b) == why
    assert fast_form_disagreement(p) == why  # seeded: the same steps every time


def test_the_guard_refuses_a_fast_form_that_raises_in_one_line() -> None:
    from vpmu.explore.fastguard import guarded_plan

    target, b = _target("6.8", f"{ROOT / 'tests' / 'designs' / 'patches.py'}:FastFormRaises", bounds=Bounds())
    why = guarded_plan(target, b)
    assert isinstance(why, str) and "\n" not in why
    assert "its fast form disagrees with its hooks after 1 step" in why
    assert "the fast form raised ValueError: no\\x0aread" in why
