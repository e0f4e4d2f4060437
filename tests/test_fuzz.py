"""Fuzzing in the suite (bounded, so CI stays fast): Hypothesis drives the campaign's mutations
of the built-in and conformance scenarios and its abusive command lines (tests/fuzzing.py);
every case must end cleanly: output (valid JSON with --json) or one `vpmu: error:` line,
never an internal error, a hang or a malformed message. The long campaign is
benchmarks/fuzz_campaign.py (docs/reliability.md)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import abusive_command_lines, corpus, judge, mutate, scenario_commands

SEEDS = corpus()
LINES = abusive_command_lines()
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(seed=st.integers(0, len(SEEDS) - 1), rng=st.randoms(use_true_random=False))
def test_mutated_scenario_files_end_cleanly(seed: int, rng: random.Random, tmp_path: Path) -> None:
    data = mutate(SEEDS[seed], rng)
    args = scenario_commands(rng)
    result, first = judge(args, data, tmp_path, seconds=30)
    assert result == "ok", (args, first, data[:400])


@FUZZ
@given(index=st.integers(0, len(LINES) - 1))
def test_abusive_command_lines_end_cleanly(index: int, tmp_path: Path) -> None:
    result, first = judge(LINES[index], SEEDS[0], tmp_path, seconds=30)
    assert result == "ok", (LINES[index], first)


@pytest.mark.parametrize(("text", "line", "message"), [
    (b"\xff\xfename: x\n", 1, "not UTF-8 text"),
    (b"name: x\ncpu: intel-v2\nsteps: [cpuid]\ndescription: \xe9\n", 4, "not UTF-8 text"),
    (b"name: x\ncpu: intel-v2\nsteps: " + b"[" * 70 + b"cpuid" + b"]" * 70 + b"\n", 3, "nested deeper than 64"),
    (b"name: x\ncpu: intel-v2\nsteps: [{native: " + b"1" * 5000 + b"}]\n", 3, "integer of more than 300 digits"),
    (b"name: x\ncpu: intel-v2\n? [a]\n: 1\nsteps: [cpuid]\n", 3, "a mapping key must be a plain value"),
    (b"name: !!python/object/apply:os.system ['echo hi']\ncpu: intel-v2\nsteps: [cpuid]\n", 1,
     "YAML tags are not allowed"),
    (b"name: x\ncpu: intel-v2\nsteps: [cpuid]\nname: y\n", 4, "duplicate key 'name'"),
    (b"name: \"\\e[2J\"\ncpu: intel-v2\nsteps: [cpuid]\n", 1, "control character"),
    (b"a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        b"a%d: &a%d [" % (i, i) + b", ".join([b"*a%d" % (i - 1)] * 10) + b"]\n" for i in range(1, 9))
     + b"name: x\ncpu: intel-v2\nsteps: [cpuid]\n", 5, "aliases expand to more than 100,000 nodes"),
    (b"name: x\ncpu: {preset: intel-v2, pdcm: 'no'}\nsteps: [cpuid]\n", 2, "cpu.pdcm: must be true or false, not 'no'"),
    (b"name: x\ncpu: {preset: intel-v2, pdcm: .nan}\nsteps: [cpuid]\n", 2, "cpu.pdcm: must be true or false, not nan"),
    (b"name: x\ncpu: intel-v2\noptions: {lvtpc: 0xffffffff}\nsteps: [cpuid]\n", 3, "options.lvtpc: 0xffffffff sets"),
    (b"name: x\ncpu: intel-v2\nsteps: [{rdpmc: {ecx: 0x100000000}}]\n", 3, "steps[0].rdpmc.ecx: expected an integer"),
    (b"name: x\ncpu: intel-v2\nsteps: [{native: 0xFFFFFFFFFFFFFFFF}]\n", 3, "more than 4,096 wraps"),
    (b"name: x\ncpu: intel-v2\n\"\\e[2Jkey\": 1\nsteps: [cpuid]\n", 3, "control character"),
    (b"name: x\ncpu: intel-v2\n" + b"x" * 200 + b": 1\nsteps: [cpuid]\n", 3, "xxx...: unknown key"),
])
def test_a_hostile_file_is_one_clean_line(text: bytes, line: int, message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helper import cli

    path = tmp_path / "s.yaml"
    path.write_bytes(text)
    code, out, err = cli(capsys, "run", str(path), "--json")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"vpmu: error: {path}:{line}: ") and message in err, err
    assert len(err) < 400 and "\x1b" not in err


def test_a_large_file_is_refused_by_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helper import cli
    from vpmu.scenario.safe_yaml import MAX_BYTES

    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.write(b"name: x\ncpu: intel-v2\nsteps: [cpuid]\n# ")
        f.truncate(MAX_BYTES + 10)
    code, _, err = cli(capsys, "run", str(path))
    assert code == 2 and "file is larger than 64 MiB" in err


def test_a_markup_path_is_printed_as_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helper import cli

    where = tmp_path / "[bold][" / "]"  # the path has "[/]" in it
    where.mkdir(parents=True)
    path = where / "s.yaml"
    path.write_text("name: '[red]x[/red]'\ncpu: intel-v2\nsteps: [cpuid]\n")
    code, out, err = cli(capsys, "run", str(path))
    assert code == 0, err
    assert "[red]x[/red]" in out


def test_anchor_names_with_dots_still_pair() -> None:
    from vpmu.scenario.safe_yaml import parse

    doc = parse('d: "keep *a.b &c.d"\nx: &as-6.6 {a: 1}\ny: [*as-6.6, *as-6.6]\n')
    assert doc["d"] == "keep *a.b &c.d"
    assert doc["y"] == [{"a": 1}, {"a": 1}] and doc["y"][0] is doc["x"]
