"""Host perf event model: the `perf_event` that backs one KVM PMC (spec kvm-vpmu.md §2.9).

What is modelled (paraphrasing perf core and the x86 PMU driver, spec §2.9 "Perf core
semantics"):

* A guest-only (`exclude_host`) pinned event counts guest instructions/branches that match its
  raw config while the guest runs, honouring exclude_user / exclude_kernel against the CPL.
* `count` is the value `perf_event_pause(reset=True)` returns and zeroes; `read()` is
  `perf_event_read_value()` (no side effects).
* Sampling: `sample_period` (0 = pure counting event, never calls back) and `period_left`,
  the real number of events left in the current period (may go negative after an overflow
  that has not been handled yet). Arming follows `x86_perf_event_set_period()`: a non-positive
  `period_left` is reloaded with the period, the hardware is armed for at least 2 events and
  at most max_period = 2^(W_host-1)-1 events. A hardware interrupt with `period_left > 0`
  (max_period clamp) just re-arms silently; only an interrupt whose period really elapsed is an
  overflow. Clamping therefore never produces a spurious callback, and the minimum of 2 makes
  a period of 1 overflow after 2 events (spec §4.3-5, R3).
* An overflow does not run KVM's callback synchronously: it raises a *pending host PMI*
  (`overflow_pending`). The world decides when the PMI lands (`land_pmi()`), which re-arms
  the event and then lets the caller run the overflow handler. Until then the hardware counter
  has wrapped to small values and cannot interrupt again.
* Stopping the event (pause, release) or changing its period while a PMI is in flight loses
  that PMI: the x86 handler skips counters that are not active, and a restarted counter whose
  `period_left` was reloaded reports no elapsed period.
* `perf_event_period()` rejects 0 and values with bit 63 set (-EINVAL) and resets
  `period_left` to 0 so the next start arms a full period.
* Creation failure is a host switch (`PerfHost.fail`).
"""

from __future__ import annotations

from dataclasses import dataclass

EINVAL = -22
ENOENT = -2

#: Host GP counters are 48 bits wide on every modelled CPU (Intel and AMD).
HOST_COUNTER_WIDTH = 48


def max_period(host_width: int = HOST_COUNTER_WIDTH) -> int:
    """Intel `x86_pmu.max_period`: 2^(W-1) - 1 for a W-bit host counter."""
    return (1 << (host_width - 1)) - 1


