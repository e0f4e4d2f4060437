"""Benchmark the compact kernel (issue 14; docs/performance.md "The compact kernel").

(a) The seed question side by side with SPIN 6.5.2 on the anchor model
    (../shared/anchors/seed.pml, emulated-counter design, no late PMI) for counter widths
    4-8: SPIN's BFS (pan -DBFS, as run-seed-spin.sh builds it) and vpmu's exhaustive search
    on the anchor README's matching bounds, in the same run: states and time to an exhausted
    verdict, and the ratio; vpmu's compiled kernel, the same kernel in pure Python, and the
    object engine where it takes under a few minutes.
(b) States/s and peak RSS of the compiled kernel on KVM 6.8's default bounds, depth 4-8, with
    1 and 3 GP counters (each run in a fresh process with a time budget), and bytes per
    visited state.
(c) The issue's other targets: a user design in the fast form (examples/my_design.py) on the
    default bounds, and `--counters 2,1 --depth 8`.

Run: .venv/bin/python benchmarks/bench_kernel.py   (writes benchmarks/results/kernel.json;
needs `spin` and gcc for (a), which is skipped with a note without them; about 10 minutes)
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
#: The SPIN anchor: ../shared/anchors/seed.pml next to the checkout (or a worktree's parent's).
ANCHOR = next((p / "shared" / "anchors" / "seed.pml" for p in (ROOT.parent, ROOT.parent.parent)
               if (p / "shared" / "anchors" / "seed.pml").is_file()), ROOT.parent / "shared" / "anchors" / "seed.pml")
OUT = ROOT / "benchmarks" / "results" / "kernel.json"
#: Per-run time budget of the depth sweep (seconds).
BUDGET = 60.0


# --- one measurement, in a fresh process ----------------------------------------------------


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one exhaustive search described by `spec` and report its statistics and memory.
    Engines: "compiled" (the compiled kernel, `compiled_bfs`; compiled or loaded from numba's
    cache before the clock and the memory baseline), "kernel" (the same kernel in pure Python,
    `kernel_bfs`) and "object" (the object models)."""
    from vpmu.config import preset
    from vpmu.explore import Bounds, InMemoryExpander, Target, bfs
    from vpmu.explore.compact import Plan, compiled_search, kernel_bfs, plan
    from vpmu.explore.compact.compiled import compiled_bfs

    b = Bounds(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["bounds"].items()})
    target = Target(b.fit(preset(spec.get("cpu", "intel-v2"))), spec["era"], spec.get("design"))
    engine = spec["engine"]
    note = ""
    p = plan(target, b) if engine != "object" else None
    load = 0.0
    compiled = None
    if isinstance(p, Plan) and engine == "compiled":
        start = time.perf_counter()
        compiled = compiled_search(p)
        if isinstance(compiled, str):
            note, engine = compiled, "kernel"
        else:
            compiled_bfs(p, 0, compiled)  # compiles (or loads) the search: depth 0 searches nothing
        load = time.perf_counter() - start
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deadline = time.time() + spec["budget"] if spec.get("budget") else None
    if isinstance(p, Plan) and engine == "compiled" and not isinstance(compiled, str) and compiled is not None:
        result = compiled_bfs(p, b.depth, compiled, deadline)
    elif isinstance(p, Plan):
        engine = "kernel"
        result = kernel_bfs(p, b.depth, deadline)
    else:
        note = p or note
        engine = "object"
        result = bfs(InMemoryExpander(target, b), b.depth, deadline)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    st = result.stats
    return {"engine": engine, "note": note, "states": st.states, "transitions": st.transitions,
            "depth_reached": st.depth_reached, "exhausted": st.exhausted, "depth_limited": st.depth_limited,
            "stopped_by_budget": st.stopped_by_budget, "seconds": round(st.elapsed, 3),
            "load_seconds": round(load, 3),
            "states_per_second": round(st.states_per_second), "peak_rss_mb": round(rss1 / 1024, 1),
            "bytes_per_state": round((rss1 - rss0) * 1024 / max(st.states, 1)),
            "findings": len(result.findings)}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """`measure(spec)` in a fresh interpreter (so that its peak RSS is its own)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                         env=env, cwd=ROOT / "benchmarks", check=True)
    return json.loads(out.stdout)


# --- SPIN --------------------------------------------------------------------------------------


def spin(width: int) -> dict[str, Any] | str:
    """SPIN's BFS of the anchor model (emulated-counter, no late PMI) at `width` bits, built
    as run-seed-spin.sh builds it; or why it could not run."""
    if not ANCHOR.is_file() or shutil.which("spin") is None or shutil.which("gcc") is None:
        return "spin, gcc or the anchor model is missing"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ANCHOR, tmp)
        mask = (1 << width) - 1
        subprocess.run(["spin", "-o2", f"-DMASK={mask}", "-DDESIGN=1", "-DLATE_PMI=0", "-DMINP=1", "-a", "seed.pml"],
                       cwd=tmp, capture_output=True, check=True)
        subprocess.run(["gcc", "-O2", "-DSAFETY", "-DNOREDUCE", "-DBFS", "-o", "pan", "pan.c"], cwd=tmp,
                       capture_output=True, check=True)
        start = time.perf_counter()
        out = subprocess.run(["./pan", "-m10000000", "-w24"], cwd=tmp, capture_output=True, text=True).stdout
        seconds = time.perf_counter() - start
    states = re.search(r"(\d+) states, stored", out)
    errors = re.search(r"errors: (\d+)", out)
    return {"states": int(states.group(1)) if states else None, "errors": int(errors.group(1)) if errors else None,
            "seconds": round(seconds, 3)}


def seed_bounds(width: int) -> dict[str, Any]:
    """The anchor README's closest vpmu bounds at `width` bits."""
    native = [1] if width == 4 else [1 << i for i in range(width)]
    return {"width": width, "gp": 1, "batch": 3, "values": [-2, -3], "depth": 64, "native": native,
            "kinds": ["native", "emulate", "batch", "write-counter"]}


