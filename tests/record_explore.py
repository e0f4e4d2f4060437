"""Record (or compare against) what the explorer finds on every era: the refactor guard.

`python tests/record_explore.py` rewrites tests/recorded/explore.json; the test
`test_explore_recorded.py` compares a fresh run with it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from vpmu.actions import action_to_dict
from vpmu.config import preset
from vpmu.eras import ERAS
from vpmu.explore import Bounds, ExploreReport, Target, default_width, explore, signature

RECORDED = Path(__file__).parent / "recorded" / "explore.json"
CASES = [(era, "intel-v2") for era in ERAS] + [("6.8", "amd-perfmon-v2"), ("6.6", "intel-v1")]


def _record(report: ExploreReport) -> dict[str, Any]:
    return {
        "searches": [{"mode": s.mode, "states": s.stats.states, "transitions": s.stats.transitions,
                      "depth_reached": s.stats.depth_reached, "exhausted": s.stats.exhausted,
                      "depth_limited": s.stats.depth_limited, "frontier_left": s.stats.frontier_left}
                     for s in report.searches],
        "causes_found": report.causes_found,
        "counterexamples": [{"kind": f.kind, "visibility": f.visibility, "step": f.step,
                             "signature": signature(f), "assumptions": list(f.assumptions),
                             "actions": [action_to_dict(a) for a in f.actions]}
                            for f in report.counterexamples],
    }


def snapshot() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for era, cpu in CASES:
        cfg = preset(cpu)
        target, width = Target(cfg, era), default_width(cfg)   # AMD: 48 bits, Intel: 4
        for mode in ("random", "exhaustive"):
            out[f"{era}/{cpu}/{mode}"] = _record(explore(target, Bounds(width=width, depth=3), mode=mode, seed=0,
                                                         restarts=200))
    # one run at the default bounds (depth 5)
    out["6.8/intel-v2/exhaustive/default"] = _record(
        explore(Target(preset("intel-v2").with_width(4), "6.8"), Bounds(), mode="exhaustive"))
    return out


if __name__ == "__main__":
    RECORDED.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {RECORDED}\n")