@dataclass(slots=True)
class PerfEvent:
    """One host perf event created by `perf_event_create_kernel_counter` for a PMC.

    config:       raw event config (eventsel & raw_event_mask, or the fixed counter's
                  synthetic eventsel); the event select + umask part decides what counts.
    event:        event select + unit mask (incl. AMD bits 35:32) extracted from config.
    """

    pmc_idx: int
    config: int
    event: int
    exclude_user: bool
    exclude_kernel: bool
    sample_period: int
    max_period: int
    count: int = 0
    enabled: bool = True
    period_left: int = 0
    armed: int = 0           # events until the hardware interrupts; 0 = not armed
    overflow_pending: bool = False

    def __post_init__(self) -> None:
        if self.enabled:
            self._set_period()

    # --- x86 arming -------------------------------------------------------------------

    def _set_period(self) -> None:
        """Mirrors x86_perf_event_set_period() (arch/x86/events/core.c), spec §2.9."""
        period = self.sample_period
        if period == 0:
            self.armed = 0
            return
        left = self.period_left
        if left <= -period:
            left = period
        elif left <= 0:
            left += period
        self.period_left = left
        self.armed = min(max(left, 2), self.max_period)

    def counts_at(self, cpl: int) -> bool:
        """exclude_user / exclude_kernel against the CPL the guest runs at."""
        return not (self.exclude_kernel if cpl == 0 else self.exclude_user)

    def advance(self, events: int) -> bool:
        """Count `events` guest events; True when the hardware interrupted on the last one.

        Callers never pass more events than `events_to_interrupt()` (the world stops at
        interrupt points). The silent re-arms of the max_period clamp on the way (R3: a small
        host counter interrupts every max_period events) are taken in bulk, so the cost is
        O(1) whatever the host counter width.
        """
        if not self.enabled or events <= 0:
            return False
        self.count += events
        if self.sample_period == 0:
            return False
        if self.overflow_pending or self.armed == 0:
            self.period_left -= events
            return False
        left = events
        while left >= self.armed:
            left -= self.armed
            self.period_left -= self.armed
            self.armed = 0
            if self.period_left <= 0:  # hardware counter interrupt: a real overflow
                self.overflow_pending = True
                self.period_left -= left
                return True
            self._set_period()  # max_period clamp: silent re-arm, no callback
            if self.armed == self.max_period and left >= self.armed:
                cycles = min(left // self.armed, (self.period_left - 1) // self.armed)
                left -= cycles * self.armed
                self.period_left -= cycles * self.armed
                self._set_period()
        self.armed -= left
        self.period_left -= left
        return False

    def events_to_interrupt(self) -> int:
        """Events until the hardware raises a real overflow (the silent max_period re-arms on
        the way do not stop a native run); 0: it cannot interrupt (no period, or one pending)."""
        if not self.enabled or self.sample_period == 0 or self.overflow_pending or self.armed == 0:
            return 0
        if self.period_left - self.armed <= 0:
            return self.armed
        # silent re-arms of max_period events while more than max_period are left, then the rest
        m = self.max_period
        rest = self.period_left - self.armed
        cycles = (rest - 1) // m
        return self.armed + cycles * m + min(max(rest - cycles * m, 2), m)

    def land_pmi(self) -> bool:
        """The host PMI for this event is handled: re-arm (save_and_restart), then the caller
        runs the overflow handler. Returns whether an overflow was pending."""
        if not self.overflow_pending:
            return False
        self.overflow_pending = False
        self._set_period()
        return True

    # --- perf core API used by KVM ----------------------------------------------------

    @property
    def period_elapsed_silently(self) -> bool:
        """The period has elapsed but the hardware, armed for at least 2 events (R3), has not
        interrupted yet. Pausing the event or changing its period now means perf never
        reports this overflow."""
        return self.enabled and self.sample_period > 0 and not self.overflow_pending and self.period_left <= 0

    def pause(self) -> tuple[int, bool]:
        """Mirrors perf_event_pause(event, reset=true) (kernel/events/core.c), spec §2.9.

        Returns (count, lost_pmi): the count read and zeroed, and whether an in-flight PMI
        was lost because the event stopped."""
        lost = self.overflow_pending
        self.overflow_pending = False
        self.enabled = False
        self.armed = 0
        value = self.count
        self.count = 0
        return value, lost

    def read(self) -> int:
        """Mirrors perf_event_read_value(): the live count, no side effects."""
        return self.count

    def set_period(self, period: int) -> tuple[int, bool]:
        """Mirrors perf_event_period() / __perf_event_period(), spec §2.9.

        Returns (error, lost_pmi). 0 and bit-63 periods are rejected with -EINVAL; otherwise
        the period is stored and `period_left` reset to 0 (a full period from the restart)."""
        if period == 0 or period >> 63:
            return EINVAL, False
        lost = self.overflow_pending
        self.overflow_pending = False
        self.sample_period = period
        self.period_left = 0
        if self.enabled:
            self._set_period()
        return 0, lost

    def enable(self) -> None:
        """Mirrors perf_event_enable(): restart counting, arming from period_left."""
        if not self.enabled:
            self.enabled = True
            self._set_period()

    def clone(self) -> PerfEvent:
        c = PerfEvent.__new__(PerfEvent)
        for name in PerfEvent.__slots__:
            setattr(c, name, getattr(self, name))
        return c

    def key(self) -> tuple[int, ...]:
        return (self.config, int(self.exclude_user), int(self.exclude_kernel), self.sample_period,
                self.count, int(self.enabled), self.period_left, self.armed, int(self.overflow_pending))


@dataclass(slots=True)
class PerfHost:
    """The host side: the creation-failure switch and the host counter width."""

    fail: bool = False
    host_width: int = HOST_COUNTER_WIDTH

    def create(self, pmc_idx: int, config: int, event: int, exclude_user: bool, exclude_kernel: bool,
               sample_period: int) -> PerfEvent | int:
        """Mirrors perf_event_create_kernel_counter(): a new enabled event, or a -errno."""
        if self.fail:
            return ENOENT
        if sample_period >> 63:
            return EINVAL
        return PerfEvent(pmc_idx, config, event, exclude_user, exclude_kernel, sample_period,
                         max_period(self.host_width))
