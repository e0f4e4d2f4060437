"""Run the conformance scenarios (the public KVM PMU tests, docs/conformance.md) and judge each
run against what its `conformance:` block records for that era (docs/scenario-format.md).

A run *passes* when it does not fail (`RunResult.failed`: every expect holds and the checker
reports no untolerated divergence). Each (scenario, era) gets one status:

* `pass` — recorded (or, for an era without a record, assumed) to pass, and it does;
* `expected-fail` — recorded to fail, and it fails exactly as recorded: the same untolerated
  divergence labels and the same failing expect steps (by id);
* `FAIL` — an unexplained failure: recorded to pass but fails, or fails differently than
  recorded;
* `unexpected-pass` — recorded to fail but passes (a stale record; like a strict xfail).

`FAIL` and `unexpected-pass` make `vpmu conformance` exit 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpmu.eras import get_era
from vpmu.errors import VpmuError
from vpmu.run import RunResult, execute
from vpmu.scenario import EraRecord, Scenario, load_scenario

STATUSES = ("pass", "expected-fail", "FAIL", "unexpected-pass")


@dataclass(frozen=True, slots=True)
class ConformanceResult:
    scenario: Scenario
    kvm: str
    run: RunResult
    record: EraRecord | None
    status: str
    why: str
    divergences: tuple[str, ...]  # untolerated divergence labels the run shows
    expects: tuple[str, ...]  # failing expect steps: their id, or "line N" when they have none

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "expected-fail")

    def to_dict(self) -> dict[str, Any]:
        scn = self.scenario
        assert scn.conformance is not None
        rec = self.record
        return {
            "scenario": scn.name,
            "file": scn.source,
            "source": scn.conformance.source.to_dict(),
            "asserts": scn.conformance.asserts,
            "tolerance": list(scn.conformance.tolerance),
            "kvm": self.kvm,
            "status": self.status,
            "why": self.why,
            "verdict": self.run.verdict,
            "expected": rec.expected if rec is not None else "pass",
            "declared": rec is not None,
            "recorded": None if rec is None or rec.expected == "pass" else {
                "divergences": list(rec.divergences), "expects": list(rec.expects),
                "reason": rec.reason, "spec": rec.spec},
            "observed": {"divergences": list(self.divergences), "expects": list(self.expects)},
            "divergences": [d.to_dict() for d in self.run.divergences],
            "failed_expects": [e.to_dict() for e in self.run.expects if not e.ok],
        }


def failure_signature(res: RunResult) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """How a run fails: its untolerated divergence labels (`checker.summary` spelling, in
    order of first appearance; none under `judge: expects`) and its failing expect steps, sorted: their `id`, or
    "line N" for a step without one (which a record cannot name: give it an id)."""
    labels: list[str] = []
    for d in res.divergences if res.judged else ():
        if not d.tolerated and d.label not in labels:
            labels.append(d.label)
    ids = sorted({e.id if e.id is not None else f"line {e.line}" for e in res.expects if not e.ok})
    return tuple(labels), tuple(ids)


def _signature_text(labels: Sequence[str], ids: Sequence[str]) -> str:
    parts = list(labels)
    if ids:
        parts.append(("expect " if len(ids) == 1 else "expects ") + ", ".join(ids))
    return ", ".join(parts) if parts else "nothing"


def _tolerated_text(res: RunResult) -> str:
    rels: dict[str, int] = {}
    for d in res.divergences:
        if d.tolerated:
            key = d.relaxation or "?"
            rels[key] = rels.get(key, 0) + 1
    return ", ".join(f"{n} tolerated ({rel})" for rel, n in rels.items())


def classify(scn: Scenario, res: RunResult) -> ConformanceResult:
    """Judge one run of a conformance scenario against its record for the run's era."""
    if scn.conformance is None:
        raise VpmuError(f"{scn.source}: conformance: the scenario has no conformance block")
    rec = scn.conformance.record(res.kvm)
    labels, ids = failure_signature(res)
    expected = rec.expected if rec is not None else "pass"
    if not res.failed:
        if expected == "pass":
            status, why = "pass", _tolerated_text(res)
        else:
            assert rec is not None
            status = "unexpected-pass"
            why = (f"recorded to fail with {_signature_text(rec.divergences, rec.expects)} "
                   f"({rec.reason}), but passes: update the record")
    elif expected == "pass":
        status = "FAIL"
        why = _signature_text(labels, ids)
        if rec is None:
            why += f" (no record for KVM {res.kvm}: expected to pass)"
    else:
        assert rec is not None
        if labels == rec.divergences and ids == rec.expects:
            status, why = "expected-fail", f"{_signature_text(labels, ids)}: {rec.reason} [{rec.spec}]"
        else:
            status = "FAIL"
            why = (f"fails with {_signature_text(labels, ids)}; recorded: "
                   f"{_signature_text(rec.divergences, rec.expects)} ({rec.reason})")
    return ConformanceResult(scn, res.kvm, res, rec, status, why, labels, ids)


def default_dir() -> Path:
    """The `conformance/` directory of the source checkout, else of the working directory."""
    for cand in (Path(__file__).resolve().parents[2] / "conformance", Path.cwd() / "conformance"):
        if cand.is_dir():
            return cand
    raise VpmuError("no conformance/ directory found next to the vpmu sources or in the working "
                    "directory; pass the scenario files or their directory")


def collect(paths: Sequence[str] | None = None) -> list[Scenario]:
    """Load the conformance scenarios: files, or every *.yaml of a directory (sorted by name).
    Each must have a `conformance:` block; names must be unique."""
    files: list[Path] = []
    for p in [Path(x) for x in paths] if paths else [default_dir()]:
        if p.is_dir():
            found = sorted(p.glob("*.yaml"), key=lambda f: f.stem)
            if not found:
                raise VpmuError(f"{p}: no scenario files (*.yaml) in this directory")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise VpmuError(f"{p}: no such file or directory")
    out: list[Scenario] = []
    names: dict[str, str] = {}
    for f in files:
        scn = load_scenario(str(f))
        if scn.conformance is None:
            raise VpmuError(f"{f}: conformance: required key is missing (this is not a conformance scenario)")
        if scn.name in names:
            raise VpmuError(f"{f}: name: {scn.name!r} is also the name of {names[scn.name]}")
        names[scn.name] = str(f)
        out.append(scn)
    return out


def eras_to_run(scn: Scenario, eras: Sequence[str] | None) -> list[str]:
    """The requested eras, or the scenario's declared ones."""
    if eras:
        return list(eras)
    assert scn.conformance is not None
    return [r.era for r in scn.conformance.eras]


def check_eras(eras: Sequence[str] | None) -> list[str] | None:
    """The requested eras, validated (an unknown one raises VpmuError), without duplicates."""
    if not eras:
        return None
    return [get_era(e).name for e in dict.fromkeys(eras)]


def run_all(scenarios: Sequence[Scenario], eras: Sequence[str] | None = None,
            design: str | None = None) -> list[ConformanceResult]:
    """Every scenario on each requested era (default: its declared eras), scenario-major;
    with `design`, on that counter design instead of each era's own (a patch judged against
    the records upstream earns)."""
    eras = check_eras(eras)
    return [classify(scn, execute(scn, kvm=era, design=design)) for scn in scenarios
            for era in eras_to_run(scn, eras)]


def counts(results: Sequence[ConformanceResult]) -> dict[str, int]:
    return {s: sum(r.status == s for r in results) for s in STATUSES}
