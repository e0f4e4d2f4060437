"""Benchmark the explorer over workers: replayed units in this process, the local process
backend with 2 workers and the Ray backend with 1 and 2 workers, exhaustive (default bounds,
KVM 6.6) and random (swarm) search, with the per-level times of the level-synchronous
exhaustive search, where a level's time goes
(replay, shipping keys, driver work), the driver's memory per visited state, and how far a
time budget is overrun. docs/scaling.md explains the numbers. Each timed part starts once the
machine has been idle for 3 s (`machine.wait_quiet`): on a shared 2-core machine a
partitioned search measured under other load is slower than one process.

Run: .venv/bin/python benchmarks/bench_scaling.py   (writes benchmarks/results/scaling.json;
needs the ray extra: pip install -e '.[ray]'; a few minutes on 2 cores, mostly waiting)
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from machine import machine_info, wait_quiet

from vpmu.config import preset
from vpmu.explore import (
    Backend,
    Bounds,
    Expander,
    InMemoryExpander,
    Judge,
    LocalBackend,
    RandomJob,
    ReplayExpander,
    Stats,
    Target,
    alphabet,
    bfs,
    counters_in_use,
    expand_unit,
    explore,
    merge_random,
    owner_of,
    random_search,
    run_unit,
    setup_prefix,
    split_restarts,
    state_digest,
)
from vpmu.explore.ray_backend import RayBackend

OUT = Path(__file__).resolve().parent / "results" / "scaling.json"
TARGET = Target(preset("intel-v2").with_width(4), "6.6")
BOUNDS = Bounds()
RESTARTS = 20_000



def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def exhaustive_single() -> dict[str, Any]:
    wait_quiet()
    t0 = time.perf_counter()
    result = bfs(InMemoryExpander(TARGET, BOUNDS), BOUNDS.depth)
    wall = time.perf_counter() - t0
    return {"states": result.stats.states, "transitions": result.stats.transitions, "seconds": round(wall, 3),
            "states_per_second": _rate(result.stats.states, wall)}


def exhaustive_levels(expander_for: Callable[[Bounds], Expander[Any, Any]]) -> dict[str, Any]:
    bfs(expander_for(Bounds(depth=1)), 1)  # warm up
    levels: list[dict[str, Any]] = []
    last = [time.perf_counter(), 0, 0]

    def progress(stats: Stats, found: int) -> None:
        now = time.perf_counter()
        levels.append({"depth": stats.depth_reached, "new_states": stats.states - last[1],
                       "transitions": stats.transitions - last[2], "seconds": round(now - last[0], 3)})
        last[:] = [now, stats.states, stats.transitions]

    wait_quiet()
    t0 = last[0] = time.perf_counter()
    result = bfs(expander_for(BOUNDS), BOUNDS.depth, progress=progress)
    wall = time.perf_counter() - t0
    return {"states": result.stats.states, "transitions": result.stats.transitions, "seconds": round(wall, 3),
            "states_per_second": _rate(result.stats.states, wall), "levels": levels}


def random_single() -> dict[str, Any]:
    wait_quiet()
    t0 = time.perf_counter()
    result = random_search(TARGET, BOUNDS, 0, range(RESTARTS))
    wall = time.perf_counter() - t0
    return {"restarts": RESTARTS, "states": result.stats.states, "seconds": round(wall, 3),
            "states_per_second": _rate(result.stats.states, wall)}


def random_parts(backend: Backend) -> dict[str, Any]:
    # warm up first: workers started, vpmu imported
    backend.random_parts([RandomJob(TARGET, BOUNDS, 0, r) for r in split_restarts(10, backend.partitions)])
    wait_quiet()
    t0 = time.perf_counter()
    jobs = [RandomJob(TARGET, BOUNDS, 0, r) for r in split_restarts(RESTARTS, backend.partitions)]
    result = merge_random(backend.random_parts(jobs))
    wall = time.perf_counter() - t0
    return {"restarts": RESTARTS, "states": result.stats.states, "seconds": round(wall, 3),
            "states_per_second": _rate(result.stats.states, wall)}


def level_costs() -> list[dict[str, Any]]:
    """Where a partitioned level's time goes, in one process: expanding the units (and the
    part of it spent replaying index paths), pickling the expansions as a worker would ship
    them, and the driver's serial work (owner_of on every digest, sorting and admission)."""
    prefix = setup_prefix(TARGET.cfg, counters_in_use(TARGET.cfg, BOUNDS))
    letters = [a for _, a in alphabet(TARGET.cfg, BOUNDS)]
    judge = Judge(TARGET)
    visited = {state_digest(judge.root(prefix)[0].key())}
    frontier: list[tuple[int, ...]] = [()]
    out = []
    wait_quiet()
    for depth in range(1, BOUNDS.depth + 1):
        t0 = time.perf_counter()
        expansions = expand_unit(TARGET, BOUNDS, frontier)
        t1 = time.perf_counter()
        for path in frontier:
            judge.root(prefix + tuple(letters[i] for i in path))
        t2 = time.perf_counter()
        blob = pickle.dumps(expansions)
        t3 = time.perf_counter()
        pickle.loads(blob)
        t4 = time.perf_counter()
        for _, key, _ in expansions:
            if key is not None:
                owner_of(key, 2)
        t5 = time.perf_counter()
        expansions.sort(key=lambda e: e[0])
        nxt = []
        for path, key, _ in expansions:
            if key is not None and key not in visited:
                visited.add(key)
                nxt.append(path)
        t6 = time.perf_counter()
        out.append({"depth": depth, "frontier": len(frontier), "transitions": len(expansions),
                    "expand_seconds": round(t1 - t0, 3), "of_which_replay_seconds": round(t2 - t1, 3),
                    "pickled_mb": round(len(blob) / 1e6, 2), "pickle_seconds": round(t3 - t2, 3),
                    "unpickle_seconds": round(t4 - t3, 3), "owner_of_seconds": round(t5 - t4, 3),
                    "admit_seconds": round(t6 - t5, 3)})
        frontier = nxt
    return out


