"""Hostile scenario files and command lines, and the judge of what vpmu does with them.

Shared by the bounded Hypothesis tests (tests/test_fuzz.py) and the long campaign
(benchmarks/fuzz_campaign.py, docs/reliability.md). A case is a command line (argument list)
plus, optionally, a scenario file's bytes (written as FILE, which the arguments name). `judge`
runs it in this process and returns a verdict:

* "ok"            exit 0/1 with valid UTF-8 output (JSON when --json was given), or exit 2
                  with exactly one line `vpmu: error: ...` (<= 500 characters, no control
                  characters) and nothing on stdout;
* "internal"      `vpmu: internal error`, a traceback, another exit code;
* "bad-message"   any other shape of output (several lines, control characters, not JSON...);
* "hang"          the case ran longer than its time limit (SIGALRM).
"""

from __future__ import annotations

import io
import json
import random
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIRS = (ROOT / "src" / "vpmu" / "scenarios", ROOT / "conformance")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_LINE = 500


def corpus() -> list[bytes]:
    """The built-in and conformance scenario files, the seeds of every mutation."""
    return [p.read_bytes() for d in CORPUS_DIRS for p in sorted(d.glob("*.yaml"))]


# --- values and edits a hostile user tries --------------------------------------------------

HOSTILE_VALUES = [
    "0xFFFFFFFFFFFFFFFF", "-1", "-0x10000000000000000", "1" * 5000, "0x" + "f" * 400, ".nan", ".inf", "-.inf",
    "1e308", "1e999", "'no'", '"yes"', "no", "off", "~", "null", "[]", "{}", "[1, [2, [3]]]", "{a: {b: 1}}",
    "!!python/object/apply:os.system ['echo pwned']", "!!binary aGVsbG8=", "!custom 5", "&a [1, 2]",
    '"\\e[2J\\e[31mred"', '"\\x00\\x07"', '"\\ud800"', '"' + "A" * 100_000 + '"', "0o777", "0b101", "1_000",
    "true", "6.10", "'6.8'", "2**64", "0x1_0000_0000", "-0", "+5", "é", "'[/]'", "[/bold]", "|\n  multi\n  line",
]
HOSTILE_KEYS = ["\x1b[2Jkey", "'\\e[2J'", "[1, 2]", "{a: 1}", "? [x]", "123", "true", "null", "'a\\nb'", "x" * 200]


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines)


