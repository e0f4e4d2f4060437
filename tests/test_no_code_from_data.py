"""No code from data: a scenario file's `design:` loads user code only when the command line
names it (`--design`); otherwise the run is refused with one line saying how to opt in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cli_helper import cli

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
from vpmu.designs import EmulatedCounterDesign
class D(EmulatedCounterDesign):
    name = "evil"
"""


CONFORMANCE = """conformance:
  source: {suite: kvm-unit-tests, repo: r, file: x86/pmu.c, function: f, version: v}
  asserts: a
  tolerance: exact
  eras: {'6.8': pass}
"""


def _scenario(path: Path, design: str) -> Path:
    path.write_text(f"name: s\ncpu: intel-v2\nkvm: '6.8'\ndesign: {design}\nsteps:\n  - cpuid\n" + CONFORMANCE)
    return path


def _evil(path: Path, marker: Path) -> Path:
    path.write_text(EVIL.format(marker=str(marker)))
    return path


@pytest.mark.parametrize("where", ["sibling", "parent", "absolute", "module"])
def test_a_scenario_never_imports_code_without_design(where: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "imported"
    sub = tmp_path / "sub"
    sub.mkdir()
    if where == "sibling":
        _evil(sub / "helper.py", marker)
        ref = "helper.py:D"
    elif where == "parent":
        _evil(tmp_path / "x.py", marker)
        ref = "../x.py:D"
    elif where == "absolute":
        ref = f"{_evil(tmp_path / 'abs.py', marker)}:D"
    else:
        ref = "this:D"  # importing `this` prints the Zen of Python
    scn = _scenario(sub / "s.yaml", ref)
    for args in (("run", str(scn)), ("conformance", str(sub)), ("run", str(scn), "--json")):
        code, out, err = cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert err.startswith(f"vpmu: error: {scn}:4: design: names user code") and err.count("\n") == 1
        assert "--design" in err
        assert "Beautiful is better than ugly" not in out + err
        assert not marker.exists()
    assert "this" not in sys.modules or where != "module" or sys.modules["this"] is not None


def test_design_on_the_command_line_opts_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "imported"
    _evil(tmp_path / "helper.py", marker)
    scn = _scenario(tmp_path / "s.yaml", "helper.py:D")
    code, _, err = cli(capsys, "run", str(scn))
    assert code == 2 and f"--design {tmp_path / 'helper.py'}:D" in err
    code, out, err = cli(capsys, "run", str(scn), "--design", f"{tmp_path / 'helper.py'}:D", "--json")
    assert code == 0, err
    assert marker.exists() and '"design": "' in out


def test_kernel_trees_are_code_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scn = _scenario(tmp_path / "s.yaml", "kernel:linux")
    code, _, err = cli(capsys, "run", str(scn))
    assert code == 2 and f"--design kernel:{tmp_path / 'linux'}" in err


def test_built_in_designs_need_no_opt_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scn = _scenario(tmp_path / "s.yaml", "mediated")
    code, out, err = cli(capsys, "run", str(scn), "--json")
    assert code == 0, err
    assert '"design": "mediated"' in out


def test_replay_commands_name_the_design_they_need() -> None:
    from vpmu.designs import replay_command

    assert replay_command("a b.yaml", None) == "vpmu run 'a b.yaml'"
    assert replay_command("x.yaml", "mediated") == "vpmu run x.yaml"
    assert replay_command("x.yaml", "/p/my.py:D") == "vpmu run x.yaml --design /p/my.py:D"
