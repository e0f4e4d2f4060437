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