def _deep(n: int) -> str:
    return "steps: " + "[" * n + "cpuid" + "]" * n


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """One structural or value edit of a scenario file (several, sometimes)."""
    text = seed.decode("utf-8")
    lines = text.splitlines()
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        how = rng.randrange(16)
        if not lines:
            lines = ["name: x"]
        i = rng.randrange(len(lines))
        line = lines[i]
        if how <= 4 and ":" in line:  # replace a value
            head = line.split(":", 1)[0]
            lines[i] = f"{head}: {rng.choice(HOSTILE_VALUES)}"
        elif how == 5:
            del lines[i]
        elif how == 6:
            lines.insert(i, line)
        elif how == 7:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif how == 8:
            lines.insert(i, f"{rng.choice(HOSTILE_KEYS)}: {rng.choice(HOSTILE_VALUES)}")
        elif how == 9:
            lines[i] = " " * rng.randrange(1, 6) + line
        elif how == 10:
            lines.append(rng.choice(("  - native: 0xFFFFFFFFFFFFFFFF",
                                     "  - native: {count: 0xFFFFFFFFFFFFFFFF, branches: 3}",
                                     "  - rdpmc: {ecx: 0x100000000}", "  - wrmsr: {msr: 0x1ffffffff, value: 1}",
                                     "  - emulate: []", "  - batch: [insn] ", "  - expect: {pmis: -1}",
                                     "  - set_filter: {action: 7, events: [1, 2]}", "  - native: -5")))
        elif how == 11:
            lines.insert(0, rng.choice(("%YAML 1.1", "--- !!map", "---", "%TAG ! tag:evil,2000:")))
        elif how == 12:
            lines.append(rng.choice((_alias_bomb(), _deep(rng.choice((50, 70, 2000))), "---\nname: second")))
        elif how == 13:
            lines[i] = line.replace(":", "", 1)
        elif how == 14:
            lines.insert(i, "options: {" + rng.choice(("lvtpc: 0xffffffff", "host_counter_width: 2",
                                                       "pmi_skid: .nan", "r1_vm_entry: 'no'", "skid: 1e9",
                                                       "host_counter_width: 0")) + "}")
        else:
            lines.insert(i, "cpu: {preset: intel-v2, " + rng.choice(("pdcm: 'no'", "pdcm: .nan", "num_gp: 1e3",
                                                                      "gp_width: 0xffffffffffffffffff",
                                                                      "full_width_writes: [1]", "num_gp: -1",
                                                                      "perfctr_core: {a: 1}", "version: true")) + "}")
    out = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    how = rng.randrange(12)
    if how == 0:
        cut = rng.randrange(len(out) + 1)
        out = out[:cut]
    elif how == 1:
        pos = rng.randrange(len(out) + 1)
        out = out[:pos] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16))) + out[pos:]
    elif how == 2:
        out = rng.choice((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")) + out
    elif how == 3:
        out = out.replace(b"e", b"\xe9", 1)
    return out


# --- command lines ---------------------------------------------------------------------------

def abusive_command_lines() -> list[list[str]]:
    """Command lines a hostile user types; FILE is a scenario file, DIR a directory."""
    run = [["run", "FILE", *extra] for extra in (
        [], ["--json"], ["--trace"], ["--kvm", ""], ["--kvm", "6.10"], ["--kvm", "\x1b[2J"], ["--design", ""],
        ["--design", "os:path"], ["--design", "kernel:"], ["--design", "nope.py:X"], ["--design", "FILE:X"],
        ["--plot", "x.txt"], ["--plot", "DIR"], ["--plot", "/nonexistent/x.png"], ["--plot", ""],
        ["-o", "pmi_skid=-1"], ["-o", "pmi_skid=1e999"], ["-o", "="], ["-o", "r1_vm_entry=maybe"],
        ["-o", "nope=1"], ["--json", "--trace"])]
    run += [["run", name] for name in ("", "[/]", "\x1b[2J", "x" * 5000, "DIR", "/dev/null", "nope.yaml")]
    explore = [["explore", "--no-save", "--restarts", "3", "--depth", "2", "--jobs", "1", *extra] for extra in (
        ["--values", "100"], ["--values", "-17"], ["--values", "x"], ["--values", ""], ["--native", "0"],
        ["--native", str(10**12)], ["--native", "99999999999999999999999"], ["--time-budget", "-1"],
        ["--time-budget", "nan"], ["--time-budget", "inf"], ["--time-budget", "0"], ["--kvm", ""],
        ["--jobs", "0"], ["--jobs", "-3"], ["--width", "1"], ["--width", "65"], ["--width", "99999999999999999999"],
        ["--counters", "9"], ["--counters", "1,1,1"], ["--counters", ""], ["--depth", "0"], ["--depth", "10000"],
        ["--batch", "0"], ["--batch", "1000"], ["--kinds", ""], ["--kinds", "nope"], ["--events", "nope"],
        ["--events", ""], ["--skid", "-1"], ["--assume", "nope"], ["--mode", "nope"], ["--backend", "nope"],
        ["--address", "x"], ["--cpu", "nope"], ["--cpu", "[/]"], ["--design", "os:path"],
        ["--max-counterexamples", "-1"], ["--seed", "-1"], ["--restarts", "-5"], ["-o", "nope=1"])]
    explore += [["explore", "--save", where, "--depth", "1", "--restarts", "2", "--jobs", "1"]
                for where in ("FILE", "/proc/1/x", "")]
    check = [["check", *extra] for extra in (
        ["nope"], [""], ["os:path"], ["emulated-counter", "--baseline", "nope"], ["emulated-counter", "--save", "FILE"],
        ["emulated-counter", "--time-budget", "-1"], ["emulated-counter", "--scenarios", "DIR"],
        ["emulated-counter", "--values", "100", "--no-save"], ["emulated-counter", "--native", "0"])]
    conformance = [["conformance", *extra] for extra in (["DIR"], ["FILE"], ["--kvm", ""], ["--kvm", "nope"],
                                                         ["--design", "os:path"], ["/nonexistent"])]
    other = [["nope"], ["--nope"], ["run"], ["run", "--json"], ["explore", "extra"], ["options", "x"]]
    return run + explore + check + conformance + other


# --- the judge ---------------------------------------------------------------------------------

class _Timeout(BaseException):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: FrameType | None) -> None:
        raise _Timeout

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cli(args: list[str], seconds: float = 20.0) -> tuple[int | str, str, str]:
    """(exit code or "hang", stdout, stderr) of `vpmu ARGS` in this process."""
    from vpmu.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str = 0
    try:
        with _time_limit(seconds), redirect_stdout(out), redirect_stderr(err):
            main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    except _Timeout:
        code = "hang"
    except BaseException as e:  # noqa: BLE001 - anything escaping main() is an internal error
        err.write(f"escaped: {type(e).__name__}: {e}\n")
        code = -1
    return code, out.getvalue(), err.getvalue()


def verdict(args: list[str], code: int | str, out: str, err: str) -> str:
    if code == "hang":
        return "hang"
    if code == -1 or "internal error" in err or "Traceback" in err or code not in (0, 1, 2):
        return "internal"
    for text in (out, err):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "bad-message"
    if code == 2:
        if "--help" in args or not err:  # a usage screen (no arguments) is not an error line
            return "ok" if out and not err else "bad-message"
        if out or err.count("\n") != 1 or not err.startswith("vpmu: error: ") or len(err) > MAX_LINE:
            return "bad-message"
        if CONTROL.search(err.rstrip("\n")):
            return "bad-message"
        return "ok"
    if "--json" in args:
        try:
            json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError:
            return "bad-message"
    if CONTROL.search(out.replace("\n", "").replace("\t", "")) and "--json" not in args:
        return "bad-message"
    return "ok"


def judge(args: list[str], data: bytes | None, workdir: Path, seconds: float = 20.0) -> tuple[str, str]:
    """Run one case in `workdir` (FILE: `data` written there; DIR: a directory); the verdict
    and the first line of stderr."""
    scenario = workdir / "case.yaml"
    if data is not None:
        scenario.write_bytes(data)
    directory = workdir / "dir"
    directory.mkdir(exist_ok=True)
    real = [a.replace("FILE", str(scenario)).replace("DIR", str(directory)) if a in ("FILE", "DIR")
            or a.startswith("FILE:") else a for a in args]
    code, out, err = run_cli(real, seconds)
    return verdict(real, code, out, err), (err.splitlines() or [""])[0][:300]


def scenario_commands(rng: random.Random) -> list[str]:
    """The command that runs a generated scenario file."""
    return rng.choice((["run", "FILE", "--json"], ["run", "FILE"], ["run", "FILE", "--trace"],
                       ["conformance", "FILE", "--json"]))


Case = tuple[list[str], bytes | None]


def cases(n: int, seed: int = 0, *, command_lines: bool = True) -> Iterator[Case]:
    """`n` cases: every abusive command line (on a valid scenario) once, then mutated files."""
    rng = random.Random(seed)
    seeds = corpus()
    fixed = abusive_command_lines() if command_lines else []
    for i in range(n):
        if i < len(fixed):
            yield fixed[i], seeds[0]
        else:
            yield scenario_commands(rng), mutate(rng.choice(seeds), rng)


def summary(counts: dict[str, int], total: int) -> str:
    return (f"{total} cases: {counts.get('internal', 0)} internal errors, {counts.get('hang', 0)} hangs, "
            f"{counts.get('bad-message', 0)} bad messages")
