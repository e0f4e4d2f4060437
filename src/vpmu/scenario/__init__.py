"""The scenario file format (docs/scenario-format.md): `model` (the data), `load` (YAML ->
`Scenario`, validating) and `dump` (actions -> YAML). Running a scenario is `vpmu.run`'s job.
"""

from __future__ import annotations

from typing import Any

from vpmu.scenario.dump import action_to_step, dump_scenario
from vpmu.scenario.load import DEFAULT_ERA
from vpmu.scenario.model import Conformance, ConformanceSource, EraRecord, Expect, Scenario, ScenarioError
from vpmu.scenario.read import builtin_names, load_scenario, parse_scenario

__all__ = [
    "DEFAULT_ERA", "Conformance", "ConformanceSource", "EraRecord", "Expect", "Scenario", "ScenarioError",
    "action_to_step", "builtin_names", "dump_scenario", "load_scenario", "parse_scenario",
]

#: Names that lived here before the run layer had its own module (`vpmu.run`).
_MOVED_TO_RUN = ("execute", "RunResult", "ExpectOutcome")


def __getattr__(name: str) -> Any:
    """`from vpmu.scenario import execute` keeps working. Resolved on first use (PEP 562) because
    `vpmu.run` imports this package's model: the file format does not depend on the run layer."""
    if name in _MOVED_TO_RUN:
        from vpmu import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
