"""Processes a test started: their descendants (from /proc), waiting for them to be gone, and
interrupting a running `vpmu` search the way a terminal's Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: The child of the interrupt tests: `vpmu ARGS`, with a readiness file written when the
#: first batch of units has been handed to the workers (so the test interrupts a search
#: that is running, on a machine however loaded, without guessing a delay).
READY_CHILD = """
import pathlib, sys
from vpmu.explore import backends, ray_backend
def ready(real):
    def gather(self, *args):
        pathlib.Path("ready").touch()
        return real(self, *args)
    return gather
ray_backend.RayBackend._gather = ready(ray_backend.RayBackend._gather)
def run_units(self, units):
    self._executor()  # the workers are up: ready
    pathlib.Path("ready").touch()
    return local_units(self, units)
local_units = backends.LocalBackend._run_units
backends.LocalBackend._run_units = run_units
from vpmu.cli import main
sys.argv = ["vpmu", *sys.argv[1:]]
main()
"""


def interrupt_running_search(tmp_path: Path, args: list[str], worker: str) -> tuple[int, str, dict[int, str]]:
    """Start `vpmu ARGS` in its own session, wait until its units are running (the readiness
    file, then a `worker` process among its descendants), send Ctrl-C to the whole process
    group as a terminal does; its exit code, stderr and every process it had started."""
    src = str(Path(__file__).resolve().parent.parent / "src")  # this checkout's vpmu, from any cwd
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", READY_CHILD, *args], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 300  # a bound for a broken run, not a guess at a delay
    while proc.poll() is None and time.monotonic() < deadline:
        seen.update(descendants(proc.pid))
        if (tmp_path / "ready").exists() and any(worker in cmd for cmd in seen.values()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    assert (tmp_path / "ready").exists(), "no unit was ever handed to the workers"
    seen.update(descendants(proc.pid))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err.decode(), seen


def processes() -> dict[int, tuple[int, str]]:
    """Live (not zombie) processes: pid -> (parent pid, command line)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if state not in "ZX":
            out[int(entry)] = (int(ppid), cmd)
    return out


def descendants(root: int) -> dict[int, str]:
    procs = processes()
    out: dict[int, str] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, cmd) in procs.items():
            if ppid == parent and pid not in out:
                out[pid] = cmd
                todo.append(pid)
    return out


def wait_gone(pids: dict[int, str], timeout: float = 15.0) -> dict[int, str]:
    """The processes of `pids` still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        procs = processes()
        alive = {pid: cmd for pid, cmd in pids.items() if pid in procs and procs[pid][1] == cmd}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)

