"""Benchmark: the checker and native runs cost O(overflows) (issue 17, docs/reliability.md).

A 4-bit counter on KVM 6.6, n/4 rounds of: a 63-instruction native run (4 wraps, PMIs), an
emulated instruction, the guest's status clear and LVTPC unmask, for n = 2k, 4k, 8k, 16k
overflows: the time of both machines, the checker's time and the index entries it examined
(`vpmu.checker.check_work`). Then 10^12 native instructions with a 3-bit host counter (no
overflow) and one native run of 2^64 - 1 instructions on a 48-bit counter (65,536 overflows).

Run: .venv/bin/python benchmarks/bench_overflows.py   (writes benchmarks/results/overflows.json;
about a minute)
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

from machine import machine_info

from vpmu import actions as A
from vpmu import msrs as M
from vpmu.checker import check_work, compare
from vpmu.config import preset
from vpmu.explore import setup_prefix
from vpmu.run import run_actions, start_machines
from vpmu.world import World, WorldOptions

OUT = Path(__file__).resolve().parent / "results" / "overflows.json"


def _rounds(n: int) -> dict[str, Any]:
    cfg = preset("intel-v2").with_width(4)
    acts = list(setup_prefix(cfg, [0]))
    for _ in range(n // 4):
        acts += [A.Native(63), A.Emulate((A.Insn(),)), A.Wrmsr(M.IA32_PERF_GLOBAL_OVF_CTRL, 1),
                 A.Wrmsr(M.X2APIC_LVTPC, 0x400)]
    gc.collect()
    ref, kvm = start_machines(cfg, "6.6")
    t0 = time.perf_counter()
    ref_obs = [ref.step(a) for a in acts]
    kvm_obs = [kvm.step(a) for a in acts]
    t1 = time.perf_counter()
    checks = []
    for _ in range(3):  # best of 3: the check is short, a loaded machine is not
        t = time.perf_counter()
        divs = compare(cfg, ref_obs, kvm_obs)
        checks.append(time.perf_counter() - t)
    wraps = sum(1 for o in ref_obs for s in o.signals if s.source == "wrap")
    work = check_work(cfg, ref_obs, kvm_obs)
    return {"overflows": wraps, "steps": len(acts), "run_seconds": round(t1 - t0, 3),
            "check_seconds": round(min(checks), 3), "check_work": work, "work_per_overflow": round(work / wraps, 2),
            "divergences": len(divs)}


def _small_host_counter() -> dict[str, Any]:
    cfg = preset("intel-v2")
    world = World(cfg, "6.8", None, WorldOptions(host_counter_width=3))
    for a in setup_prefix(cfg, [0]):
        world.step(a)
    t0 = time.perf_counter()
    world.step(A.Native(10**12))
    return {"instructions": 10**12, "host_counter_width": 3, "seconds": round(time.perf_counter() - t0, 4)}


def _long_native() -> dict[str, Any]:
    cfg = preset("intel-v2")
    acts = [*setup_prefix(cfg, [0]), A.Native((1 << 64) - 1)]
    t0 = time.perf_counter()
    res = run_actions(cfg, "6.8", acts)
    wraps = sum(1 for o in res.ref_obs for s in o.signals if s.source == "wrap")
    return {"instructions": (1 << 64) - 1, "overflows": wraps, "seconds": round(time.perf_counter() - t0, 3)}


def main() -> None:
    rounds = [_rounds(n) for n in (2000, 4000, 8000, 16000)]
    out = {"machine": machine_info(), "rounds": rounds, "small_host_counter": _small_host_counter(),
           "long_native": _long_native()}
    OUT.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    for r in rounds:
        print(f"{r['overflows']:6} overflows: run {r['run_seconds']:.2f}s, check {r['check_seconds']:.3f}s, "
              f"{r['work_per_overflow']} index entries per overflow")
    print(f"10^12 instructions, 3-bit host counter: {out['small_host_counter']['seconds']}s")
    print(f"2^64-1 instructions, {out['long_native']['overflows']} overflows: {out['long_native']['seconds']}s")


if __name__ == "__main__":
    main()
