"""Counterexamples as trails: scenario files that `vpmu run` replays (TLC's trace file,
SPIN's trail, in the scenario format of docs/scenario-format.md)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from vpmu.designs import absolute_reference, short_name
from vpmu.eras import get_era
from vpmu.errors import VpmuError
from vpmu.outputs import save_text
from vpmu.scenario.dump import dump_scenario
from vpmu.world import WorldOptions

from .causes import digest

if TYPE_CHECKING:
    from vpmu.explore import ExploreReport


def save_counterexamples(report: ExploreReport, directory: str | None) -> list[str | None]:
    """Write each counterexample to `directory` as `explore-ERA-KIND-VISIBILITY.yaml`
    (`explore-ERA-DESIGN-...` for a design other than the era's own; the first of its kind and
    visibility; further causes add their signature digest: `...-VISIBILITY-1a2b3c4d.yaml`), with
    the CPU at the explored width, the era, the design, the checker options and the skid; the
    paths, in counterexample order (None when not saved: no directory, or nothing found), each
    a `SavedFile` that says whether it replaced a file of an earlier run. Other files in the
    directory are left alone."""
    if directory is None or not report.counterexamples:
        return [None] * len(report.counterexamples)
    t = report.target
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VpmuError(f"cannot create --save directory {directory}: {e.strerror or e}") from None
    plain = WorldOptions()
    world = {f.name: getattr(t.world, f.name) for f in fields(t.world)
             if getattr(t.world, f.name) != getattr(plain, f.name)}
    paths: list[str | None] = []
    named: set[tuple[str, str]] = set()
    # a design other than the era's own is part of the name, so that searches of two designs
    # saved into one directory do not overwrite each other's counterexamples
    label = t.era if t.design in (None, get_era(t.era).default_design) else f"{t.era}-{short_name(t.design)}"
    for f in report.counterexamples:
        name = f"explore-{label}-{f.kind}-{f.visibility}"
        if (f.kind, f.visibility) in named:
            name += f"-{digest(f)}"
        named.add((f.kind, f.visibility))
        assumed = ", ".join(f.assumptions) or "none"
        text = dump_scenario(
            name,
            f"Found by vpmu explore (mode {report.mode}, seed {report.seed}, counters {t.cfg.gp_width} bits) "
            f"and shrunk: {f.kind} ({f.visibility}) at step {f.step}: {f.detail}; assumes: {assumed}",
            t.cfg, t.era, absolute_reference(t.design) if t.design else None, t.checker_options, f.actions, world)
        path = root / f"{name}.yaml"
        paths.append(save_text(path, text))
    return paths
