"""What every benchmark result records about the machine it ran on."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()}


def busy_cpu_seconds() -> float:
    """CPU-seconds every core of the machine has spent busy since boot (/proc/stat; 0 where
    there is none): the difference over a timed run, less the run's own CPU time, is what
    other work took from it."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU-seconds of live processes `pids` (/proc/PID/stat), e.g. a pool's workers."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def wait_quiet(busy_below: float = 0.08, settle: int = 3, limit: float = 900.0) -> bool:
    """Wait until the machine's cores have been less than `busy_below` busy for `settle`
    consecutive seconds (at most `limit` seconds); whether it got there. A benchmark on a
    shared machine calls it before each timed run."""
    cores = os.cpu_count() or 1
    start, calm = time.monotonic(), 0
    while time.monotonic() - start < limit:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        calm = calm + 1 if (busy_cpu_seconds() - before) / cores < busy_below else 0
        if calm >= settle:
            return True
    return False
