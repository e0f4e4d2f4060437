"""The scenario file format as data: what `load` builds from a YAML file and `vpmu.run` executes
(docs/scenario-format.md). Plain frozen dataclasses; no I/O, no YAML."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vpmu import actions as A
from vpmu.config import PmuConfig
from vpmu.errors import SHOWN_LIMIT, VpmuError, clean
from vpmu.scenario.expr import Expr
from vpmu.tolerances import CheckerOptions

#: What decides a scenario's exit code (`judge:`, `--judge`): `all` = the checker's untolerated
#: divergences and the expect steps; `expects` = the expect steps alone (divergences are still
#: reported, marked as not judged), as an upstream test is judged on its own asserts.
JUDGES = ("all", "expects")

#: What each comparison tests, and how a failed check shows it.
_TESTS: dict[str, Callable[[int, int], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "ge": operator.ge, "gt": operator.gt, "le": operator.le,
    "lt": operator.lt, "bits_set": lambda v, m: v & m == m, "bits_clear": lambda v, m: v & m == 0,
}
_SYMBOLS = {"eq": "==", "ne": "!=", "ge": ">=", "gt": ">", "le": "<=", "lt": "<",
            "bits_set": "bits set", "bits_clear": "bits clear"}
#: Comparisons an expect check may make (`range: [lo, hi]` is `ge: lo, le: hi`).
COMPARISONS = tuple(_TESTS)


class ScenarioError(VpmuError):
    """A scenario that does not validate or cannot run: `file:line: field: what was expected`."""

    def __init__(self, source: str, line: int | None, fld: str, reason: str) -> None:
        fld = clean(str(fld))  # a field named by a file's key: shown like any offending value
        fld = fld if len(fld) <= SHOWN_LIMIT else fld[: SHOWN_LIMIT - 3] + "..."
        self.source, self.line, self.field, self.reason = source, line, fld, reason
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {fld}: {reason}")


#: An expected value: a constant, or computed from saved values when the check runs.
Operand = int | Expr


@dataclass(frozen=True, slots=True)
class Condition:
    """Comparisons the observed value must all pass, as (comparison, operand) pairs in the
    file's order, e.g. (("ge", 10), ("lt", Expr("C"))). A plain value is not a Condition: it
    is an exact check, shown as the value itself."""

    tests: tuple[tuple[str, Operand], ...]

    def holds(self, observed: int, value_of: Callable[[Operand], int]) -> bool:
        """Whether `observed` passes every test; `value_of(operand)` gives an operand's integer."""
        return all(_TESTS[op](observed, value_of(operand)) for op, operand in self.tests)

    def show(self, value_of: Callable[[Operand], int]) -> str:
        """`>= 0xa, < 0x14`: what the check expects, computed operands resolved."""
        return ", ".join(f"{_SYMBOLS[op]} {value_of(v):#x}" for op, v in self.tests)


@dataclass(frozen=True, slots=True)
class Save:
    """`save: NAME` on a read step: the KVM and the reference side each keep their own result
    of action `step` under `name` (a faulting read saves nothing)."""

    step: int
    name: str
    line: int


@dataclass(frozen=True, slots=True)
class Computed:
    """A write whose value is computed when it runs: action `step` (item `item` of an
    emulate/batch step, else None) takes `expr` evaluated over that machine's saved values."""

    step: int
    item: int | None
    expr: Expr
    line: int


@dataclass(frozen=True, slots=True)
class Expect:
    """Assertions about the KVM model's observation after action `after` (-1: before any).
    `checks` are (what, expected) pairs: `expected` is a value (int, bool or Expr: exact), a
    Condition, or for `any_of` a tuple of alternative check lists. `id` names the step (unique
    in its file) so a conformance record can refer to it."""

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
    steps and the optional conformance record. `source` is the file it came from; `judge` what
    decides its exit code (JUDGES); `saves` and `computed` its run-time values; the first
    `before_run` actions are its `before_run:` phase (userspace set-up before the first KVM_RUN)."""

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
    judge: str = "all"
    saves: tuple[Save, ...] = ()
    computed: tuple[Computed, ...] = ()
    before_run: int = 0
    design_line: int | None = None  # the line of `design:`, for the refusal of user code
    #: each action's step in the file (`steps[i]`, `before_run[i]`) and line, for errors found
    #: while running
    positions: tuple[tuple[str, int], ...] = ()
    #: whether the file names its era (`kvm:`); else `kvm` is the default era (DEFAULT_ERA)
    kvm_declared: bool = True