# --- the benchmark -------------------------------------------------------------------------------


def main() -> None:
    results: dict[str, Any] = {"machine": machine_info(), "budget_seconds": BUDGET}
    # compile (or load) the compiled kernel of each design measured below once, so that the
    # first measurement's load time is not a compile
    run({"era": "6.8", "engine": "compiled", "bounds": {"depth": 1}})
    design = f"{ROOT / 'examples' / 'my_design.py'}:SnapshotBeforePerf"
    run({"era": "6.8", "engine": "compiled", "design": design, "bounds": {"depth": 1}})
    seed = []
    for width in range(4, 9):
        row: dict[str, Any] = {"width": width, "spin": spin(width)}
        row["compiled"] = run({"era": "6.8", "engine": "compiled", "bounds": seed_bounds(width)})
        row["kernel"] = run({"era": "6.8", "engine": "kernel", "bounds": seed_bounds(width)})
        if width <= 6:
            row["object"] = run({"era": "6.8", "engine": "object", "bounds": seed_bounds(width)})
        if isinstance(row["spin"], dict):
            row["compiled_over_spin"] = round(row["compiled"]["seconds"] / row["spin"]["seconds"], 2)
            row["kernel_over_spin"] = round(row["kernel"]["seconds"] / row["spin"]["seconds"], 1)
        seed.append(row)
        print(f"seed W={width}: {row}", flush=True)
    results["seed_question"] = seed
    sweep = []
    for gp in (1, 3):
        for depth in range(4, 9):
            r = run({"era": "6.8", "engine": "compiled", "budget": BUDGET, "bounds": {"gp": gp, "depth": depth}})
            sweep.append({"gp": gp, "depth": depth, **r})
            print(f"sweep gp={gp} depth={depth}: {r}", flush=True)
            if r["stopped_by_budget"]:
                break
    results["depth_sweep"] = sweep
    results["user_design_fast_form"] = run({"era": "6.8", "engine": "compiled", "design": design,
                                            "bounds": {"depth": 5}})
    results["default_6_8"] = {e: run({"era": "6.8", "engine": e, "bounds": {"depth": 5}})
                              for e in ("compiled", "kernel", "object")}
    results["counters_2_1_depth_8"] = run({"era": "6.8", "engine": "compiled", "budget": BUDGET,
                                           "bounds": {"gp": 2, "fixed": 1, "depth": 8}})
    print(f"other targets: {results['user_design_fast_form']}, {results['default_6_8']}, "
          f"{results['counters_2_1_depth_8']}", flush=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(json.loads(sys.argv[2]))))
    else:
        main()
