"""Running the same actions through both machines and comparing: the one operation vpmu exists for.

`start_machines` builds the architectural reference and the KVM world from one description,
sharing the initial LVTPC (the world's: a Linux guest's unmasked NMI by default), so that every
caller starts both sides alike. `run_actions` runs a list of actions on fresh machines and
judges the two traces with `vpmu.checker.compare`; `execute` does that for a scenario file
(`vpmu.scenario`) and checks its expect steps against the KVM side. Scenarios, conformance,
reports and the explorer's machines all come from here.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vpmu import actions as A
from vpmu.assumptions import assumptions_of
from vpmu.checker import compare
from vpmu.config import PmuConfig
from vpmu.designs import is_user_reference
from vpmu.divergence import Divergence, failed, summary
from vpmu.eras import get_era
from vpmu.errors import DesignError, StepError, VpmuError, clean, shown
from vpmu.pmc_map import counter_name, msr_write_value
from vpmu.reference import ReferenceMachine
from vpmu.scenario.expr import Expr, ExprError
from vpmu.scenario.model import Computed, Condition, Expect, Save, Scenario, ScenarioError
from vpmu.tolerances import CheckerOptions
from vpmu.trace import Observation
from vpmu.world import World, WorldOptions


def start_machines(cfg: PmuConfig, era: str, design: str | type | None = None,
                   options: WorldOptions | None = None) -> tuple[ReferenceMachine, World]:
    """A fresh reference and KVM world for `cfg`, era `era` and `design` (None: the era's)."""
    wopts = options or WorldOptions()
    return ReferenceMachine(cfg, lvtpc=wopts.lvtpc), World(cfg, era, design, wopts)


@dataclass(frozen=True, slots=True)
class ExpectOutcome:
    """One check of an expect step: what the file expects, what the KVM model shows."""

    after: int
    line: int
    check: str
    expected: Any
    observed: Any
    ok: bool
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"step": self.after, "line": self.line, "check": self.check, "expected": self.expected,
               "observed": self.observed, "ok": self.ok}
        if self.id is not None:
            out["id"] = self.id
        return out


@dataclass(frozen=True, slots=True)
class RunResult:
    """One differential run: the CPU, era, design and checker options it ran with, both
    machines' observations (one per action), the checker's divergences and, for a scenario,
    its expect outcomes. `name` and `description` label the run in reports and JSON."""

    cfg: PmuConfig
    kvm: str
    design: str
    options: CheckerOptions
    ref_obs: tuple[Observation, ...]
    kvm_obs: tuple[Observation, ...]
    divergences: tuple[Divergence, ...]
    expects: tuple[ExpectOutcome, ...] = ()
    name: str = ""
    description: str = ""
    judge: str = "all"
    saved: dict[str, dict[str, int]] | None = None

    @property
    def judged(self) -> bool:
        """Whether the checker's divergences count towards the verdict (`judge: all`)."""
        return self.judge == "all"

    @property
    def failed(self) -> bool:
        return (self.judged and failed(self.divergences)) or any(not e.ok for e in self.expects)

    @property
    def assumptions(self) -> tuple[str, ...]:
        """The host-timing assumptions the run's actions rest on (`vpmu.assumptions`)."""
        return assumptions_of(o.action for o in self.ref_obs)

    @property
    def verdict(self) -> str:
        bad = sum(not e.ok for e in self.expects)
        if not self.judged:
            s = f"FAIL {bad} expect" + ("s" if bad > 1 else "") if bad else "ok"
            unjudged = sum(not d.tolerated for d in self.divergences)
            return s + (f" (judge: expects; {unjudged} divergence" + ("s" if unjudged > 1 else "")
                        + " not judged)" if unjudged else " (judge: expects)")
        s = summary(self.divergences)
        if bad:
            s = ("FAIL " if not s.startswith("FAIL") else s + ", ") + f"{bad} expect" + ("s" if bad > 1 else "")
        return s

    def to_dict(self, trace: bool = True) -> dict[str, Any]:
        """The `vpmu run --json` object (docs/json.md)."""
        idx = self.cfg.pmc_indices
        out: dict[str, Any] = {
            "scenario": self.name,
            "description": self.description,
            "kvm": self.kvm,
            "design": self.design,
            "cpu": self.cfg.to_dict(),
            "options": self.options.to_dict(),
            "assumptions": list(self.assumptions),
            "judge": self.judge,
            "failed": self.failed,
            "verdict": self.verdict,
            "divergences": [d.to_dict() | {"judged": self.judged} for d in self.divergences],
            "expects": [e.to_dict() for e in self.expects],
            "saved": self.saved or {"reference": {}, "kvm": {}},
        }
        if trace:
            out["trace"] = [
                {"step": r.step, "action": A.action_to_dict(r.action),
                 "reference": _obs_dict(r, idx), "kvm": _obs_dict(k, idx, kvm=True)}
                for r, k in zip(self.ref_obs, self.kvm_obs, strict=True)
            ]
        return out


