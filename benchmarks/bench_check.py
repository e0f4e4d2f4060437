"""Benchmark `vpmu check` at its default bounds: upstream 6.8 against itself, a pure refactor
and three buggy patches (tests/designs/patches.py), each as one `vpmu check` process; the issue
asks that every buggy one exits 1 within 60 s on a 2-core machine. Each case starts once the
machine has been idle for 3 s (`machine.wait_quiet`).

Run: .venv/bin/python benchmarks/bench_check.py   (writes benchmarks/results/check.json)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from machine import machine_info, wait_quiet

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "check.json"
PATCHES = ROOT / "tests" / "designs" / "patches.py"
CASES = [
    ("emulated-counter", 0),
    (f"{PATCHES}:RefactoredEmulated", 0),
    (f"{PATCHES}:ForgetClearEmulated", 1),
    (f"{PATCHES}:HardcodedWidth", 1),
    (f"{PATCHES}:NoReprogramRequest", 1),
]


def main() -> None:
    rows = []
    for design, expected in CASES:
        quiet = wait_quiet()
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "vpmu.cli", "check", design, "--kvm", "6.8", "--json",
                               "--no-save"], capture_output=True, text=True, cwd=ROOT, check=False)
        wall = time.perf_counter() - start
        doc = json.loads(proc.stdout)
        rows.append({"design": design.rsplit(":", 1)[-1], "exit": proc.returncode, "expected_exit": expected,
                     "wall_seconds": round(wall, 2), "regressions": len(doc["regressions"]),
                     "states": doc["explore"]["states"], "explore_seconds": doc["explore"]["elapsed_seconds"],
                     "engine": doc["engine"], "quiet_before": quiet})
        print(f"{rows[-1]['design']:22} exit {proc.returncode} (expected {expected})  {wall:6.1f} s  "
              f"{rows[-1]['regressions']} regressions, {rows[-1]['states']:,} states")
    OUT.write_text(json.dumps({"machine": machine_info(), "runs": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
