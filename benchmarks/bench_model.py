"""Benchmark the KVM model: actions/second on a long random action sequence, and a
kvm-unit-tests-sized native loop of 10 million instructions with counters near overflow
(native runs advance perf counts arithmetically, so the cost is O(overflows)).

Run: .venv/bin/python benchmarks/bench_model.py   (writes benchmarks/results/model.json)
"""

from __future__ import annotations

import json
import platform
import random
import time
from pathlib import Path

from vpmu import msrs as M
from vpmu.actions import (
    Batch,
    ClearFilter,
    Cpuid,
    Emulate,
    Hlt,
    HostWrmsr,
    Insn,
    Native,
    Rdmsr,
    Rdpmc,
    SetFilter,
    Wrmsr,
)
from vpmu.config import preset
from vpmu.world import World

OUT = Path(__file__).resolve().parent / "results" / "model.json"


def random_actions(n: int, seed: int = 0) -> list[object]:
    rng = random.Random(seed)
    near = lambda: rng.choice([rng.randrange(1 << 48), (1 << 48) - rng.randrange(1, 8)])  # noqa: E731
    sel = lambda: rng.choice([0xC0, 0xC4, 0x3C]) | rng.choice([0x530000, 0x430000, 0x410000, 0])  # noqa: E731
    makers = [
        lambda: Wrmsr(M.IA32_PERFEVTSEL0 + rng.randrange(4), sel()),
        lambda: Wrmsr(M.IA32_A_PMC0 + rng.randrange(4), near()),
        lambda: Wrmsr(M.IA32_FIXED_CTR_CTRL, rng.choice([0, 0xB, 0xBB, 0x333])),
        lambda: Wrmsr(M.IA32_PERF_GLOBAL_CTRL, rng.choice([0, 0xF, 0x7_0000_000F])),
        lambda: Wrmsr(M.IA32_PERF_GLOBAL_OVF_CTRL, rng.choice([0, 0xF, 0x7_0000_000F])),
        lambda: Rdmsr(rng.choice([M.IA32_A_PMC0, M.IA32_PERF_GLOBAL_STATUS])),
        lambda: Rdpmc(rng.randrange(4)),
        lambda: Native(rng.randrange(1, 5000), rng.randrange(100), rng.choice([0, 3])),
        lambda: Native(rng.randrange(1, 5000), 0, 0, hold_pmi=True),
        lambda: Cpuid(host_pmi=rng.choice(["before-handler", "after-handler"])),
        lambda: Emulate(tuple(Insn(rng.random() < 0.3) for _ in range(rng.randrange(1, 5)))),
        lambda: Batch(tuple(Insn(rng.random() < 0.3) for _ in range(rng.randrange(1, 20)))),
        lambda: Hlt(),
        lambda: SetFilter("deny", (0xC0,)),
        lambda: ClearFilter(),
    ]
    return [rng.choice(makers)() for _ in range(n)]


def bench_random(era: str, n: int) -> dict[str, float]:
    actions = random_actions(n)
    world = World(preset("intel-v2"), era)
    t0 = time.perf_counter()
    for a in actions:
        world.step(a)  # type: ignore[arg-type]
    dt = time.perf_counter() - t0
    return {"actions": n, "seconds": round(dt, 4), "actions_per_second": round(n / dt, 1)}


def bench_native(era: str, insns: int = 10_000_000, chunk: int = 1_000_000) -> dict[str, float]:
    world = World(preset("intel-v2"), era)
    setup = [HostWrmsr(M.IA32_PERFEVTSEL0 + i, 0x5300C0 if i % 2 == 0 else 0x5300C4) for i in range(4)]
    setup += [HostWrmsr(M.IA32_FIXED_CTR_CTRL, 0xB), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 0x1_0000_000F)]
    setup += [HostWrmsr(M.IA32_A_PMC0 + i, (1 << 48) - 1000 * (i + 1)) for i in range(4)]
    setup += [HostWrmsr(M.IA32_FIXED_CTR0, (1 << 48) - 5)]
    for a in setup:
        world.step(a)
    t0 = time.perf_counter()
    pmis = signals = steps = 0
    for _ in range(insns // chunk):
        obs = world.step(Native(chunk, branches=chunk // 5))
        pmis += len(obs.pmis)
        signals += len(obs.signals)
        steps += 1
    dt = time.perf_counter() - t0
    return {"instructions": insns, "actions": steps, "overflow_signals": signals, "pmis": pmis,
            "seconds": round(dt, 5), "instructions_per_second": round(insns / dt, 1)}


def bench_sampling(era: str, insns: int = 10_000_000, period: int = 100_000) -> dict[str, float]:
    """A guest sampling every `period` instructions: its PMI handler rewrites the counter and
    unmasks LVTPC (3 actions per sample)."""
    world = World(preset("intel-v2"), era)
    for a in [HostWrmsr(M.IA32_PERFEVTSEL0, 0x5300C0), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1),
              HostWrmsr(M.IA32_A_PMC0, (1 << 48) - period)]:
        world.step(a)
    t0 = time.perf_counter()
    pmis = signals = steps = 0
    done = 0
    while done < insns:
        for a in (Native(period - 2), Wrmsr(M.IA32_A_PMC0, (1 << 48) - period), Wrmsr(M.X2APIC_LVTPC, 0x400)):
            obs = world.step(a)
            pmis += len(obs.pmis)
            signals += len(obs.signals)
            steps += 1
        done += period
    dt = time.perf_counter() - t0
    return {"instructions": done, "actions": steps, "overflow_signals": signals, "pmis": pmis,
            "seconds": round(dt, 4), "instructions_per_second": round(done / dt, 1)}


def main() -> None:
    results = {
        "python": platform.python_version(),
        "random_sequence": {era: bench_random(era, 20_000) for era in ("6.6", "6.9", "mediated")},
        "native_10M": {era: bench_native(era) for era in ("6.6", "6.9", "mediated")},
        "native_sampling_10M": {era: bench_sampling(era) for era in ("6.6", "6.9", "mediated")},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