def _obs_dict(o: Observation, idx: tuple[int, ...], kvm: bool = False) -> dict[str, Any]:
    d = o.to_dict(idx)
    d.pop("action")
    d.pop("step")
    d["counters"] = {counter_name(int(k)): v for k, v in d["counters"].items()}
    if kvm:
        d["design"] = {counter_name(s.pmc): s.to_dict() for s in o.design}
    return d


def run_actions(cfg: PmuConfig, era: str, actions: Sequence[A.Action], *, design: str | None = None,
                options: CheckerOptions | None = None, world: WorldOptions | None = None,
                open_end: bool = False) -> RunResult:
    """Run `actions` on a fresh reference and KVM world (`start_machines`) and compare them.

    design None: the era's. options None: the checker defaults. open_end: the actions are a
    prefix that may go on, so an overflow still deliverable at the next step is not judged yet
    (`compare`; the explorer's view). The result has no expects and no name.
    """
    return _run(cfg, era, actions, design=design, options=options, world=world, open_end=open_end)


def _run(cfg: PmuConfig, era: str, actions: Sequence[A.Action], *, design: str | None,
         options: CheckerOptions | None, world: WorldOptions | None, open_end: bool = False,
         saves: Sequence[Save] = (), computed: Sequence[Computed] = (), source: str = "<memory>") -> RunResult:
    kvm_era = get_era(era)
    opts = options or CheckerOptions()
    ref, kvm = start_machines(cfg, kvm_era.name, design, world)
    ref_obs, ref_saved = _drive(ref.step, cfg, actions, saves, computed, source)
    kvm_obs, kvm_saved = _drive(kvm.step, cfg, actions, saves, computed, source)
    divs = compare(cfg, ref_obs, kvm_obs, opts, open_end=open_end)
    return RunResult(cfg, kvm_era.name, design if design is not None else kvm_era.default_design, opts,
                     ref_obs, kvm_obs, tuple(divs), saved={"reference": ref_saved, "kvm": kvm_saved})


def _drive(step: Callable[[A.Action], Observation], cfg: PmuConfig, actions: Sequence[A.Action],
           saves: Sequence[Save], computed: Sequence[Computed], source: str,
           ) -> tuple[tuple[Observation, ...], dict[str, int]]:
    """Step one machine through `actions`, keeping its own saved values and computing its own
    writes from them: each side runs the guest program as written, on what it read itself. A
    bad value found on the way is a `StepError` naming the step (a user design's failure, a
    `DesignError`, already names it)."""
    save_at = {s.step: s for s in saves}
    computed_at: dict[int, list[Computed]] = {}
    for c in computed:
        computed_at.setdefault(c.step, []).append(c)
    saved: dict[str, int] = {}
    obs = []
    for i, action in enumerate(actions):
        for c in computed_at.get(i, ()):
            action = _computed_action(action, c, saved, cfg, source)
        try:
            o = step(action)
        except (DesignError, StepError):
            raise
        except VpmuError as err:  # a bad value found while running: name the step
            raise StepError(i, getattr(action, "KIND", type(action).__name__), str(err)) from None
        obs.append(o)
        s = save_at.get(i)
        if s is not None and o.results and not o.results[-1].fault and o.results[-1].value is not None:
            saved[s.name] = o.results[-1].value
    return tuple(obs), saved


def _computed_action(action: A.Action, c: Computed, saved: dict[str, int], cfg: PmuConfig,
                     source: str) -> A.Action:
    """`action` with the value of its write `c` computed from `saved`."""
    target = action.items[c.item] if c.item is not None and isinstance(action, A.Emulate | A.Batch) else action
    assert isinstance(target, A.Wrmsr | A.HostWrmsr)
    try:
        value = msr_write_value(cfg, target.msr, c.expr.evaluate(saved))
    except (ExprError, ValueError) as e:
        raise ScenarioError(source, c.line, "value", f"{shown(str(c.expr))}: {e}") from None
    written = replace(target, value=value)
    if c.item is None:
        return written
    assert isinstance(action, A.Emulate | A.Batch) and isinstance(written, A.Wrmsr)
    items: list[A.EmulatedItem] = list(action.items)
    items[c.item] = written
    return replace(action, items=tuple(items))


