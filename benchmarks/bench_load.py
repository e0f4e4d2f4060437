"""Benchmark: loading large scenario files (issue 17's target: 100,000 actions in < 2 s and
< 300 MB).

Writes scenario files of 25,000 to 100,000 actions (native runs, guest and host MSR accesses,
RDPMC, CPUID, emulated batches, in turn) and a 100,000-instruction batch, loads each with
`vpmu.scenario.load_scenario` (libyaml events -> plain data with lines -> validated
`Scenario`) in a fresh process, and records the time (best of 3), the peak of Python's
allocations (tracemalloc, a separate load) and the process's maximum RSS (imports included).

Run: .venv/bin/python benchmarks/bench_load.py   (writes benchmarks/results/load.json; ~30 s)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from machine import machine_info

OUT = Path(__file__).resolve().parent / "results" / "load.json"
STEPS = ("  - native: 5", "  - wrmsr: {msr: IA32_PMC0, value: 0x10}", "  - rdpmc: {ecx: 0}", "  - cpuid",
         "  - emulate: [insn, {rdmsr: {msr: 0xc1}}]", "  - host_wrmsr: {msr: IA32_PERFEVTSEL0, value: 0x5300C0}")


def _actions_file(n: int, where: Path) -> Path:
    path = where / f"actions-{n}.yaml"
    lines = ["name: big", "cpu: intel-v2", "steps:"] + [STEPS[i % len(STEPS)] for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _batch_file(n: int, where: Path) -> Path:
    path = where / f"batch-{n}.yaml"
    path.write_text("name: batch\ncpu: intel-v2\nsteps:\n  - batch:\n" + "      - insn\n" * n, encoding="utf-8")
    return path


_CHILD = """
import json, resource, sys, time, tracemalloc
from vpmu.scenario import load_scenario
times = []
for _ in range(3):
    t0 = time.perf_counter()
    scn = load_scenario(sys.argv[1])
    times.append(time.perf_counter() - t0)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
tracemalloc.start()
load_scenario(sys.argv[1])
peak = tracemalloc.get_traced_memory()[1] / 1e6
print(json.dumps({"actions": len(scn.actions), "seconds": round(min(times), 3), "max_rss_mb": round(rss, 1),
                  "peak_alloc_mb": round(peak, 1)}))
"""


def _measure(path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], check=True, capture_output=True, text=True)
    return {"file": path.name, "bytes": path.stat().st_size, **json.loads(out.stdout)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        rows = [_measure(_actions_file(n, where)) for n in (25_000, 50_000, 100_000)]
        rows.append(_measure(_batch_file(100_000, where)))
    target = next(r for r in rows if r["file"] == "actions-100000.yaml")
    out = {"machine": machine_info(), "loads": rows, "target": {"actions": 100_000, "seconds": 2.0, "mb": 300},
           "meets_target": target["seconds"] < 2.0 and target["max_rss_mb"] < 300}
    OUT.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    for r in rows:
        print(f"{r['file']:22} {r['bytes'] / 1e6:5.1f} MB, {r['actions']:6} actions: {r['seconds']:.2f}s, "
              f"max RSS {r['max_rss_mb']} MB, peak {r['peak_alloc_mb']} MB allocated")
    print(f"target (100,000 actions < 2 s, < 300 MB RSS) met: {out['meets_target']}")


if __name__ == "__main__":
    main()
