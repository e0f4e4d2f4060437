"""`vpmu check`: a verdict on a counter-tracking design, relative to a baseline (docs/check.md).

The question a patch author brings is not "does my design diverge from the architecture?" —
upstream KVM itself does, in documented ways — but "does my patch break anything the baseline
gets right?". So every action sequence runs through three machines: the architectural
reference, the KVM model with the baseline design and the KVM model with the patched design,
and the two designs' divergences from the reference are compared:

* a **regression** is a sequence on which the patched design diverges from the reference
  where the baseline does not, or diverges differently (another kind, step, counter or
  observed value);
* a **fix** is the converse.

Sequences come from the built-in and conformance scenarios and from the explorer (random
search on each design, then an exhaustive search of the product of both). Every regression
and fix is shrunk while it stays one, so the verdict comes with minimal traces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from vpmu.actions import Action, action_to_dict
from vpmu.assumptions import assumptions_of
from vpmu.config import PmuConfig
from vpmu.designs import absolute_reference, short_name
from vpmu.divergence import Divergence, Visibility
from vpmu.eras import get_era
from vpmu.errors import VpmuError
from vpmu.explore import (
    ENGINES,
    Bounds,
    EventMap,
    Judge,
    Node,
    SearchResult,
    Stats,
    Successor,
    Target,
    alphabet,
    bfs,
    counters_in_use,
    past_deadline,
    random_search,
    setup_prefix,
    shrink,
)
from vpmu.explore.compact import Plan, kernel_random
from vpmu.explore.fastguard import guarded_plan
from vpmu.outputs import save_text
from vpmu.run import RunResult, execute, run_actions
from vpmu.scenario import Scenario
from vpmu.scenario.dump import dump_scenario
from vpmu.tolerances import CheckerOptions
from vpmu.trace import Observation
from vpmu.world import WorldOptions

Direction = Literal["regression", "fix"]


#: What makes two divergences "the same": the checker's judgement at the same place.
Identity = tuple[str, str, int, str | None, object, object]


def identity(d: Divergence) -> Identity:
    """A divergence as `vpmu check` compares it: kind, visibility, step, counter, expected and
    observed value (the message's wording does not count)."""
    return (d.kind.value, d.visibility.value, d.step, d.counter, d.expected, d.observed)


@dataclass(frozen=True, slots=True)
class Showing:
    """What one design showed at the divergent step: its observation and its untolerated
    divergences there (labels with their messages)."""

    counters: tuple[tuple[str, int], ...]
    global_status: int
    pmis: tuple[int, ...]
    divergences: tuple[str, ...]

    @staticmethod
    def of(cfg: PmuConfig, obs: Observation, divs: Sequence[Divergence], step: int) -> Showing:
        from vpmu.pmc_map import counter_name

        return Showing(tuple((counter_name(i), v) for i, v in zip(cfg.pmc_indices, obs.counters, strict=True)),
                       obs.global_status, obs.pmis,
                       tuple(f"{d.label}: {d.message}" for d in divs if d.step == step and not d.tolerated))

    def to_dict(self) -> dict[str, object]:
        return {"counters": dict(self.counters), "global_status": self.global_status,
                "pmis": list(self.pmis), "divergences": list(self.divergences)}


@dataclass(frozen=True, slots=True)
class Context:
    """Where a difference lives: the CPU, era, both designs, the checker and world options of
    the runs, and whether runs are judged open-ended (a search's prefix) or final (a
    scenario). Everything needed to replay, shrink and save it."""

    cfg: PmuConfig
    era: str
    baseline: str
    patched: str
    checker: CheckerOptions
    world: tuple[tuple[str, Any], ...] = ()
    open_end: bool = False

    def runs(self, actions: Sequence[Action]) -> Runs:
        """`actions` run on fresh machines with each design (the run layer)."""
        world = WorldOptions(**dict(self.world))
        base = run_actions(self.cfg, self.era, actions, design=self.baseline, options=self.checker,
                           world=world, open_end=self.open_end)
        patch = run_actions(self.cfg, self.era, actions, design=self.patched, options=self.checker,
                            world=world, open_end=self.open_end)
        return Runs(self, tuple(actions), base.kvm_obs, patch.kvm_obs, base.divergences, patch.divergences,
                    base.ref_obs)


@dataclass(frozen=True, slots=True)
class Difference:
    """One regression or fix: the replayable action sequence (`context`; for the explorer the
    set-up prefix included), the divergence that makes the difference and what each design
    showed at its step. origin: "explore" or "scenario NAME"; `scenario_file` is set once it is
    saved."""

    direction: Direction
    kind: str
    visibility: str
    step: int
    counter: str | None
    message: str
    context: Context
    actions: tuple[Action, ...]
    origin: str
    baseline: Showing
    patched: Showing
    scenario_file: str | None = None

    @property
    def assumptions(self) -> tuple[str, ...]:
        """The host-timing assumptions its actions rest on (vpmu.assumptions)."""
        return assumptions_of(self.actions)

    @property
    def record_key(self) -> tuple[str, str, str]:
        """A search keeps one difference per direction, kind and visibility."""
        return (self.direction, self.kind, self.visibility)


@dataclass(frozen=True, slots=True)
class Runs:
    """The same actions judged on the baseline and on the patched design."""

    context: Context
    actions: tuple[Action, ...]
    base_obs: tuple[Observation, ...]
    patch_obs: tuple[Observation, ...]
    base_divs: tuple[Divergence, ...]
    patch_divs: tuple[Divergence, ...]
    ref_obs: tuple[Observation, ...] = ()

    def showing(self, step: int) -> tuple[Showing, Showing]:
        cfg = self.context.cfg
        return (Showing.of(cfg, self.base_obs[step], self.base_divs, step),
                Showing.of(cfg, self.patch_obs[step], self.patch_divs, step))

    def differences(self, origin: str) -> list[Difference]:
        """Every untolerated divergence one design shows and the other does not."""
        base = {identity(d): d for d in self.base_divs if not d.tolerated}
        patch = {identity(d): d for d in self.patch_divs if not d.tolerated}
        out: list[Difference] = []
        sides: tuple[tuple[Direction, dict[Identity, Divergence], dict[Identity, Divergence]], ...] = (
            ("regression", patch, base), ("fix", base, patch))
        for direction, mine, other in sides:
            # the checker's own rule: a guest-visible divergence of a kind on a counter makes an
            # internal one of that kind and counter redundant; so an internal divergence is no
            # difference where the other design shows that kind guest-visibly at that step
            seen = {(d.kind, d.counter, d.step) for d in other.values() if d.visibility == Visibility.GUEST}
            for key, d in mine.items():
                redundant = d.visibility == Visibility.INTERNAL and (d.kind, d.counter, d.step) in seen
                if key not in other and not redundant:
                    out.append(Difference(direction, d.kind.value, d.visibility.value, d.step, d.counter, d.message,
                                          self.context, self.actions, origin, *self.showing(d.step)))
        return out


# --- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScenarioVerdict:
    """One scenario run on both designs, and what differs."""

    scenario: Scenario
    baseline: RunResult
    patched: RunResult
    differences: tuple[Difference, ...]


def check_scenario(scn: Scenario, era: str, baseline: str, patched: str) -> ScenarioVerdict:
    """Run `scn` on `era` with both designs (the file's checker and world options). A failed
    expect step counts as a difference too (kind "expect", at the step it checks).

    A scenario with computed writes (`value: "1 - C"`) is first resolved into one concrete
    program, the values the architectural reference computes: both designs then run the same
    actions, as in the explorer, so a difference replays, shrinks and saves as plain actions."""
    if scn.computed:
        program = execute(scn, kvm=era, design=baseline).ref_obs
        scn = replace(scn, actions=tuple(o.action for o in program), computed=())
    context = Context(scn.cpu, era, baseline, patched, scn.checker, tuple(sorted(scn.world.items())))
    base = execute(scn, kvm=era, design=baseline)
    patch = execute(scn, kvm=era, design=patched)
    runs = Runs(context, scn.actions, base.kvm_obs, patch.kvm_obs, base.divergences, patch.divergences)
    origin = f"scenario {scn.name}"
    diffs = runs.differences(origin)
    failing = {"regression": {(e.line, e.check) for e in patch.expects if not e.ok},
               "fix": {(e.line, e.check) for e in base.expects if not e.ok}}
    sides: tuple[tuple[Direction, Direction, RunResult], ...] = (("regression", "fix", patch),
                                                                 ("fix", "regression", base))
    for direction, other, run in sides:
        for e in run.expects:
            if not e.ok and (e.line, e.check) not in failing[other]:
                diffs.append(Difference(
                    direction, "expect", "guest", e.after, None,
                    f"expect at line {e.line}: {e.check} expected {e.expected}, KVM shows {e.observed}",
                    context, scn.actions, origin, *runs.showing(max(e.after, 0))))
    return ScenarioVerdict(scn, base, patch, tuple(diffs))


# --- the product search ---------------------------------------------------------------------


@dataclass(slots=True)
class Pair:
    """A product state: the baseline's and the patched design's explorer `Node`s after one
    path (each with its own reference machine)."""

    base: Node
    patch: Node

    def key(self) -> tuple[Hashable, Hashable]:
        return (self.base.key(), self.patch.key())


class PairJudge:
    """Runs explored paths on both designs and compares their open-ended verdicts."""

    def __init__(self, context: Context, counters: tuple[int, ...], events: EventMap = ()) -> None:
        c = context
        self.context = c
        world = WorldOptions(**dict(c.world))
        self.base = Judge(Target(c.cfg, c.era, c.baseline, c.checker, world))
        self.patch = Judge(Target(c.cfg, c.era, c.patched, c.checker, world))
        self.prefix = setup_prefix(c.cfg, counters, events)

    def root(self) -> Pair:
        return Pair(self.base.root(self.prefix)[0], self.patch.root(self.prefix)[0])

    def advance(self, pair: Pair, action: Action) -> tuple[Pair, bool, list[Difference]]:
        """The child state, whether either design diverged, and the differences."""
        nb, db = self.base.advance(pair.base, action)
        np_, dp = self.patch.advance(pair.patch, action)
        child = Pair(nb, np_)
        if not (db or dp):
            return child, False, []
        runs = Runs(self.context, nb.path, tuple(nb.kvm_obs), tuple(np_.kvm_obs), tuple(db), tuple(dp))
        return child, True, runs.differences("explore")


class PairExpander:
    """The explorer's in-memory expander over the product of both designs. A transition on
    which either design diverges is not expanded further (BFS made it a shortest witness):
    it is a finding when the designs' untolerated divergences differ, and a shared
    divergence (no finding) when they are the same."""

    states_per_call: int | None = 1

    def __init__(self, judge: PairJudge, letters: Sequence[Action]) -> None:
        self.judge = judge
        self.letters = tuple(letters)

    def root(self) -> tuple[Pair, Hashable]:
        pair = self.judge.root()
        return pair, pair.key()

    def expand(self, states: Sequence[tuple[Pair, Hashable]]) -> Iterator[Successor[Pair, Hashable]]:
        for pair, _ in states:
            for action in self.letters:
                child, diverged, diffs = self.judge.advance(pair, action)
                yield Successor(child, None if diverged else child.key(), diffs)  # type: ignore[arg-type]


class KernelPairExpander:
    """`PairExpander` on the explorer's compact kernel (vpmu.explore.compact): both designs'
    compact states (each with its own reference part) are the visited key; a transition on
    which either design's monitor reports an untolerated divergence is replayed on the object
    models (`PairJudge`'s judges) for its differences, so findings are the object engine's."""

    states_per_call: int | None = 1

    def __init__(self, judge: PairJudge, base: Plan, patch: Plan) -> None:
        self.judge, self.base, self.patch = judge, base, patch

    def root(self) -> tuple[tuple[Any, ...], Hashable]:
        b, p = self.base, self.patch
        start = (b.root, b.monitor.start(b.shown(b.root)), p.root, p.monitor.start(p.shown(p.root)), ())
        return start, (b.root, p.root)

    def expand(self, states: Sequence[tuple[tuple[Any, ...], Hashable]]) -> Iterator[Successor[Any, Hashable]]:
        b, p = self.base, self.patch
        for (sb, wb, sp, wp, path), _ in states:
            for li, (lb, lp) in enumerate(zip(b.letters, p.letters, strict=True)):
                cb, ob = b.kernel.step(sb, lb)
                vb, nwb = b.monitor.advance(wb, li, ob, b.shown(cb))
                cp, op = p.kernel.step(sp, lp)
                vp, nwp = p.monitor.advance(wp, li, op, p.shown(cp))
                child = (cb, nwb, cp, nwp, path + (li,))
                if vb or vp:
                    yield Successor(child, None, self.differences(path + (li,)))  # type: ignore[arg-type]
                else:
                    yield Successor(child, (cb, cp), [])

    def differences(self, path: tuple[int, ...]) -> list[Difference]:
        actions = self.judge.prefix + tuple(self.base.monitor.letters[i] for i in path)
        nb, db = self.judge.base.root(actions)
        np_, dp = self.judge.patch.root(actions)
        return Runs(self.judge.context, nb.path, tuple(nb.kvm_obs), tuple(np_.kvm_obs), tuple(db),
                    tuple(dp)).differences("explore")


def shrink_difference(diff: Difference, keep: int, deadline: float | None = None) -> Difference:
    """Minimise the steps after the first `keep` (an explorer's set-up prefix, never shrunk)
    while a difference of the same direction, kind and visibility stays; the result ends at
    its divergent step. Shrinking stops at `deadline` (--time-budget) with the smallest
    sequence found by then."""

    def first(suffix: Sequence[Action]) -> Difference | None:
        runs = diff.context.runs(diff.actions[:keep] + tuple(suffix))
        return next((d for d in runs.differences(diff.origin) if d.record_key == diff.record_key), None)

    suffix = shrink(diff.actions[keep:], lambda c: first(c) is not None, diff.context.cfg.gp_mask,
                    deadline=deadline)
    found = first(suffix)
    assert found is not None, "shrinking lost the difference"
    end = found.step + 1 - keep
    if 0 < end < len(suffix):
        found = first(suffix[:end]) or found
    return found


# --- the whole check ---------------------------------------------------------------------------


@dataclass
class CheckReport:
    """What `vpmu check` prints (docs/check.md, docs/json.md)."""

    design: str
    baseline: str
    era: str
    cfg: PmuConfig
    bounds: Bounds
    scenarios: list[ScenarioVerdict]
    searches: list[SearchResult]
    regressions: list[Difference] = field(default_factory=list)
    fixes: list[Difference] = field(default_factory=list)
    #: differences (from scenarios) that rest on an assumption the check does not allow:
    #: reported, not judged
    beyond: list[Difference] = field(default_factory=list)
    #: the engine the searches ran on ("kernel" or "object"), and when the kernel was asked
    #: for but does not cover both designs and the bounds, why (one line)
    engine: str = "object"
    engine_note: str = ""

    @property
    def stats(self) -> Stats:
        return sum((s.stats for s in self.searches), Stats())

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def verdict(self) -> str:
        """The one-line verdict: "no regression in N scenarios and S states" or "K regressions"."""
        if self.regressions:
            n = len(self.regressions)
            return f"{n} regression{'s' if n > 1 else ''}"
        n = len(self.scenarios)
        return f"no regression in {n} scenario{'' if n == 1 else 's'} and {self.stats.states:,} states"


def _keep_shortest(found: dict[tuple[str, str, str], Difference], diffs: Sequence[Difference]) -> None:
    for d in diffs:
        old = found.get(d.record_key)
        if old is None or len(d.actions) < len(old.actions):
            found[d.record_key] = d


def check(
    design: str,
    era: str,
    cfg: PmuConfig,
    bounds: Bounds,
    scenarios: Sequence[Scenario] = (),
    baseline: str | None = None,
    checker: CheckerOptions | None = None,
    seed: int = 0,
    restarts: int = 2000,
    time_budget: float | None = None,
    progress: Callable[[str], None] | None = None,
    engine: str = "kernel",
) -> CheckReport:
    """Judge `design` against `baseline` (default: the era's own design) on `scenarios`, then
    by exploring `cfg` within `bounds`: each design's random search finds where it diverges and
    the product decides whether that is a difference; then the product is searched
    exhaustively. Scenario differences are shrunk as final runs, explored ones open-ended.

    engine "kernel" runs every search on the compact kernel when it covers both designs and
    the bounds (a user design's fast form checked against its hooks first,
    `vpmu.explore.fastguard`), else every search on the object models with the reason in
    `CheckReport.engine_note`; "object" always uses the object models. Both find the same."""
    if engine not in ENGINES:
        raise VpmuError(f"unknown --engine {engine!r} (known: {', '.join(ENGINES)})")
    era_name = get_era(era).name
    base_ref = baseline if baseline is not None else get_era(era).default_design
    opts = checker or CheckerOptions()
    deadline = None if time_budget is None else time.time() + time_budget

    def say(what: str) -> None:
        if progress is not None:
            progress(what)

    scenario_diffs: dict[tuple[str, str, str], Difference] = {}
    verdicts: list[ScenarioVerdict] = []
    for scn in scenarios:
        say(f"scenario {scn.name}")
        verdict = check_scenario(scn, era_name, base_ref, design)
        verdicts.append(verdict)
        _keep_shortest(scenario_diffs, [d for d in verdict.differences if d.kind != "expect"])
        _keep_shortest(scenario_diffs, [d for d in verdict.differences if d.kind == "expect"])

    narrowed = bounds.fit(cfg)
    skid = (("skid", bounds.skid),) if bounds.skid != WorldOptions().skid else ()
    context = Context(narrowed, era_name, base_ref, design, opts, world=skid, open_end=True)
    counters = counters_in_use(narrowed, bounds)
    judge = PairJudge(context, counters, bounds.event_map(narrowed))
    keep = len(judge.prefix)
    searches: list[SearchResult] = []
    explored: dict[tuple[str, str, str], Difference] = {}
    plans, note = kernel_pair(judge, bounds) if engine == "kernel" else (None, "")
    where = "compact kernel" if plans else "object models" + (f": {note}" if note else "")
    base_plan, patch_plan = plans if plans else (None, None)
    for target, fast in ((judge.patch.target, patch_plan), (judge.base.target, base_plan)):
        if past_deadline(deadline):
            break
        say(f"random search on {target.design} ({where})")
        result = (kernel_random(fast, seed, range(restarts), deadline) if fast
                  else random_search(target, bounds, seed, range(restarts), deadline))
        searches.append(result)
        for f in result.findings:
            _keep_shortest(explored, context.runs(f.actions).differences("explore"))
    if not past_deadline(deadline):
        say(f"exhaustive search of the product ({where})")
        if plans:
            result = bfs(KernelPairExpander(judge, *plans), bounds.depth, deadline)
        else:
            letters = [a for _, a in alphabet(narrowed, bounds)]
            result = bfs(PairExpander(judge, letters), bounds.depth, deadline)
        searches.append(result)
        _keep_shortest(explored, result.findings)  # type: ignore[arg-type]

    shrunk: dict[tuple[str, str, str], Difference] = {}
    for d in explored.values():
        _keep_shortest(shrunk, [shrink_difference(d, keep, deadline)])
    for d in scenario_diffs.values():
        if d.record_key not in shrunk:
            shrunk[d.record_key] = d if d.kind == "expect" else shrink_difference(d, 0, deadline)
    ordered = sorted(shrunk.values(), key=lambda d: (d.kind, d.visibility, d.origin))
    allowed = set(bounds.assume)
    within = [d for d in ordered if set(d.assumptions) <= allowed]
    return CheckReport(design, base_ref, era_name, narrowed, bounds, verdicts, searches,
                       [d for d in within if d.direction == "regression"],
                       [d for d in within if d.direction == "fix"],
                       [d for d in ordered if d not in within], "kernel" if plans else "object", note)


def kernel_pair(judge: PairJudge, bounds: Bounds) -> tuple[tuple[Plan, Plan] | None, str]:
    """The kernel plans of the baseline and the patched design, or None and why not (one
    line): the kernel runs a check only when it covers both (`guarded_plan`: a user design's
    fast form must also agree with its hooks), so that every search of it runs on one engine."""
    patch = guarded_plan(judge.patch.target, bounds)
    base = guarded_plan(judge.base.target, bounds)
    if isinstance(patch, str):
        return None, patch
    if isinstance(base, str):
        return None, base
    return (base, patch), ""


# --- output -------------------------------------------------------------------------------------


def save_differences(report: CheckReport, directory: str | None) -> CheckReport:
    """Write each regression and fix as a scenario file `check-ERA-DESIGN-DIRECTION-KIND-VIS
    [-N].yaml` in `directory` (a regression runs the patched design, a fix the baseline: replaying
    either shows the divergence); the report with `scenario_file` set (a `SavedFile`: it says
    whether it replaced a file of an earlier run; other files in `directory` are left alone)."""
    if directory is None or not (report.regressions or report.fixes):
        return report
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VpmuError(f"cannot create --save directory {directory}: {e.strerror or e}") from None
    used: set[str] = set()

    def save(d: Difference) -> Difference:
        c = d.context
        design = c.patched if d.direction == "regression" else c.baseline
        stem = f"check-{c.era}-{short_name(c.patched)}-{d.direction}-{d.kind}-{d.visibility}"
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        other = c.baseline if d.direction == "regression" else c.patched
        text = dump_scenario(
            name,
            f"Found by vpmu check ({d.origin}): a {d.direction} of {short_name(c.patched)} against "
            f"{short_name(c.baseline)}: {d.kind} ({d.visibility}) at step {d.step}: {d.message}. "
            f"With --design {absolute_reference(other)} this run does not show it.",
            c.cfg, c.era, absolute_reference(design), c.checker, d.actions, dict(c.world))
        return replace(d, scenario_file=save_text(root / f"{name}.yaml", text))

    return replace(report, regressions=[save(d) for d in report.regressions], fixes=[save(d) for d in report.fixes])


def difference_to_dict(d: Difference) -> dict[str, Any]:
    return {"kind": d.kind, "visibility": d.visibility, "step": d.step, "counter": d.counter,
            "message": d.message, "origin": d.origin, "assumptions": list(d.assumptions),
            "steps": [action_to_dict(a) for a in d.actions],
            "scenario_file": d.scenario_file, "baseline": d.baseline.to_dict(), "patched": d.patched.to_dict()}


def report_to_dict(report: CheckReport) -> dict[str, Any]:
    """The `vpmu check --json` object (docs/json.md)."""
    total = report.stats
    exhaustive = [s for s in report.searches if s.mode == "exhaustive"]
    return {
        "design": report.design,
        "baseline": report.baseline,
        "kvm": report.era,
        "cpu": report.cfg.to_dict(),
        "bounds": report.bounds.to_dict(),
        "verdict": report.verdict,
        "regressions": [difference_to_dict(d) for d in report.regressions],
        "fixes": [difference_to_dict(d) for d in report.fixes],
        "beyond_assumptions": [{"direction": d.direction, **difference_to_dict(d)} for d in report.beyond],
        "scenarios": {"run": len(report.scenarios),
                      "regressed": sorted({v.scenario.name for v in report.scenarios
                                           if any(d.direction == "regression" for d in v.differences)}),
                      "fixed": sorted({v.scenario.name for v in report.scenarios
                                       if any(d.direction == "fix" for d in v.differences)})},
        "engine": report.engine,
        "engine_note": report.engine_note or None,
        "explore": {"states": total.states, "transitions": total.transitions,
                    "exhausted": bool(exhaustive) and exhaustive[-1].stats.exhausted,
                    "depth_limited": bool(exhaustive) and exhaustive[-1].stats.depth_limited,
                    "frontier_left": exhaustive[-1].stats.frontier_left if exhaustive else 0,
                    "elapsed_seconds": round(total.elapsed, 3)},
    }