def execute(scn: Scenario, kvm: str | None = None, design: str | None = None,
            options: CheckerOptions | None = None, judge: str | None = None) -> RunResult:
    """Run the scenario (era, design, checker options and judge default to the file's) and
    check its expect steps against the KVM side, with the KVM side's saved values. A file's
    user design (`is_user_reference`) is refused: only the caller's `design` (the command
    line's --design) loads code."""
    if design is None and is_user_reference(scn.design):
        raise ScenarioError(scn.source, scn.design_line, "design",
                            "names user code, which vpmu loads only when the command line names it: add "
                            f"--design {clean(shlex.quote(str(scn.design)))}")
    try:
        res = _run(scn.cpu, kvm or scn.kvm, scn.actions, design=design if design is not None else scn.design,
                   options=options or scn.checker, world=WorldOptions(**scn.world), saves=scn.saves,
                   computed=scn.computed, source=scn.source)
    except (DesignError, StepError) as err:
        raise _located(scn, err) from None
    saved = (res.saved or {}).get("kvm", {})
    outcomes = tuple(o for e in scn.expects for o in _check_expect(e, res.kvm_obs, scn.cpu, saved, scn.source))
    return replace(res, expects=outcomes, name=scn.name, description=scn.description, judge=judge or scn.judge)


def _located(scn: Scenario, err: DesignError | StepError) -> VpmuError:
    """`err` naming the scenario step's file:line (`Scenario.positions`) where it has one."""
    index = err.index if isinstance(err, StepError) else int(err.step) if err.step is not None else None
    if index is None or index >= len(scn.positions):
        return err
    step, line = scn.positions[index]
    if isinstance(err, DesignError):
        err.step = f"{step} ({scn.source}:{line})"
        return err
    return ScenarioError(scn.source, line, f"{step}.{err.kind}", err.reason)


# --- expect steps (docs/scenario-format.md "expect") ----------------------------------------


def _observe(what: str, after: int, obs: Sequence[Observation], cfg: PmuConfig) -> Any:
    """The KVM model's value for one expect check after action `after` (-1: before any)."""
    o = obs[after] if after >= 0 else None
    if what.startswith("counter:"):
        name = what.split(":", 1)[1]
        i = [counter_name(p) for p in cfg.pmc_indices].index(name)
        return o.counters[i] if o is not None else 0
    if what == "global_status":
        return o.global_status if o is not None else 0
    if what == "pmis":
        return sum(len(x.pmis) for x in obs[: after + 1])
    if what == "lvtpc":
        return o.lvtpc if o is not None else None
    if what == "insn":
        return o.insn if o is not None else 0
    if what == "fault":
        return bool(o.results and o.results[-1].fault) if o is not None else False
    return o.results[-1].value if o is not None and o.results else None  # result


def _show_check(what: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{what}={str(value).lower()}"
    if isinstance(value, int):
        return f"{what}={value:#x}"
    return f"{what}={value}"


def _check_expect(e: Expect, obs: Sequence[Observation], cfg: PmuConfig, saved: dict[str, int],
                  source: str) -> list[ExpectOutcome]:
    def value_of(operand: int | Expr, width: int | None = None) -> int:
        if isinstance(operand, int):
            return operand
        try:
            v = operand.evaluate(saved)
        except ExprError as err:
            raise ScenarioError(source, e.line, "expect", f"{shown(str(operand))}: {err}") from None
        return (1 << width) + v if v < 0 and width is not None else v

    def holds(what: str, expected: Any, observed: Any) -> tuple[bool, Any]:
        """Whether `observed` meets `expected`, and `expected` as the outcome shows it."""
        width = _width_of(what, cfg)
        if isinstance(expected, Condition):
            ok = isinstance(observed, int) and expected.holds(observed, lambda v: value_of(v, width))
            return ok, expected.show(lambda v: value_of(v, width))
        if isinstance(expected, Expr):
            expected = value_of(expected, width)
        return observed == expected, expected

    out = []
    for what, expected in e.checks:
        if what == "any_of":
            # one outcome: holds if every check of some alternative holds
            seen: dict[str, Any] = {}
            ok = False
            shown_alts = []
            for alt in expected:
                values = {w: _observe(w, e.after, obs, cfg) for w, _ in alt}
                seen.update(values)
                results = [holds(w, v, values[w]) for w, v in alt]
                ok = ok or all(r for r, _ in results)
                shown_alts.append(", ".join(_show_check(w, shown) for (w, _), (_, shown) in zip(alt, results,
                                                                                             strict=True)))
            shown_obs = ", ".join(_show_check(w, v) for w, v in seen.items())
            out.append(ExpectOutcome(e.after, e.line, "any_of", " | ".join(shown_alts), shown_obs, ok, e.id))
            continue
        observed = _observe(what, e.after, obs, cfg)
        ok, shown = holds(what, expected, observed)
        out.append(ExpectOutcome(e.after, e.line, what, shown, observed, ok, e.id))
    return out


def _width_of(what: str, cfg: PmuConfig) -> int | None:
    """A counter check's width (a negative computed value means 2^width - N), else None."""
    if not what.startswith("counter:"):
        return None
    name = what.split(":", 1)[1]
    return next(cfg.width_of(p) for p in cfg.pmc_indices if counter_name(p) == name)
