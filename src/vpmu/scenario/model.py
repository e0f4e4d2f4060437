"""The scenario file format as data: what `load` builds from a YAML file and `vpmu.run` executes
(docs/scenario-format.md). Plain frozen dataclasses; no I/O, no YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vpmu import actions as A
from vpmu.config import PmuConfig
from vpmu.tolerances import CheckerOptions


@dataclass(frozen=True, slots=True)
class Expect:
    """Assertions about the KVM model's observation after action `after` (-1: before any).
    `id` names the step (unique in its file) so a conformance record can refer to it."""

    after: int
    line: int
    checks: tuple[tuple[str, Any], ...]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ConformanceSource:
    """Where an upstream check comes from (docs/scenario-format.md, `conformance.source`)."""

    suite: str
    repo: str
    file: str
    function: str
    version: str
    adapted: str | None = None

    def short(self) -> str:
        """"KUT x86/pmu.c check_rdpmc" / "ST pmu_counters_test.c guest_test_gp_counters"."""
        suite = {"kvm-unit-tests": "KUT", "kvm-selftests": "ST"}.get(self.suite, self.suite)
        text = f"{suite} {self.file.rsplit('/', 1)[-1]} {self.function}"
        return text + " (adapted)" if self.adapted else text

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "repo": self.repo, "file": self.file, "function": self.function,
                "version": self.version, "adapted": self.adapted}


@dataclass(frozen=True, slots=True)
class EraRecord:
    """What the upstream check gives on one KVM era, as this scenario records it.

    expected "pass": the run must not fail. expected "fail": it must fail with exactly these
    untolerated divergence labels (as `checker.summary` prints them, e.g. `missing-fault`,
    `spurious-overflow (internal)`) and exactly the expect steps with these ids failing;
    `reason` says why, `spec` where the behaviour is documented.
    """

    era: str
    expected: str
    divergences: tuple[str, ...] = ()
    expects: tuple[str, ...] = ()
    reason: str | None = None
    spec: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"era": self.era, "expected": self.expected, "divergences": list(self.divergences),
                "expects": list(self.expects), "reason": self.reason, "spec": self.spec}


@dataclass(frozen=True, slots=True)
class Conformance:
    """The optional `conformance:` block: the upstream check a scenario re-expresses."""

    source: ConformanceSource
    asserts: str
    tolerance: tuple[str, ...]
    eras: tuple[EraRecord, ...]

    def record(self, era: str) -> EraRecord | None:
        return next((r for r in self.eras if r.era == era), None)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source.to_dict(), "asserts": self.asserts, "tolerance": list(self.tolerance),
                "eras": [r.to_dict() for r in self.eras]}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One scenario file: the CPU, era and design to run, checker options, `world` (keyword
    arguments of `vpmu.world.WorldOptions`, only those the file sets), the actions, the expect
    steps and the optional conformance record. `source` is the file it came from."""

    name: str
    description: str
    cpu: PmuConfig
    kvm: str
    design: str | None
    checker: CheckerOptions
    world: dict[str, Any]
    actions: tuple[A.Action, ...]
    expects: tuple[Expect, ...] = ()
    source: str = "<memory>"
    conformance: Conformance | None = None
    design_line: int | None = None  # the line of `design:`, for the refusal of user code
    #: each action's step in the file, (index in `steps`, line), for errors found while running
    positions: tuple[tuple[int, int], ...] = ()

