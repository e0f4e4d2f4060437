"""The files vpmu writes: checked before any work starts, written atomically.

`check_directory` and `check_file` fail fast (exit 2, one line) on an output path that cannot
work: a directory where a file is wanted or the reverse, a parent that does not exist, a place
that is not writable, a file name without the suffix its format needs. `write_text` and
`replacing` write to a temporary file beside the target and `os.replace` it into place, so
an interrupted run (Ctrl-C) never leaves a half-written file (docs/reliability.md); the file
gets the mode a plain open() would give it. Standard output too: a closed pipe
(`vpmu ... | head -1`) ends the command quietly (`PipeGuard`, `CLOSED_PIPE`).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vpmu.errors import VpmuError, clean


def _writable_dir(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _existing_parent(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_directory(path: str, flag: str) -> None:
    """`path` is a directory vpmu may create files in (or can create)."""
    p = Path(path)
    where = f"{flag} {clean(path)}"
    if not path:
        raise VpmuError(f"{flag} needs a directory name")
    if p.exists():
        if not p.is_dir():
            raise VpmuError(f"{where}: is a file, not a directory")
        if not _writable_dir(p):
            raise VpmuError(f"{where}: directory is not writable")
        return
    parent = _existing_parent(p)
    if not parent.is_dir():
        raise VpmuError(f"{where}: {clean(str(parent))} is a file, not a directory")
    if not _writable_dir(parent):
        raise VpmuError(f"{where}: cannot create the directory ({clean(str(parent))} is not writable)")


def check_file(path: str, flag: str, suffixes: tuple[str, ...] = ()) -> None:
    """`path` names a file vpmu may (over)write, with one of `suffixes` (if given)."""
    p = Path(path)
    where = f"{flag} {clean(path)}"
    if not path:
        raise VpmuError(f"{flag} needs a file name")
    if suffixes and p.suffix.lower() not in suffixes:
        raise VpmuError(f"{where}: the file name must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise VpmuError(f"{where}: is a directory, not a file")
    if p.exists() and not os.access(p, os.W_OK):
        raise VpmuError(f"{where}: file is not writable")
    parent = p.absolute().parent
    if not parent.is_dir():
        raise VpmuError(f"{where}: directory {clean(str(parent))} does not exist")
    if not _writable_dir(parent):
        raise VpmuError(f"{where}: directory {clean(str(parent))} is not writable")


def _plain_mode(target: Path) -> int:
    """The mode open(target, "w") would leave: an existing file keeps its own, a new one gets
    0666 less the umask (mkstemp's temporary files are 0600, private to the owner)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; moved onto `path` when the block ends
    without an exception (with the mode a plain write would give it), removed otherwise."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _plain_mode(target))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class SavedFile(str):
    """The path of a file vpmu saved (a plain string to its callers and in JSON) that also
    says whether it replaced an existing file of the same name (`replaced`), which the text
    reports point out: a later run with the same names overwrites an earlier one's files."""

    replaced: bool

    def __new__(cls, path: str, replaced: bool = False) -> SavedFile:
        self = super().__new__(cls, path)
        self.replaced = replaced
        return self


def save_text(path: str | Path, text: str) -> SavedFile:
    """`write_text`, and whether it replaced a file that was there."""
    existed = Path(path).exists()
    write_text(path, text)
    return SavedFile(str(path), existed)


# --- standard output -----------------------------------------------------------------------

#: The exit status of a closed output pipe: a shell's 128 + SIGPIPE, which a process that
#: died of SIGPIPE reports (Python ignores SIGPIPE and sees EPIPE instead).
CLOSED_PIPE = 141


class OutputClosed(Exception):
    """stdout's reader went away (EPIPE). Not an OSError on purpose: click and typer turn an
    EPIPE OSError into exit 1, rich into `SystemExit(1)`; 1 would read "divergence found"."""


class PipeGuard:
    """sys.stdout while a command runs: a write or flush that meets a closed pipe raises
    `OutputClosed`, so every writer (ours, rich's, click's help) ends the same way."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            raise OutputClosed from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def silence_stdout() -> None:
    """Point stdout's descriptor at /dev/null, so that the interpreter's last flush of what
    is still buffered does not fail again ("Exception ignored ... BrokenPipeError")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
