"""Event-select layout and the architectural event encodings KVM emulates in software.

Sources: spec architecture-and-peers.md A.3/A.4, kvm-vpmu.md §1.2 (`kvm_pmu_eventsel`).
"""

from __future__ import annotations

from typing import Literal

EVENTSEL_EVENT = 0xFF
EVENTSEL_UMASK = 0xFF00
EVENTSEL_USR = 1 << 16
EVENTSEL_OS = 1 << 17
EVENTSEL_EDGE = 1 << 18
EVENTSEL_PIN_CONTROL = 1 << 19
EVENTSEL_INT = 1 << 20
EVENTSEL_ANY = 1 << 21
EVENTSEL_ENABLE = 1 << 22
EVENTSEL_INV = 1 << 23
EVENTSEL_CMASK = 0xFF << 24
AMD_EVENTSEL_EVENT_HI = 0xF << 32
AMD_GUEST_ONLY = 1 << 40
AMD_HOST_ONLY = 1 << 41

#: Event select + unit mask: what "the event" of an eventsel is (AMD adds bits 35:32).
INTEL_EVENT_MASK = EVENTSEL_EVENT | EVENTSEL_UMASK
AMD_EVENT_MASK = EVENTSEL_EVENT | EVENTSEL_UMASK | AMD_EVENTSEL_EVENT_HI

# Fixed-counter control field (4 bits per counter at 4*i).
FIXED_OS = 0x1
FIXED_USR = 0x2
FIXED_ANY = 0x4
FIXED_PMI = 0x8

EventKind = Literal["instructions", "branches"]

#: The two events retirement drives exactly: event select + umask per vendor.
ENCODINGS: dict[str, dict[EventKind, int]] = {
    "intel": {"instructions": 0x00C0, "branches": 0x00C4},
    "amd": {"instructions": 0x00C0, "branches": 0x00C2},
}

#: Intel fixed counter i counts this architectural event (synthetic eventsel in KVM).
FIXED_EVENTS: dict[int, int] = {0: 0x00C0, 1: 0x003C, 2: 0x0300}


def event_kind(vendor: str, event: int) -> EventKind | None:
    """Which retirement event an event select + umask is (exactly), or None."""
    for kind, enc in ENCODINGS[vendor].items():
        if event == enc:
            return kind
    return None


def event_mask(vendor: str) -> int:
    return AMD_EVENT_MASK if vendor == "amd" else INTEL_EVENT_MASK


def fixed_field(fixed_ctr_ctrl: int, i: int) -> int:
    """The 4-bit control field of fixed counter i."""
    return fixed_ctr_ctrl >> (4 * i) & 0xF


def cpl_matches(os: bool, usr: bool, cpl: int) -> bool:
    """CPL 0 counts iff OS; CPL 1-3 count iff USR (SDM; KVM `cpl_is_matched`)."""
    return os if cpl == 0 else usr


def make_eventsel(
    event: int, *, usr: bool = True, os: bool = True, intr: bool = False, enable: bool = True
) -> int:
    """Compose an eventsel: `event` is event select + umask (e.g. 0x00C0)."""
    value = event
    value |= EVENTSEL_USR if usr else 0
    value |= EVENTSEL_OS if os else 0
    value |= EVENTSEL_INT if intr else 0
    value |= EVENTSEL_ENABLE if enable else 0
    return value
