"""Event-select layout, the architectural event encodings, and how a counter with CMASK, INV or
EDGE counts a step (docs/reference.md "Counting").

Sources: docs/facts/x86-pmu.md A.1/A.3/A.4, docs/facts/kvm-vpmu.md §1.2 (`kvm_pmu_eventsel`);
the upstream tests' event tables (conformance/NOTES.md §1, §9).
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

EventKind = Literal["instructions", "branches", "cycles", "ref_cycles", "llc_refs", "llc_misses",
                    "branch_misses", "slots"]

#: Events tied to single retired instructions: the models place each one exactly (the first
#: `branches` instructions of a native run are its branches).
RETIREMENT_KINDS: tuple[EventKind, ...] = ("instructions", "branches")
#: Events a native run only states as totals (`Native.cycles` ...): counted per step, every
#: occurrence at the run's last instruction boundary.
STEP_KINDS: tuple[EventKind, ...] = ("cycles", "ref_cycles", "llc_refs", "llc_misses", "branch_misses", "slots")

#: Event select + umask of each modelled event per vendor (Intel architectural events; AMD
#: core events of the same meaning). AMD has no reference-cycles, LLC or topdown event here.
ENCODINGS: dict[str, dict[EventKind, int]] = {
    "intel": {"instructions": 0x00C0, "branches": 0x00C4, "cycles": 0x003C, "ref_cycles": 0x013C,
              "llc_refs": 0x4F2E, "llc_misses": 0x412E, "branch_misses": 0x00C5, "slots": 0x01A4},
    "amd": {"instructions": 0x00C0, "branches": 0x00C2, "cycles": 0x0076, "branch_misses": 0x00C3},
}

#: Intel fixed counter i counts this event.
FIXED_KINDS: dict[int, EventKind] = {0: "instructions", 1: "cycles", 2: "ref_cycles", 3: "slots"}
#: The eventsel KVM gives fixed counter i (perf's encoding for it; 0x0300 and 0x0400 are perf's
#: pseudo-encodings that only a fixed counter can count).
FIXED_EVENTS: dict[int, int] = {0: 0x00C0, 1: 0x003C, 2: 0x0300, 3: 0x0400}


_KIND_OF: dict[str, dict[int, EventKind]] = {v: {enc: k for k, enc in encs.items()} for v, encs in ENCODINGS.items()}
_FIXED_KIND_OF: dict[int, EventKind] = {enc: FIXED_KINDS[i] for i, enc in FIXED_EVENTS.items()}


def event_kind(vendor: str, event: int, fixed: bool = False) -> EventKind | None:
    """Which modelled event an event select + umask is (exactly), or None; on a fixed counter
    also perf's pseudo-encodings (FIXED_EVENTS)."""
    kind = _KIND_OF[vendor].get(event)
    if kind is None and fixed and vendor == "intel":
        return _FIXED_KIND_OF.get(event)
    return kind


def conditioned(eventsel: int) -> bool:
    """The eventsel counts a per-cycle condition, not events: CMASK non-zero or EDGE set (INV
    alone is ignored: the SDM applies it to the CMASK comparison only)."""
    return bool(eventsel & (EVENTSEL_CMASK | EVENTSEL_EDGE))


def per_step(kind: EventKind, eventsel: int) -> bool:
    """A counter the models advance per native step rather than per retired instruction: its
    event is not a retirement event, or it counts a CMASK/EDGE condition."""
    return kind not in RETIREMENT_KINDS or conditioned(eventsel)


def step_count(total: int, eventsel: int, cycles: int | None) -> int:
    """What a counter programmed with `eventsel` counts for `total` events in a step of `cycles`
    cycles (SDM, IA32_PERFEVTSELx: CMASK, INV, EDGE; x86-pmu.md A.3).

    Without CMASK/EDGE it counts the events. Otherwise it counts cycles, and the model only
    has per-step totals, so it fixes a layout: the events are spread as evenly as possible
    over the step's cycles, the cycles with one more event first. CMASK c (1 when only EDGE
    is set) counts the cycles with at least c events, INV the cycles with fewer; EDGE counts
    the condition's rises, at most one per step with this layout (every step starts with the
    condition deasserted). A step without cycles (`cycles` not given, or 0) has no cycles to
    count: 0.
    """
    if not conditioned(eventsel):
        return total
    if not cycles:
        return 0
    threshold = (eventsel & EVENTSEL_CMASK) >> 24 or 1
    per_cycle, heavier = divmod(total, cycles)
    if per_cycle >= threshold:
        met = cycles
    elif per_cycle + 1 >= threshold:
        met = heavier
    else:
        met = 0
    if eventsel & EVENTSEL_INV and eventsel & EVENTSEL_CMASK:
        met = cycles - met
    if eventsel & EVENTSEL_EDGE:
        return 1 if met else 0
    return met


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
