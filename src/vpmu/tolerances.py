"""The checker's options: what it tolerates (spec relaxations R1, R3, ... as named switches) and
where an overflow is due (docs/checker.md, "Options"). Scenario files, `-o NAME=VALUE` and the
explorer's targets all build them here."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from vpmu.errors import VpmuError, shown


@dataclass(frozen=True, slots=True)
class CheckerOptions:
    """What the checker tolerates and where an overflow is due (docs/checker.md).

    pmi_skid: a PMI up to this many guest instructions after the wrapping one is on time.
    r1_vm_entry: R1 — an overflow KVM detects by emulation may become visible (status and PMI)
        as late as the end of the action in which the wrap happened (the next VM-entry).
    r3_min_period: R3 — a hardware-counted wrap may be signalled 1 event late (perf's minimum
        sample period of 2).
    held_pmi_skid: a hardware wrap during `Native(hold_pmi=True)` may become visible when the
        held host PMI lands (by the end of the first later step that is not such a run); this is
        the PMI skid the scenario chose explicitly.
    r14_truncation: R14 — KVM does not #GP on writes the architecture rejects (fixed-counter
        values above the width, AMD reserved bits); the missing fault and the resulting value
        (from that step on) are tolerated.
    r7_ignored_overflow: R7 — a hardware overflow KVM ignored because the PMC's reprogram bit
        was set (a loss) is tolerated. Off by default.
    r11_disallowed_overflow: R11 — an emulated overflow dropped because the PMC was no longer
        allowed at processing time (a loss) is tolerated. Off by default.
    r2_duplicate_signal: R2 — a second overflow signal for one wrap (internal) is tolerated.
        Off by default.
    legacy_msrs_ignored: KVM's x86.c ignores guest and host writes to, and returns 0 for reads
        of, the P6 PERFCTR0/1 / EVNTSEL0/1 and K7 PERFCTR0-3 / EVNTSEL0-3 MSRs when the vPMU has
        no such counter (spec kvm-vpmu.md §2.2) where the architecture #GPs; that missing #GP
        is tolerated.
    """

    pmi_skid: int = 0
    r1_vm_entry: bool = True
    r3_min_period: bool = True
    held_pmi_skid: bool = True
    r14_truncation: bool = True
    r7_ignored_overflow: bool = False
    r11_disallowed_overflow: bool = False
    r2_duplicate_signal: bool = False
    legacy_msrs_ignored: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: Option name -> one-line description (for `vpmu options` and docs).
OPTION_HELP: dict[str, str] = {
    "pmi_skid": "PMI on time if within this many instructions after the wrap",
    "r1_vm_entry": "R1: emulated overflow visible by the end of its action (next VM-entry) is tolerated",
    "r3_min_period": "R3: hardware-counted overflow 1 event late (perf minimum period 2) is tolerated",
    "held_pmi_skid": "hardware overflow visible when a held host PMI (Native hold_pmi) lands is tolerated",
    "r14_truncation": "R14: no #GP for over-wide fixed-counter writes / AMD reserved bits is tolerated",
    "r7_ignored_overflow": "R7: hardware overflow ignored because a reprogram was pending is tolerated",
    "r11_disallowed_overflow": "R11: emulated overflow dropped because the PMC became disallowed is tolerated",
    "r2_duplicate_signal": "R2: a second overflow signal for one wrap (internal) is tolerated",
    "legacy_msrs_ignored": "§2.2: no #GP for P6/K7 legacy counter MSRs the vPMU lacks (ignored, read 0) is tolerated",
}


def options_from_mapping(data: dict[str, Any]) -> CheckerOptions:
    """Checker options from a mapping of option name -> value; unknown names raise."""
    known = {f.name: f for f in fields(CheckerOptions)}
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in known:
            raise VpmuError(f"unknown checker option {shown(name)} (known: {', '.join(known)})")
        if name == "pmi_skid":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise VpmuError(f"checker option pmi_skid must be an integer >= 0, not {shown(value)}")
        elif not isinstance(value, bool):
            raise VpmuError(f"checker option {name} must be true or false, not {shown(value)}")
        values[name] = value
    return CheckerOptions(**values)


def parse_option(text: str) -> tuple[str, bool | int]:
    """`NAME=VALUE` from the command line (true/false/yes/no/on/off/1/0, or an integer)."""
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep:
        raise VpmuError(f"option {shown(text)} must be NAME=VALUE")
    raw = raw.strip().lower()
    if name == "pmi_skid":
        try:
            return name, int(raw, 0)
        except ValueError:
            raise VpmuError(f"option pmi_skid needs an integer, not {shown(raw)}") from None
    if raw in ("1", "true", "yes", "on"):
        return name, True
    if raw in ("0", "false", "no", "off"):
        return name, False
    raise VpmuError(f"option {name} needs true or false, not {shown(raw)}")