def visited_bytes_per_state() -> float:
    """Driver memory per distinct state (depth 4): the keys as the driver holds them, unpickled."""
    frontier: list[tuple[int, ...]] = [()]
    seen: set[Any] = set()
    for _ in range(4):
        nxt = []
        for path, key, _ in expand_unit(TARGET, BOUNDS, frontier):
            if key is not None and key not in seen:
                seen.add(key)
                nxt.append(path)
        frontier = nxt
    blob = pickle.dumps(list(seen))
    tracemalloc.start()
    held = set(pickle.loads(blob))
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return round(used / len(held), 1)


def budget_overrun(make: Callable[[], Backend]) -> dict[str, Any]:
    """`--time-budget 3` on a search far too big for it (6.8, depth 8): how long it runs."""
    backend = make()
    try:
        wait_quiet()
        t0 = time.perf_counter()
        report = explore(Target(TARGET.cfg, "6.8"), Bounds(depth=8), mode="exhaustive", time_budget=3.0,
                         backend=backend)
        wall = time.perf_counter() - t0
    finally:
        backend.close()
    stats = report.searches[0].stats
    return {"budget_seconds": 3.0, "search_seconds": round(stats.elapsed, 3), "with_shrinking_seconds": round(wall, 3),
            "depth_reached": stats.depth_reached, "stopped_by_budget": stats.stopped_by_budget}


def with_backend(make: Callable[[], Backend]) -> dict[str, Any]:
    t0 = time.perf_counter()
    backend = make()
    started = time.perf_counter() - t0
    try:
        return {"start_seconds": round(started, 3),
                "exhaustive": exhaustive_levels(partial(backend.expander, TARGET)),
                "random": random_parts(backend)}
    finally:
        backend.close()


def main() -> None:
    results: dict[str, Any] = {
        "machine": machine_info(),
        "target": {"cpu": "intel-v2", "width": BOUNDS.width, "era": TARGET.era, "bounds": BOUNDS.to_dict()},
        "single_process": {"exhaustive": exhaustive_single(), "random": random_single()},
        "local": {},
        "ray": {},
        "level_costs_1_process": level_costs(),
        "visited_bytes_per_state": visited_bytes_per_state(),
    }
    # the unit expander with one partition, its units run in this process: the cost of replay
    results["units_in_process"] = exhaustive_levels(
        lambda bounds: ReplayExpander(TARGET, bounds, 1, lambda units: [run_unit(u) for u in units]))
    results["local"]["2"] = with_backend(partial(LocalBackend, 2))
    results["time_budget"] = {"local_2": budget_overrun(lambda: LocalBackend(2))}
    if importlib.util.find_spec("ray") is not None:
        for workers in (1, 2):
            results["ray"][str(workers)] = with_backend(partial(RayBackend, num_cpus=workers))
        results["time_budget"]["ray_2"] = budget_overrun(lambda: RayBackend(num_cpus=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
