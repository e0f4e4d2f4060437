"""Error types. Every user-facing failure is a `VpmuError` with a one-line message."""

from __future__ import annotations


class VpmuError(Exception):
    """Base class: the CLI prints `str(err)` as one line and exits 2."""


class ConfigError(VpmuError):
    """An invalid PMU configuration; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid PMU configuration: {field}: {reason}")


class UnknownMsrError(VpmuError):
    """An MSR name or number that no modelled PMU defines."""


class ValueRangeError(VpmuError):
    """A value that does not fit the register or field it is meant for."""


SHOWN_LIMIT = 60


def clean(text: str) -> str:
    """`text` safe to echo on one terminal line: control characters (C0, DEL, C1, line and
    paragraph separators) and lone surrogates become `\\xNN` / `\\uNNNN` escapes."""
    out = []
    for c in text:
        o = ord(c)
        if o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif o in (0x2028, 0x2029) or 0xD800 <= o < 0xE000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(c)
    return "".join(out)


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """An offending value as an error message shows it: a string quoted, an integer (of any
    size: Python refuses to print more than 4300 digits) in decimal or by its size, anything
    else by its type; control characters escaped (`clean`); at most `limit` characters."""
    if isinstance(value, bool) or value is None:
        text = str(value).lower() if value is not None else "nothing"
    elif isinstance(value, int):
        text = str(value) if value.bit_length() <= 256 else f"an integer of {value.bit_length()} bits"
    elif isinstance(value, str):
        text = "'" + value.replace("'", "\\'") + "'"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list | tuple):
        text = "a list"
    else:
        text = f"a {type(value).__name__}"
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = 400) -> str:
    """A whole error message as the CLI prints it: `clean` and at most `limit` characters."""
    text = clean(message)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DesignError(VpmuError):
    """A failure inside a user design (import, construction, a hook raising or returning the
    wrong type, `sys.exit`): `FILE:LINE: design NAME: hook HOOK at step N: message`. `step`
    is filled in by whoever knows it (the world: its step number; a scenario run: the step's
    file:line too)."""

    def __init__(self, where: str, design: str, hook: str, message: str, step: str | None = None) -> None:
        self.where, self.design, self.hook, self.message, self.step = where, design, hook, message, step
        super().__init__(where, design, hook, message, step)

    def __str__(self) -> str:
        at = f" at step {self.step}" if self.step is not None else ""
        what = f"hook {self.hook}{at}" if self.hook not in ("import", "constructor") else self.hook
        return f"{self.where}: design {clean(self.design)}: {what}: {one_line(self.message, 200)}"


class StepError(VpmuError):
    """A bad value found while running step `index` (an action of kind `kind`) of an action
    list; `vpmu.run.execute` names the scenario step's file:line instead."""

    def __init__(self, index: int, kind: str, reason: str) -> None:
        self.index, self.kind, self.reason = index, kind, reason
        super().__init__(index, kind, reason)

    def __str__(self) -> str:
        return f"step {self.index} ({self.kind}): {self.reason}"
