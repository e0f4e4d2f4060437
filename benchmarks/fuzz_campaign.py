"""The fuzz campaign: mutated scenario files and abusive command lines against `vpmu`.

Every abusive command line of tests/fuzzing.py once, then mutations of the built-in and
conformance scenarios (hostile values, structural edits, tags, alias bombs, deep nesting,
binary garbage, BOMs), each run in a worker process with a time limit and a 2 GiB address
space; prints `N cases: C internal errors, H hangs, B bad messages` and writes
benchmarks/results/fuzz.json (the figures and the first failures). docs/reliability.md
records the latest figures.

Run: .venv/bin/python benchmarks/fuzz_campaign.py --cases 10000 [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from machine import machine_info  # noqa: E402

from fuzzing import Case, cases, judge, summary  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "fuzz.json"
SECONDS = 10.0
MEMORY = 2 << 30
_WORKDIR: Path | None = None


def _init() -> None:
    global _WORKDIR
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    _WORKDIR = Path(tempfile.mkdtemp(prefix="vpmu-fuzz-"))


def _one(case: tuple[int, Case]) -> tuple[int, str, str, float]:
    i, (args, data) = case
    assert _WORKDIR is not None
    t0 = time.perf_counter()
    result, first = judge(args, data, _WORKDIR, SECONDS)
    return i, result, first, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    opts = ap.parse_args()
    all_cases = list(cases(opts.cases, opts.seed))
    counts: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    slowest = 0.0
    t0 = time.perf_counter()
    with get_context("fork").Pool(opts.jobs, initializer=_init, maxtasksperchild=500) as pool:
        for n, (i, result, first, seconds) in enumerate(pool.imap_unordered(_one, enumerate(all_cases), chunksize=8)):
            counts[result] += 1
            slowest = max(slowest, seconds)
            if result != "ok" and len(failures) < 50:
                args, data = all_cases[i]
                failures.append({"case": i, "verdict": result, "args": args, "stderr": first,
                                 "file_head": (data or b"")[:300].decode("utf-8", "backslashreplace")})
            if (n + 1) % 1000 == 0:
                print(f"  {summary(counts, n + 1)} ({time.perf_counter() - t0:.0f}s)", flush=True)
    line = summary(counts, len(all_cases))
    OUT.write_text(json.dumps({"machine": machine_info(), "cases": len(all_cases), "seed": opts.seed,
                               "verdicts": dict(sorted(counts.items())), "summary": line,
                               "slowest_case_seconds": round(slowest, 2),
                               "elapsed_seconds": round(time.perf_counter() - t0, 1),
                               "failures": failures}, indent=2) + "\n", encoding="utf-8")
    print(line)
    for f in failures[:20]:
        print(f"  {f['verdict']}: {str(f['args'])[:150]} -> {f['stderr'][:200]}")


if __name__ == "__main__":
    main()
