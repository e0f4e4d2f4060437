"""Ctrl-C of a local exploration leaves no process and no file behind; a write that is
interrupted leaves the old file (or none), never half a file (vpmu.outputs)."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes import interrupt_running_search, wait_gone
from vpmu.outputs import replacing, write_text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_interrupted_local_search_leaves_no_process_and_no_file(tmp_path: Path) -> None:
    code, err, seen = interrupt_running_search(tmp_path, [
        "explore", "--jobs", "2", "--kvm", "6.6", "--mode", "exhaustive", "--depth", "9", "--save", "found",
        "--engine", "object"],  # the object engine runs its levels in the worker processes
        "multiprocessing")
    assert code == 130 and err.endswith("vpmu: interrupted\n"), err
    assert wait_gone(seen, timeout=120) == {}
    assert not (tmp_path / "found").exists() or not any((tmp_path / "found").iterdir())


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.yaml"
    write_text(target, "old\n")
    with pytest.raises(KeyboardInterrupt), replacing(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.yaml"]
    write_text(target, "new\n")
    assert target.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["x.yaml"]


def test_output_paths_are_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helper import cli

    afile = tmp_path / "afile"
    afile.write_text("")
    for args, message in (
        (["run", "seed-lost-overflow", "--plot", str(tmp_path / "x.txt")], "the file name must end in .png"),
        (["run", "seed-lost-overflow", "--plot", str(tmp_path / "no" / "x.png")], "does not exist"),
        (["explore", "--save", str(afile), "--depth", "1"], "is a file, not a directory"),
        (["check", "emulated-counter", "--save", str(afile)], "is a file, not a directory"),
        (["explore", "--values", "100", "--no-save"], "each value must fit a 4-bit counter"),
        (["explore", "--native", str(10**12), "--no-save"], "run lengths must be <= 1024"),
        (["explore", "--time-budget", "-1", "--no-save"], "--time-budget must be a number of seconds > 0"),
        (["run", "seed-lost-overflow", "--kvm", ""], "unknown KVM era ''"),
    ):
        code, out, err = cli(capsys, *args)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, (args, err)


def test_jobs_are_capped_at_the_cores(capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from cli_helper import cli

    code, _, err = cli(capsys, "explore", "--jobs", "999", "--depth", "1", "--restarts", "2", "--no-save",
                       "--mode", "random")
    assert code == 0 and f"--jobs 999 capped at {os.cpu_count()}" in err


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_written_files_get_the_mode_a_plain_open_gives(tmp_path: Path, umask_022: object) -> None:
    """0666 less the umask for a new file (not mkstemp's 0600); an existing file keeps its mode."""
    new = tmp_path / "new.yaml"
    write_text(new, "x\n")
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    os.umask(0o027)
    other = tmp_path / "other.yaml"
    write_text(other, "x\n")
    assert stat.S_IMODE(other.stat().st_mode) == 0o640
    private = tmp_path / "private.yaml"
    private.write_text("old\n")
    private.chmod(0o600)
    write_text(private, "new\n")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "new\n"


def test_the_plot_and_saved_counterexamples_are_not_private(tmp_path: Path, umask_022: object,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from cli_helper import cli

    png = tmp_path / "t.png"
    cli(capsys, "run", "seed-lost-overflow", "--kvm", "6.6", "--plot", str(png))
    code, _, _ = cli(capsys, "explore", "--kvm", "6.6", "--depth", "2", "--restarts", "50", "--save",
                     str(tmp_path / "found"))
    saved = sorted((tmp_path / "found").glob("*.yaml"))
    assert code == 1 and saved
    assert {stat.S_IMODE(p.stat().st_mode) for p in [png, *saved]} == {0o644}
