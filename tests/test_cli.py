"""The `vpmu` command line through its real entry point: every command, exit codes, error
paths, --json determinism and the golden JSON of the built-in scenarios on each era.

Regenerate the golden files with `VPMU_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_cli.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helper import cli

GOLDEN = Path(__file__).parent / "golden"
VPMU = Path(sys.executable).parent / "vpmu"
ERAS = ("6.6", "6.8", "6.9", "mediated")
BUILTINS = ("seed-lost-overflow", "seed-duplicate-overflow", "seed-delayed-detection", "kut-emulated-instr")


# --- listing commands ------------------------------------------------------------------------


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.startswith("vpmu ")
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for cmd in ("run", "demo", "scenarios", "designs", "presets", "eras", "options"):
        assert cmd in out


@pytest.mark.parametrize(("cmd", "needle"), [
    ("scenarios", "seed-lost-overflow"), ("designs", "emulated-counter"), ("presets", "intel-v2"),
    ("eras", "6.8"), ("options", "r1_vm_entry"),
])
def test_lists(capsys: pytest.CaptureFixture[str], cmd: str, needle: str) -> None:
    code, out, err = cli(capsys, cmd)
    assert code == 0 and needle in out and err == ""


def test_options_lists_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = cli(capsys, "options")
    lines = {ln.split()[0]: ln.split()[1] for ln in out.splitlines()}
    assert lines["pmi_skid"] == "0" and lines["r1_vm_entry"] == "true" and lines["r7_ignored_overflow"] == "false"


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("bogus",), ("run",), ("run", "no-such-scenario"), ("run", "seed-lost-overflow", "--kvm", "4.19"),
    ("run", "seed-lost-overflow", "-o", "nope=1"), ("run", "seed-lost-overflow", "--design", "nope"),
    ("run", "seed-lost-overflow", "--frobnicate"),
])
def test_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert err.startswith("vpmu: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_bad_file_reports_line_and_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ncpu: intel-v2\nsteps:\n  - cpuid\n  - wrmsr: {msr: IA32_PERFEVTSEL0, value: [1]}\n")
    code, _, err = cli(capsys, "run", str(p))
    assert code == 2
    assert f"{p}:5: steps[1].wrmsr.value: expected an integer" in err


def test_debug_shows_traceback(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ncpu: nope\nsteps: [cpuid]\n")
    r = subprocess.run([str(VPMU), "--debug", "run", str(p)], capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "Traceback" in r.stderr


# --- runs --------------------------------------------------------------------------------------


def test_run_exit_codes_and_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "run", "seed-lost-overflow", "--kvm", "6.6", "--trace")
    assert code == 1 and "lost-overflow" in out and "verdict: FAIL" in out
    assert "\x1b[" not in out  # no colour when not a TTY
    code, out, _ = cli(capsys, "run", "seed-lost-overflow", "--kvm", "6.8")
    assert code == 0 and "verdict: ok" in out


def test_run_options_change_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = cli(capsys, "run", "seed-delayed-detection", "--kvm", "6.8", "-o", "r1_vm_entry=false")
    assert code == 1


def test_run_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_png = tmp_path / "t.png"
    code, _, _ = cli(capsys, "run", "seed-lost-overflow", "--kvm", "6.6", "--plot", str(out_png), "--json")
    assert code == 1 and out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_via_console_script() -> None:
    r = subprocess.run([str(VPMU), "run", "seed-lost-overflow", "--kvm", "6.6", "--json"],
                       capture_output=True, text=True, check=False, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    for key in ("scenario", "kvm", "design", "cpu", "divergences", "trace", "expects", "verdict", "failed"):
        assert key in doc
    assert doc["kvm"] == "6.6" and doc["design"] == "prev-counter"


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "demo")
    assert code == 0
    for name in BUILTINS:
        assert name in out
    assert "KVM 6.6" in out and "KVM 6.8" in out
    code, out, _ = cli(capsys, "demo", "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"eras", "scenarios", "verdicts", "runs"}
    assert doc["verdicts"]["seed-lost-overflow"]["6.6"].startswith("FAIL")
    _check_golden("demo.json", out)


def test_demo_exits_0_with_fail_rows_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    """Its FAIL rows are the seed bugs it demonstrates; --help and the README say so."""
    code, out, _ = cli(capsys, "demo")
    assert code == 0 and "FAIL" in out
    _, helptext, _ = cli(capsys, "demo", "--help")
    assert "Exit 0 whenever the table is printed" in " ".join(helptext.split())
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "`vpmu demo` exits 0 whenever it prints its table" in readme


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VPMU_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"missing golden file {path}; run with VPMU_UPDATE_GOLDEN=1")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; rerun with VPMU_UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("scenario", BUILTINS)
def test_golden_json(capsys: pytest.CaptureFixture[str], scenario: str, era: str) -> None:
    code, out, _ = cli(capsys, "run", scenario, "--kvm", era, "--json")
    doc = json.loads(out)
    assert code == (1 if doc["failed"] else 0)
    code2, out2, _ = cli(capsys, "run", scenario, "--kvm", era, "--json")
    assert out == out2  # deterministic byte for byte
    _check_golden(f"{scenario}@{era}.json", out)


EXPECTED_VERDICTS = {
    ("seed-lost-overflow", "6.6"): "lost-overflow",
    ("seed-duplicate-overflow", "6.6"): "spurious-overflow (internal)",
}


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("scenario", ("seed-lost-overflow", "seed-duplicate-overflow", "seed-delayed-detection"))
def test_seed_verdicts(scenario: str, era: str) -> None:
    from vpmu.run import execute
    from vpmu.scenario import load_scenario

    res = execute(load_scenario(scenario), kvm=era)
    want = EXPECTED_VERDICTS.get((scenario, era))
    if want is not None:
        assert res.failed and want in res.verdict, res.verdict
    elif era == "6.6":
        assert res.failed
    else:
        assert not res.failed, res.verdict
    if scenario == "seed-delayed-detection" and era == "6.8":
        assert any(d.kind == "late-overflow" and d.tolerated for d in res.divergences)


# --- a closed output pipe (`vpmu ... | head -1`) ---------------------------------------------------

SRC = Path(__file__).resolve().parents[1] / "src"
ONE_CONFORMANCE = str(SRC.parent / "conformance" / "kut-emulated-instr-intel.yaml")


def _with_closed_stdout(*args: str) -> tuple[int, str]:
    """`vpmu ARGS` (this checkout's) whose stdout reader is gone before it writes anything,
    as when `head` has exited: its exit code and stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "vpmu.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err.decode()


@pytest.mark.parametrize("args", [
    ("scenarios",),  # plain writes
    ("eras",),
    ("conformance", ONE_CONFORMANCE),  # rich tables (exit 0 otherwise)
    ("demo",),  # rich, exit 0 otherwise
    ("run", "seed-lost-overflow", "--kvm", "6.6", "--json"),  # exit 1 otherwise
    ("check", "prev-counter", "--depth", "1", "--restarts", "5", "--scenarios", "seed-lost-overflow",
     "--no-save"),  # exit 1 (regressions) otherwise
    ("--help",),  # click's own output
])
def test_a_closed_output_pipe_exits_141_quietly(args: tuple[str, ...]) -> None:
    """Not 1 ("divergence found") nor 2 (bad input): the status of a process SIGPIPE ended,
    and nothing on stderr (no traceback, no "Exception ignored")."""
    code, err = _with_closed_stdout(*args)
    assert (code, err) == (141, "")


def test_a_closed_pipe_in_process_exits_141(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdout", Closed())
    code, _, err = cli(capsys, "conformance", ONE_CONFORMANCE)
    assert (code, err) == (141, "")


# --- what a newcomer misread ---------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["check", "run"])
def test_a_design_file_without_its_class_says_so(capsys: pytest.CaptureFixture[str], cmd: str) -> None:
    design = str(SRC.parent / "examples" / "my_design.py")
    args = ("check", design) if cmd == "check" else ("run", "seed-lost-overflow", "--design", design)
    code, _, err = cli(capsys, *args)
    assert code == 2 and "names a file but no class" in err and f"'{design}:SnapshotBeforePerf'" in err, err


def test_the_era_says_whether_the_scenario_named_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    steps = "cpu: intel-v2\nsteps:\n  - native: 1\n"
    (tmp_path / "none.yaml").write_text("name: none\n" + steps)
    (tmp_path / "named.yaml").write_text("name: named\nkvm: '6.8'\n" + steps)
    for name, header, source in (("none", "KVM 6.8 (the default era: the scenario names none; --kvm to change)",
                                  "default"),
                                 ("named", "KVM 6.8 (the scenario's era; --kvm to change)", "scenario")):
        code, out, _ = cli(capsys, "run", str(tmp_path / f"{name}.yaml"))
        assert code == 0 and header in out.splitlines()[0], out
        code, out, _ = cli(capsys, "run", str(tmp_path / f"{name}.yaml"), "--json")
        assert json.loads(out)["kvm_from"] == source
    code, out, _ = cli(capsys, "run", str(tmp_path / "none.yaml"), "--kvm", "6.6", "--json")
    assert json.loads(out)["kvm_from"] == "command line"


def test_one_conformance_file_is_one_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "conformance", ONE_CONFORMANCE, "--kvm", "6.8")
    assert code == 0 and out.rstrip().splitlines()[-1].startswith("1 scenario, 1 run: 1 pass"), out


def test_scenarios_fit_the_terminal_width_and_a_pipe_gets_everything(capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from vpmu.scenario import builtin_names, load_scenario

    monkeypatch.delenv("COLUMNS", raising=False)
    _, full, _ = cli(capsys, "scenarios")  # not a terminal: whole lines
    lines = full.splitlines()
    assert len(lines) == len(builtin_names())
    for line, name in zip(lines, builtin_names(), strict=True):
        first = load_scenario(name).description.split(". ")[0].split(": ", 1)[-1]
        assert line.startswith(name) and line.endswith(first)
    assert max(len(line) for line in lines) > 150
    for width in (60, 100):
        monkeypatch.setenv("COLUMNS", str(width))
        _, out, _ = cli(capsys, "scenarios")
        for line, whole in zip(out.splitlines(), lines, strict=True):
            assert len(line) <= width
            if line != whole:  # cut after a whole word, marked
                assert line.endswith("...") and whole.startswith(line[:-3]) and whole[len(line) - 3] in " ,;:"


# --- docs/json.md names every key, and no key that is gone ----------------------------------------


def _json_doc_tables() -> dict[str, list[set[str]]]:
    """docs/json.md's key tables by section (`## ...` heading): per table, the backticked
    names of its first column."""
    import re

    text = (SRC.parent / "docs" / "json.md").read_text(encoding="utf-8")
    out: dict[str, list[set[str]]] = {}
    for section in text.split("\n## ")[1:]:
        title, _, body = section.partition("\n")
        tables: list[set[str]] = []
        rows: list[str] = []
        for line in body.splitlines() + [""]:
            if line.startswith("|"):
                rows.append(line)
            elif rows:
                tables.append({k for row in rows[2:] for k in re.findall(r"`([a-z_]+)`", row.split("|")[1])})
                rows = []
        out[title] = tables
    return out


def test_json_docs_name_exactly_the_keys_each_output_has(capsys: pytest.CaptureFixture[str]) -> None:
    docs = _json_doc_tables()

    def table(heading: str, n: int) -> set[str]:
        return docs[next(t for t in docs if t.startswith(heading))][n]

    _, out, _ = cli(capsys, "run", "seed-lost-overflow", "--kvm", "6.6", "--json")
    run = json.loads(out)
    assert table("`vpmu run --json`", 0) == set(run)
    assert table("`vpmu run --json`", 1) == set(run["trace"][-1]["kvm"]) == set(run["trace"][-1]["reference"]) | {
        "design"}
    _, out, _ = cli(capsys, "conformance", ONE_CONFORMANCE, "--json")
    conf = json.loads(out)
    assert table("`vpmu conformance --json`", 0) == set(conf)
    assert table("`vpmu conformance --json`", 1) == set(conf["results"][0])
    _, out, _ = cli(capsys, "explore", "--kvm", "6.6", "--depth", "2", "--restarts", "20", "--no-save", "--json")
    assert table("`vpmu explore --json`", 0) == set(json.loads(out))
    _, out, _ = cli(capsys, "check", "prev-counter", "--depth", "2", "--restarts", "20", "--no-save", "--json",
                    "--scenarios", "seed-duplicate-overflow", "--assume", "none")
    check = json.loads(out)
    assert check["regressions"] and check["beyond_assumptions"]
    assert table("`vpmu check --json`", 0) == set(check)
    assert table("`vpmu check --json`", 1) == set(check["regressions"][0]) == set(
        check["beyond_assumptions"][0]) - {"direction"}
