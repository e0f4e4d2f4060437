"""Benchmark the compact step compiled by numba against the same code in Python (issue 14).

(a) Compile time, in fresh processes: with an empty numba cache (the first run ever) and
    with the cache that run left (`cache=True`): importing numba, building the hooks of the
    design's fast form (`compiled_fast`), and the first call of the compiled step.
(b) Time per transition over every transition of a space (the seed question's bounds at W=4
    and W=6, exhausted; KVM 6.8's default bounds to depth 4): `Kernel.step` (Python, decoded
    observation), `step_row` on lists (Python, rows), the compiled step called from Python
    once per transition, and from an @njit loop over all of them.

Run: .venv/bin/python benchmarks/bench_kstep.py   (about a minute; prints one JSON object)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

_COMPILE = """
import json, time
t0 = time.perf_counter()
import numba, numpy as np
t1 = time.perf_counter()
from vpmu.designs import EmulatedCounterFast
from vpmu.explore.compact.kjit import compiled_fast, jit_step_row
from vpmu.explore.compact.layout import OBS_LEN, SCRATCH_LEN, params_len
step = jit_step_row()
t2 = time.perf_counter()
hooks = compiled_fast(EmulatedCounterFast())
t3 = time.perf_counter()
z = lambda n: np.zeros(n, dtype=np.int64)
step(z(20), z(4), z(params_len(1)), z(SCRATCH_LEN), z(OBS_LEN), *hooks)
t4 = time.perf_counter()
print(json.dumps({"import_numba": t1 - t0, "jit_step_row": t2 - t1, "compiled_fast": t3 - t2, "first_call": t4 - t3,
                  "cache_hits": step.stats.cache_hits.total(), "cache_misses": step.stats.cache_misses.total()}))
"""


def compile_times() -> dict[str, Any]:
    """Compile times in fresh processes: an empty numba cache, then the one it left."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT / "src"))
        for run in ("cold", "warm"):
            res = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, check=True)
            out[run] = {k: round(v, 3) for k, v in json.loads(res.stdout).items()}
    return out


def transitions(era: str, bounds: Any, depth: int | None = None) -> tuple[Any, list[tuple[Any, ...]]]:
    """Every transition of the BFS from the root (to `depth`, or exhausted)."""
    from vpmu.config import preset
    from vpmu.explore import Target
    from vpmu.explore.compact import Plan, plan

    t = Target(bounds.fit(preset("intel-v2")), era, None)
    p = plan(replace(t, world=replace(t.world, skid=bounds.skid)), bounds)
    assert isinstance(p, Plan), p
    seen, level, pairs, d = {p.root}, [p.root], [], 0
    while level and (depth is None or d < depth):
        following = []
        for s in level:
            for letter in p.letters:
                child, _ = p.kernel.step(s, letter)
                pairs.append((s, letter))
                if child not in seen:
                    seen.add(child)
                    following.append(child)
        level, d = following, d + 1
    return p, pairs


def per_transition(p: Any, pairs: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Microseconds per transition, best of 3, four ways."""
    import numba
    import numpy as np

    from vpmu.explore.compact.kjit import compiled_step, int64_row
    from vpmu.explore.compact.kstep import step_row
    from vpmu.explore.compact.layout import LETTER_WIDTH, OBS_LEN, SCRATCH_LEN

    cs = compiled_step(p.kernel.fast)
    assert not isinstance(cs, str), cs
    step = cs.step

    @numba.njit
    def step_all(incr: Any, pause: Any, read: Any, write: Any, complete: Any, states: Any, letters: Any, prm: Any,
                 out: Any, obs: Any) -> None:
        """Each transition: its state and letter copied into fixed rows, one step."""
        x = np.zeros(SCRATCH_LEN, dtype=np.int64)
        row, letter = np.zeros(states.shape[1], dtype=np.int64), np.zeros(LETTER_WIDTH, dtype=np.int64)
        for i in range(states.shape[0]):
            for k in range(row.shape[0]):
                row[k] = states[i, k]
            for k in range(LETTER_WIDTH):
                letter[k] = letters[i, k]
            step(row, letter, prm, x, obs, incr, pause, read, write, complete)
            out[i, 0] = row[0]

    states = np.array([int64_row(s) for s, _ in pairs], dtype=np.int64)
    letters = np.array([list(lt) + [0] * (LETTER_WIDTH - len(lt)) for _, lt in pairs], dtype=np.int64)
    prm = np.array(p.kernel.params(), dtype=np.int64)
    out, obs = np.empty_like(states), np.zeros(OBS_LEN, dtype=np.int64)
    hooks = (cs.incr, cs.pause, cs.read, cs.write, cs.complete)
    step_all(*hooks, states, letters, prm, out, obs)
    k, f = p.kernel, p.kernel.fast
    plist, x, orow = k.params(), [0] * SCRATCH_LEN, [0] * OBS_LEN
    x64, o64 = np.zeros(SCRATCH_LEN, dtype=np.int64), np.zeros(OBS_LEN, dtype=np.int64)

    def kernel_step() -> None:
        for s, lt in pairs:
            k.step(s, lt)

    def python_rows() -> None:
        for s, lt in pairs:
            step_row(list(s), lt, plist, x, orow, f.incr, f.pause, f.read, f.write, f.complete)

    def compiled_from_python() -> None:
        for i in range(len(pairs)):
            row = states[i].copy()
            cs(row, letters[i], prm, x64, o64)

    def compiled_loop() -> None:
        step_all(*hooks, states, letters, prm, out, obs)

    res: dict[str, Any] = {"transitions": len(pairs)}
    for name, fn in (("kernel_step_python", kernel_step), ("step_row_python_lists", python_rows),
                     ("compiled_called_from_python", compiled_from_python), ("compiled_njit_loop", compiled_loop)):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        res[f"{name}_us"] = round(best / len(pairs) * 1e6, 3)
    return res


def main() -> None:
    from machine import machine_info

    from vpmu.explore import Bounds

    results: dict[str, Any] = {"machine": machine_info(), "compile_seconds": compile_times()}

    def seed(width: int, native: tuple[int, ...]) -> Bounds:
        """The seed question's bounds (bench_kernel.seed_bounds)."""
        return Bounds(width=width, gp=1, batch=3, values=(-2, -3), depth=64, native=native,
                      kinds=("native", "emulate", "batch", "write-counter"))

    for name, era, b, depth in (("seed_w4", "6.8", seed(4, (1,)), None),
                                ("seed_w6", "6.8", seed(6, tuple(1 << i for i in range(6))), None),
                                ("default_6.8_depth4", "6.8", Bounds(depth=4), 4)):
        p, pairs = transitions(era, b, depth)
        results[name] = per_transition(p, pairs)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
