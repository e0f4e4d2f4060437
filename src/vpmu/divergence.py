"""What the checker reports: a `Divergence` between the reference and KVM, its kind and
visibility, and the one-line summaries runs and records use (docs/checker.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What diverged (docs/checker.md). The value is the spelling in reports and JSON."""

    WRONG_VALUE = "wrong-value"
    LOST_OVERFLOW = "lost-overflow"
    SPURIOUS_OVERFLOW = "spurious-overflow"
    LATE_OVERFLOW = "late-overflow"
    MISSING_PMI = "missing-pmi"
    EXTRA_PMI = "extra-pmi"
    LATE_PMI = "late-pmi"
    UNEXPECTED_FAULT = "unexpected-fault"
    MISSING_FAULT = "missing-fault"


class Visibility(StrEnum):
    """Whether the guest can see a divergence, or only the model's internals show it."""

    GUEST = "guest"
    INTERNAL = "internal"


#: Every divergence kind, in report order.
KINDS: tuple[str, ...] = tuple(k.value for k in Kind)


def divergence_label(kind: str, visibility: str) -> str:
    """"lost-overflow" / "spurious-overflow (internal)": how summaries and records name one."""
    return kind + (" (internal)" if visibility == Visibility.INTERNAL else "")


def parse_divergence_label(label: str) -> tuple[Kind, Visibility] | None:
    """The inverse of `divergence_label`, or None for an unknown label."""
    kind = label.removesuffix(" (internal)")
    if kind not in KINDS:
        return None
    return Kind(kind), Visibility.INTERNAL if kind != label else Visibility.GUEST


@dataclass(frozen=True, slots=True)
class Divergence:
    """One difference the guest (or the model's internals) can see between reference and KVM.

    step: index of the action where it starts; counter: "gp0" / "fixed1" / None;
    expected / observed: the reference's and KVM's value (int), or a short text;
    relaxation: the spec §6.2 relaxation that tolerates it ("R1", ...), if any.
    """

    kind: Kind
    visibility: Visibility
    tolerated: bool
    step: int
    counter: str | None
    expected: int | str | None
    observed: int | str | None
    message: str
    relaxation: str | None = None

    @property
    def label(self) -> str:
        return divergence_label(self.kind, self.visibility)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "visibility": self.visibility.value, "tolerated": self.tolerated,
            "relaxation": self.relaxation, "step": self.step, "counter": self.counter,
            "expected": self.expected, "observed": self.observed, "message": self.message,
        }


def failed(divergences: Sequence[Divergence]) -> bool:
    return any(not d.tolerated for d in divergences)


def summary(divergences: Sequence[Divergence]) -> str:
    """"ok", "ok (1 tolerated)" or "FAIL lost-overflow" (the first untolerated kind(s))."""
    bad: list[str] = []
    for d in divergences:
        if not d.tolerated and d.label not in bad:
            bad.append(d.label)
    if bad:
        return "FAIL " + ", ".join(bad)
    n = len(divergences)
    return f"ok ({n} tolerated)" if n else "ok"
