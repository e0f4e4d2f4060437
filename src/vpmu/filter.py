"""The PMU event filter userspace installs with KVM_SET_PMU_EVENT_FILTER (spec kvm-vpmu.md §2.14).

Kept apart from the KVM model because the reference consults the same decision as the
invariant I2 gate ("a PMC counts only if ... allowed by the filter"): the filter is policy
the guest must observe, so both sides must agree on what it allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vpmu.errors import ValueRangeError, shown

FilterAction = Literal["allow", "deny"]

MAX_FILTER_EVENTS = 300  # KVM_PMU_EVENT_FILTER_MAX_EVENTS
#: The ioctl's numeric actions (KVM_PMU_EVENT_ALLOW, KVM_PMU_EVENT_DENY).
ACTION_CODES: dict[int, FilterAction] = {0: "allow", 1: "deny"}
#: KVM_PMU_EVENT_FLAG_MASKED_EVENTS, the only valid flag (KVM_PMU_EVENT_FLAGS_VALID_MASK).
FLAG_MASKED_EVENTS = 1
MASKED_EXCLUDE = 1 << 55
MASKED_SELECT = 0xFF | (0xF << 32)
MASKED_MATCH = 0xFF << 8
MASKED_MASK = 0xFF << 56
MASKED_VALID = MASKED_SELECT | MASKED_MATCH | MASKED_MASK | MASKED_EXCLUDE


@dataclass(frozen=True, slots=True)
class MaskedEntry:
    """One masked-event entry: event select, umask mask/match, include or exclude."""

    select: int
    mask: int
    match: int
    exclude: bool


def encode_masked_entry(select: int, mask: int, match: int, exclude: bool) -> int:
    """KVM_PMU_ENCODE_MASKED_ENTRY: select 7:0 and 35:32, match 15:8, exclude 55, mask 63:56."""
    return (
        (select & 0xFF)
        | ((select >> 8 & 0xF) << 32)
        | (match & 0xFF) << 8
        | (mask & 0xFF) << 56
        | (MASKED_EXCLUDE if exclude else 0)
    )


@dataclass(frozen=True, slots=True)
class EventFilter:
    """An installed filter, already converted to masked entries as KVM stores it."""

    action: FilterAction
    entries: tuple[MaskedEntry, ...]
    fixed_counter_bitmap: int = 0

    @staticmethod
    def from_ioctl(
        action: FilterAction | int,
        events: tuple[int, ...],
        fixed_counter_bitmap: int = 0,
        masked: bool = False,
        vendor: str = "intel",
        flags: int = 0,
    ) -> EventFilter:
        """Validate and convert like `kvm_vm_ioctl_set_pmu_event_filter` (§2.14), in its order:
        the action (allow/deny or 0/1, else -EINVAL), the flags (only the masked-events bit,
        else -EINVAL; `masked` sets it), the number of events (-E2BIG), then the entries.

        Non-masked entries with bits other than event select + umask are silently dropped
        (KVM keeps that for ABI); masked entries with unknown bits are rejected (-EINVAL).
        """
        if isinstance(action, int) and not isinstance(action, bool):
            if action not in ACTION_CODES:
                raise ValueRangeError(f"filter action {action} is neither allow (0) nor deny (1) (-EINVAL)")
            action = ACTION_CODES[action]
        if action not in ("allow", "deny"):
            raise ValueRangeError(f"filter action must be 'allow' or 'deny', not {shown(action)}")
        flags |= FLAG_MASKED_EVENTS if masked else 0
        if flags & ~FLAG_MASKED_EVENTS:
            raise ValueRangeError(f"filter flags {flags:#x} have bits other than masked events (-EINVAL)")
        masked = bool(flags & FLAG_MASKED_EVENTS)
        if len(events) > MAX_FILTER_EVENTS:
            raise ValueRangeError(f"filter has {len(events)} events; KVM accepts at most 300 (-E2BIG)")
        if not 0 <= fixed_counter_bitmap <= 0xFFFF_FFFF:
            raise ValueRangeError(f"fixed_counter_bitmap {fixed_counter_bitmap:#x} is not a u32")
        select_mask = 0xFF | (0xF << 32 if vendor == "amd" else 0)
        entries: list[MaskedEntry] = []
        for raw in events:
            if masked:
                if raw & ~MASKED_VALID or (vendor != "amd" and raw & (0xF << 32)):
                    raise ValueRangeError(f"masked filter entry {raw:#x} has invalid bits (-EINVAL)")
                select = (raw & 0xFF) | (raw >> 32 & 0xF) << 8
                entries.append(MaskedEntry(select, raw >> 56 & 0xFF, raw >> 8 & 0xFF,
                                           bool(raw & MASKED_EXCLUDE)))
            else:
                if raw & ~(select_mask | 0xFF00):
                    continue  # dropped silently, as KVM does
                select = (raw & 0xFF) | (raw >> 32 & 0xF) << 8
                entries.append(MaskedEntry(select, 0xFF, raw >> 8 & 0xFF, False))
        entries.sort(key=lambda e: (e.select, e.exclude))
        return EventFilter(action, tuple(entries), fixed_counter_bitmap)

    def _in_filter(self, eventsel: int) -> bool:
        select = (eventsel & 0xFF) | (eventsel >> 32 & 0xF) << 8
        umask = eventsel >> 8 & 0xFF
        hits = [e for e in self.entries if e.select == select and (umask & e.mask) == e.match]
        return any(not e.exclude for e in hits) and not any(e.exclude for e in hits)

    def gp_allowed(self, eventsel: int) -> bool:
        """`is_gp_event_allowed`: ALLOW admits what is in the filter, DENY what is not."""
        inside = self._in_filter(eventsel)
        return inside if self.action == "allow" else not inside

    def fixed_allowed(self, i: int) -> bool:
        """`is_fixed_event_allowed`: only the fixed-counter bitmap decides."""
        bit = bool(self.fixed_counter_bitmap >> i & 1)
        return bit if self.action == "allow" else not bit


def pmc_allowed(flt: EventFilter | None, pmc_idx: int, eventsel: int) -> bool:
    """`check_pmu_event_filter` / `pmc_is_event_allowed`: no filter allows everything."""
    if flt is None:
        return True
    if pmc_idx >= 32:
        return flt.fixed_allowed(pmc_idx - 32)
    return flt.gp_allowed(eventsel)
