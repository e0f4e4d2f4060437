"""The run layer (`vpmu.run`): both machines on the same actions, compared; scenarios on top.

`run_actions` is the one place that builds the machines, steps them and calls the checker:
its defaults come from the era, a run's observations do not depend on later actions, and
`open_end` judges a trace as the explorer does. `execute` runs a scenario with the file's
settings unless overridden. The scenario package is the file format only and does not load
the run layer, yet still offers the names that moved out of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpmu import actions as A
from vpmu.conformance import collect
from vpmu.eras import ERAS, get_era
from vpmu.errors import VpmuError
from vpmu.run import execute, run_actions
from vpmu.scenario import Scenario, builtin_names, load_scenario, parse_scenario
from vpmu.tolerances import CheckerOptions

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance"
SCENARIOS: list[Scenario] = [load_scenario(n) for n in builtin_names()] + collect([str(CONFORMANCE)])


def test_run_actions_defaults_to_the_era_design_and_the_default_checker() -> None:
    scn = load_scenario("seed-lost-overflow")
    for era in ERAS:
        res = run_actions(scn.cpu, era, scn.actions)
        assert (res.kvm, res.design, res.options) == (era, get_era(era).default_design, CheckerOptions())
        assert len(res.ref_obs) == len(res.kvm_obs) == len(scn.actions)
        assert (res.expects, res.name, res.description) == ((), "", "")
    assert run_actions(scn.cpu, "6.8", scn.actions, design="prev-counter").design == "prev-counter"


def test_run_actions_rejects_an_unknown_era_in_one_line() -> None:
    with pytest.raises(VpmuError, match=r"^unknown KVM era '7\.0' \(known: .*\)$"):
        run_actions(load_scenario("seed-lost-overflow").cpu, "7.0", ())


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SCENARIOS), st.sampled_from(tuple(ERAS)), st.data())
def test_a_run_of_a_prefix_observes_what_the_whole_run_observed_so_far(scn: Scenario, era: str,
                                                                        data: st.DataObject) -> None:
    """Fresh machines per run, stepped in lockstep: step i cannot see actions after it."""
    k = data.draw(st.integers(0, len(scn.actions)))
    whole = run_actions(scn.cpu, era, scn.actions, options=scn.checker)
    prefix = run_actions(scn.cpu, era, scn.actions[:k], options=scn.checker)
    assert prefix.ref_obs == whole.ref_obs[:k] and prefix.kvm_obs == whole.kvm_obs[:k]


def test_open_end_leaves_an_overflow_in_flight_to_the_next_step() -> None:
    """seed-duplicate-overflow up to the native run that wraps with the host PMI held: as a
    final trace the overflow and its PMI are lost; as an open-ended prefix (the explorer's
    view) KVM may still deliver them, and on 6.8 the whole scenario shows it does."""
    scn = load_scenario("seed-duplicate-overflow")
    wrap = next(i for i, a in enumerate(scn.actions) if isinstance(a, A.Native) and a.hold_pmi)
    prefix = scn.actions[: wrap + 1]
    assert wrap + 1 < len(scn.actions)
    closed = run_actions(scn.cpu, "6.8", prefix)
    assert {d.kind for d in closed.divergences if not d.tolerated} == {"lost-overflow", "missing-pmi"}
    assert not run_actions(scn.cpu, "6.8", prefix, open_end=True).divergences
    assert not run_actions(scn.cpu, "6.8", scn.actions).failed


WORLD = """\
name: world-options
description: a scenario whose file sets the era, design, checker and world options
cpu: intel-v2
kvm: "6.6"
design: emulated-counter
options: {pmi_skid: 1, lvtpc: 0x10400}         # a masked NMI, not the default
steps:
  - rdmsr: {msr: LVTPC}
  - expect: {result: 0x10400}
"""


def test_execute_runs_with_the_file_settings_unless_told_otherwise() -> None:
    scn = parse_scenario(WORLD, "w.yaml")
    res = execute(scn)
    assert (res.name, res.kvm, res.design, res.options.pmi_skid) == ("world-options", "6.6", "emulated-counter", 1)
    assert res.ref_obs[0].lvtpc == res.kvm_obs[0].lvtpc == 0x10400  # both machines start from the file's LVTPC
    assert [(e.check, e.ok) for e in res.expects] == [("result", True)]
    other = execute(scn, kvm="6.9", design="prev-counter", options=CheckerOptions())
    assert (other.kvm, other.design, other.options) == ("6.9", "prev-counter", CheckerOptions())


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_the_scenario_package_is_the_file_format_only() -> None:
    """Loading a scenario does not load the run layer; the moved names still resolve, whichever
    of the two modules is imported first."""
    assert _python("import sys, vpmu.scenario as s; s.load_scenario('seed-lost-overflow'); "
                   "print('vpmu.run' in sys.modules)").strip() == "False"
    assert _python("import vpmu.run as r; from vpmu.scenario import execute, RunResult, ExpectOutcome; "
                   "print(execute is r.execute and RunResult is r.RunResult and ExpectOutcome is r.ExpectOutcome)"
                   ).strip() == "True"
    with pytest.raises(ImportError):
        from vpmu.scenario import run_actions  # noqa: F401  (only the names that once lived there)
