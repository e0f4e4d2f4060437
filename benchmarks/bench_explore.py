"""Benchmark the explorer (issue "The explorer", performance section; docs/performance.md).

(a) exhaustive search on the default bounds for KVM 6.6, 6.8, 6.9 and mediated: distinct
    states, transitions, seconds and states/s, in one process and with 2 local workers
    (the hash-partitioned search); the median of REPEATS runs, each started on a quiet
    machine (`machine.wait_quiet`) and recording the CPU time other processes took meanwhile;
(b) time to the first *shrunk* counterexample of each seed bug on 6.6 (lost-overflow,
    guest-visible; spurious-overflow, internal): random search over seeds 0..14, restarts
    taken in small chunks until the kind shows up, then shrunk; and exhaustive search (BFS
    to the depth of the shortest witness, then shrunk);
    and, end to end, explore(mode="random") with its default 2000 restarts;
(c) a Hypothesis RuleBasedStateMachine baseline on the same models, alphabet, set-up prefix,
    depth and checker: time until Hypothesis has found and shrunk each seed bug, and the
    explorer's speedup over it.

Run: .venv/bin/python benchmarks/bench_explore.py   (writes benchmarks/results/explore.json;
about 50 s on the 2-core VM of docs/performance.md)
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from machine import busy_cpu_seconds, machine_info, process_cpu_seconds, wait_quiet

from vpmu.actions import Action
from vpmu.checker import compare
from vpmu.config import preset
from vpmu.explore import (
    Bounds,
    Finding,
    InMemoryExpander,
    LocalBackend,
    Target,
    alphabet,
    bfs,
    counters_in_use,
    explore,
    random_search,
    setup_prefix,
    shrink_finding,
)

OUT = Path(__file__).resolve().parent / "results" / "explore.json"
CFG = preset("intel-v2").with_width(4)
BOUNDS = Bounds()
ERAS = ("6.6", "6.8", "6.9", "mediated")
SEED_BUGS = (("lost-overflow", "guest"), ("spurious-overflow", "internal"))
EXPLORER_SEEDS = range(15)
HYPOTHESIS_SEEDS = range(15)
#: random search takes restarts in chunks this big, then looks for the kind
CHUNK = 10
MAX_RESTARTS = 20_000
HYPOTHESIS_MAX_EXAMPLES = 20_000



def _summary(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 4), "max": round(max(xs), 4), "min": round(min(xs), 4)}


# --- (a) exhaustive throughput ------------------------------------------------------------------


#: Runs of each exhaustive measurement; the table reports the median (one run on a shared
#: 2-core machine can be off by half).
REPEATS = 3


def bench_exhaustive() -> dict[str, Any]:
    out: dict[str, Any] = {}
    pool = LocalBackend(2)
    try:
        # spawn the 2 workers and import vpmu in them before timing
        bfs(pool.expander(Target(CFG, "6.6"), Bounds(depth=1)), 1)
        for era in ERAS:
            target = Target(CFG, era)
            runs = []
            for _ in range(REPEATS):
                quiet = wait_quiet()
                busy0, own0 = busy_cpu_seconds(), time.process_time()
                t0 = time.perf_counter()
                single = bfs(InMemoryExpander(target, BOUNDS), BOUNDS.depth)
                t1 = time.perf_counter()
                busy1, own1 = busy_cpu_seconds(), time.process_time()
                quiet = wait_quiet() and quiet
                workers = list(getattr(pool._pool, "_processes", None) or {})
                busy2, own2, w2 = busy_cpu_seconds(), time.process_time(), process_cpu_seconds(workers)
                t2 = time.perf_counter()
                two = bfs(pool.expander(target, BOUNDS), BOUNDS.depth)
                t3 = time.perf_counter()
                busy3, own3, w3 = busy_cpu_seconds(), time.process_time(), process_cpu_seconds(workers)
                assert (single.stats.states, single.stats.transitions) == (two.stats.states, two.stats.transitions)
                runs.append({"seconds": round(t1 - t0, 3), "jobs2_seconds": round(t3 - t2, 3),
                             "jobs2_cpu_seconds": round(own3 - own2 + w3 - w2, 2),
                             # CPU other processes took during each timed run: ~0 on a quiet machine
                             "others_cpu_seconds": round(busy1 - busy0 - (own1 - own0), 2),
                             "jobs2_others_cpu_seconds": round(busy3 - busy2 - (own3 - own2) - (w3 - w2), 2),
                             "quiet_before": quiet})
            one = statistics.median(r["seconds"] for r in runs)
            two_s = statistics.median(r["jobs2_seconds"] for r in runs)
            out[era] = {
                "states": single.stats.states,
                "transitions": single.stats.transitions,
                "seconds": one,
                "states_per_second": round(single.stats.states / one, 1),
                "transitions_per_second": round(single.stats.transitions / one, 1),
                "jobs2_seconds": two_s,
                "jobs2_states_per_second": round(two.stats.states / two_s, 1),
                "jobs2_speedup": round(one / two_s, 2),
                "runs": runs,
                "kinds_found": sorted(f"{f.kind}/{f.visibility}" for f in single.findings),
            }
    finally:
        pool.close()
    return out


# --- (b) time to the first shrunk counterexample ------------------------------------------------


def _of_kind(findings: list[Finding], kind: str, vis: str) -> Finding | None:
    return next((f for f in findings if (f.kind, f.visibility) == (kind, vis)), None)


def explorer_random_first(target: Target, kind: str, vis: str, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for lo in range(0, MAX_RESTARTS, CHUNK):
        found = _of_kind(random_search(target, BOUNDS, seed, range(lo, lo + CHUNK)).findings, kind, vis)
        if found is not None:
            t1 = time.perf_counter()
            shrunk = shrink_finding(target, found)
            t2 = time.perf_counter()
            return {"seed": seed, "seconds": round(t2 - t0, 4), "search_seconds": round(t1 - t0, 4),
                    "shrink_seconds": round(t2 - t1, 4), "restarts_at_most": lo + CHUNK,
                    "found_steps": len(found.suffix), "shrunk_steps": len(shrunk.suffix)}
    return {"seed": seed, "seconds": None, "restarts_at_most": MAX_RESTARTS}


def explorer_exhaustive_first(target: Target, kind: str, vis: str) -> dict[str, Any]:
    """BFS level by level (iterative deepening: each depth searched from scratch, so this
    is an upper bound on a BFS that would stop at the first hit), then shrink."""
    t0 = time.perf_counter()
    for depth in range(1, BOUNDS.depth + 1):
        found = _of_kind(bfs(InMemoryExpander(target, Bounds(depth=depth)), depth).findings, kind, vis)
        if found is not None:
            t1 = time.perf_counter()
            shrunk = shrink_finding(target, found)
            t2 = time.perf_counter()
            return {"seconds": round(t2 - t0, 4), "search_seconds": round(t1 - t0, 4),
                    "shrink_seconds": round(t2 - t1, 4), "depth": depth, "shrunk_steps": len(shrunk.suffix)}
    return {"seconds": None}


def explore_default(target: Target) -> dict[str, Any]:
    """What `vpmu explore --mode random` does: 2000 restarts, then one cause per signature shrunk."""
    runs = []
    for seed in range(5):
        t0 = time.perf_counter()
        report = explore(target, BOUNDS, mode="random", seed=seed)
        runs.append({"seed": seed, "seconds": round(time.perf_counter() - t0, 4),
                     "causes": len(report.counterexamples),
                     "seed_bugs_found": sum(_of_kind(report.counterexamples, k, v) is not None for k, v in SEED_BUGS)})
    return {"restarts": 2000, "runs": runs, "seconds": _summary([r["seconds"] for r in runs])}


# --- (c) the Hypothesis baseline ----------------------------------------------------------------


def hypothesis_machine(target: Target, kind: str, vis: str, log: dict[str, Any]) -> type[RuleBasedStateMachine]:
    """The same search as the explorer's random mode, as a Hypothesis state machine: fresh
    reference and KVM machines, the set-up prefix, then up to `depth` steps each drawn from
    the explorer's alphabet; after every step the whole trace is judged open-ended and the
    machine fails on an untolerated divergence of (kind, vis)."""
    cfg, options = target.cfg, target.checker_options
    prefix = setup_prefix(cfg, counters_in_use(cfg, BOUNDS))
    letters = [a for _, a in alphabet(cfg, BOUNDS)]

    class VpmuMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            log["examples"] += 1
            self.ref, self.kvm = target.machines()
            self.suffix: list[Action] = []
            self.ref_obs = [self.ref.step(a) for a in prefix]
            self.kvm_obs = [self.kvm.step(a) for a in prefix]

        @rule(action=st.sampled_from(letters))
        def step(self, action: Action) -> None:
            self.suffix.append(action)
            self.ref_obs.append(self.ref.step(action))
            self.kvm_obs.append(self.kvm.step(action))
            divs = compare(cfg, self.ref_obs, self.kvm_obs, options, open_end=True)
            if any(not d.tolerated and (d.kind, d.visibility) == (kind, vis) for d in divs):
                if log["first_seconds"] is None:
                    log["first_seconds"] = time.perf_counter() - log["start"]
                    log["first_steps"] = len(self.suffix)
                    log["examples_to_first"] = log["examples"]
                log["last_failure"] = tuple(self.suffix)
                raise AssertionError(f"{kind} ({vis}) after {self.suffix}")

    return VpmuMachine


def hypothesis_first(target: Target, kind: str, vis: str, seed: int) -> dict[str, Any]:
    log: dict[str, Any] = {"examples": 0, "first_seconds": None, "first_steps": None, "examples_to_first": None,
                           "last_failure": None, "start": time.perf_counter()}
    machine = hypothesis_seed(seed)(hypothesis_machine(target, kind, vis, log))
    config = settings(max_examples=HYPOTHESIS_MAX_EXAMPLES, stateful_step_count=BOUNDS.depth, deadline=None,
                      database=None, derandomize=False, verbosity=Verbosity.quiet, print_blob=False,
                      phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink),
                      suppress_health_check=list(HealthCheck))
    log["start"] = time.perf_counter()
    failed = False
    try:
        run_state_machine_as_test(machine, settings=config)
    except AssertionError:
        failed = True
    seconds = time.perf_counter() - log["start"]
    shrunk = log["last_failure"]
    return {"seed": seed, "found": failed, "seconds": round(seconds, 4) if failed else None,
            "first_seconds": None if log["first_seconds"] is None else round(log["first_seconds"], 4),
            "examples_to_first": log["examples_to_first"], "examples_total": log["examples"],
            "first_steps": log["first_steps"], "shrunk_steps": None if shrunk is None else len(shrunk)}


# --- the whole benchmark ------------------------------------------------------------------------


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    result = fn()
    print(f"  {label}: {time.perf_counter() - t0:.1f} s", flush=True)
    return result


def _each_seed(fn: Callable[[Target, str, str, int], dict[str, Any]], target: Target, kind: str, vis: str,
               seeds: range) -> list[dict[str, Any]]:
    return [fn(target, kind, vis, s) for s in seeds]


def main() -> None:
    t_start = time.perf_counter()
    target = Target(CFG, "6.6")
    results: dict[str, Any] = {
        "machine": machine_info(),
        "bounds": BOUNDS.to_dict(),
        "cpu_preset": "intel-v2",
    }
    print("benchmarking the explorer (docs/performance.md)", flush=True)
    results["exhaustive"] = _timed("exhaustive, 4 eras", bench_exhaustive)
    first: dict[str, Any] = {}
    for kind, vis in SEED_BUGS:
        name = f"{kind}/{vis}"
        runs = _timed(f"explorer random, {name}",
                      partial(_each_seed, explorer_random_first, target, kind, vis, EXPLORER_SEEDS))
        bfs = _timed(f"explorer exhaustive, {name}", partial(explorer_exhaustive_first, target, kind, vis))
        hyp = _timed(f"hypothesis, {name}", partial(_each_seed, hypothesis_first, target, kind, vis, HYPOTHESIS_SEEDS))
        ours = [r["seconds"] for r in runs if r["seconds"] is not None]
        theirs = [r["seconds"] for r in hyp if r["seconds"] is not None]
        entry: dict[str, Any] = {
            "explorer_random": {"runs": runs, "found": len(ours), "of": len(runs),
                                "seconds": _summary(ours) if ours else None},
            "explorer_exhaustive": bfs,
            "hypothesis": {"runs": hyp, "found": len(theirs), "of": len(hyp),
                           "seconds": _summary(theirs) if theirs else None},
        }
        if ours and theirs:
            entry["speedup_median"] = {
                "random": round(statistics.median(theirs) / statistics.median(ours), 1),
                "exhaustive": (round(statistics.median(theirs) / bfs["seconds"], 1)
                               if bfs.get("seconds") else None),
            }
        first[name] = entry
    results["first_shrunk_counterexample_6.6"] = first
    results["explore_random_default_6.6"] = _timed("explore(mode=random), 5 seeds", lambda: explore_default(target))
    results["total_seconds"] = round(time.perf_counter() - t_start, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
