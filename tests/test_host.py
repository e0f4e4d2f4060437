"""The host perf event model (vpmu.host) on its own: x86 arming with perf's minimum of 2 and
max_period clamp, pause and period changes losing an in-flight PMI, creation failures
(spec kvm-vpmu.md §2.9, R3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vpmu.host import EINVAL, ENOENT, HOST_COUNTER_WIDTH, PerfEvent, PerfHost, max_period

INSTRUCTIONS = 0x00C0


def event(period: int, width: int = HOST_COUNTER_WIDTH, *, exclude_user: bool = False,
          exclude_kernel: bool = False) -> PerfEvent:
    ev = PerfHost(host_width=width).create(0, INSTRUCTIONS, INSTRUCTIONS, exclude_user, exclude_kernel, period)
    assert isinstance(ev, PerfEvent)
    return ev


def test_max_period_is_half_the_host_counter() -> None:
    assert max_period() == (1 << 47) - 1
    assert max_period(8) == 127


def test_period_one_is_armed_for_two_events() -> None:
    """R3: the hardware is armed for at least 2 events, so period 1 overflows after 2."""
    ev = event(1)
    assert ev.armed == 2
    assert not ev.advance(1)
    assert ev.period_left == 0 and ev.period_elapsed_silently
    assert ev.advance(1) and ev.overflow_pending
    assert not ev.period_elapsed_silently
    assert ev.land_pmi() and not ev.overflow_pending and ev.armed == 2


def test_period_two_overflows_exactly_on_time() -> None:
    ev = event(2)
    assert not ev.advance(1)
    assert not ev.period_elapsed_silently
    assert ev.advance(1) and ev.read() == 2


def test_max_period_clamp_rearms_silently() -> None:
    """A period longer than max_period interrupts early; that interrupt is no overflow."""
    ev = event(300, width=8)
    assert ev.armed == 127
    assert not ev.advance(127) and ev.armed == 127 and ev.period_left == 173
    assert not ev.advance(127) and ev.armed == 46
    assert ev.advance(46) and ev.overflow_pending and ev.read() == 300


@given(st.integers(1, 2000), st.integers(3, 12))
def test_first_overflow_after_max_of_period_and_two(period: int, width: int) -> None:
    """Counting from one interrupt point to the next, the first overflow comes after the
    period, or one event later when the part left after the max_period clamps is 1 (armed
    for 2, R3); never early (hosts have max_period >= 3)."""
    ev = event(period, width)
    while not ev.advance(ev.armed):
        assert ev.read() < period + 1
    late = ev.read() - period
    assert late in (0, 1)
    assert late == (1 if period == 1 or (period > ev.max_period and period % ev.max_period == 1) else 0)


def test_pause_loses_an_in_flight_pmi() -> None:
    ev = event(5)
    assert ev.advance(5)
    assert ev.pause() == (5, True)
    assert not ev.overflow_pending and not ev.enabled and ev.read() == 0
    assert not ev.land_pmi()                    # nothing left to land
    assert not ev.advance(10) and ev.read() == 0  # a paused event counts nothing
    ev.enable()
    assert ev.enabled and ev.armed > 0


def test_pause_without_pending_pmi_loses_nothing() -> None:
    ev = event(5)
    ev.advance(3)
    assert ev.pause() == (3, False)


def test_set_period_resets_period_left_and_loses_pending_pmi() -> None:
    ev = event(10)
    ev.advance(3)
    assert ev.period_left == 7
    assert ev.set_period(10) == (0, False)
    assert ev.period_left == 10 and ev.armed == 10   # a full period from the restart
    assert ev.advance(10)
    assert ev.set_period(4) == (0, True)             # the in-flight PMI is lost
    assert not ev.overflow_pending and ev.armed == 4


def test_set_period_rejects_zero_and_bit_63() -> None:
    ev = event(10)
    ev.advance(3)
    assert ev.set_period(0) == (EINVAL, False)
    assert ev.set_period(1 << 63) == (EINVAL, False)
    assert ev.sample_period == 10 and ev.period_left == 7


def test_counting_event_never_interrupts() -> None:
    ev = event(0)
    assert ev.armed == 0
    assert not ev.advance(1 << 50) and ev.read() == 1 << 50


def test_exclude_user_and_kernel_against_cpl() -> None:
    assert event(1, exclude_user=True).counts_at(0)
    assert not event(1, exclude_user=True).counts_at(3)
    assert not event(1, exclude_kernel=True).counts_at(0)
    assert event(1, exclude_kernel=True).counts_at(3)


def test_creation_failures() -> None:
    assert PerfHost(fail=True).create(0, INSTRUCTIONS, INSTRUCTIONS, False, False, 1) == ENOENT
    assert PerfHost().create(0, INSTRUCTIONS, INSTRUCTIONS, False, False, 1 << 63) == EINVAL


def test_clone_is_independent() -> None:
    ev = event(5)
    twin = ev.clone()
    assert twin.key() == ev.key()
    twin.advance(5)
    assert twin.overflow_pending and not ev.overflow_pending and twin.key() != ev.key()


def test_created_event_carries_what_kvm_asked_for() -> None:
    ev = PerfHost().create(3, 0x5300C0, INSTRUCTIONS, True, False, 7)
    assert isinstance(ev, PerfEvent)
    assert (ev.pmc_idx, ev.config, ev.event, ev.exclude_user, ev.exclude_kernel, ev.sample_period) == \
        (3, 0x5300C0, INSTRUCTIONS, True, False, 7)


def test_state_after_pause_land_and_period_change_is_exact() -> None:
    """The state key (what the explorer hashes) after each perf call, field by field:
    (config, exclude_user, exclude_kernel, period, count, enabled, period_left, armed, pending)."""
    ev = event(5)
    assert ev.advance(5)
    assert ev.key() == (INSTRUCTIONS, 0, 0, 5, 5, 1, 0, 0, 1)      # interrupted: disarmed, pending
    assert ev.land_pmi()
    assert ev.key() == (INSTRUCTIONS, 0, 0, 5, 5, 1, 5, 5, 0)      # re-armed for a full period
    assert not ev.advance(0) and ev.key()[4] == 5                  # zero events count nothing
    assert ev.advance(5) and ev.set_period(3) == (0, True)
    assert ev.key() == (INSTRUCTIONS, 0, 0, 3, 10, 1, 3, 3, 0)
    assert ev.advance(3) and ev.pause() == (13, True)
    assert ev.key() == (INSTRUCTIONS, 0, 0, 3, 0, 0, 0, 0, 0)


def test_a_pending_overflow_stops_further_interrupts_until_it_lands() -> None:
    ev = event(2)
    assert ev.advance(2)
    assert not ev.advance(1) and ev.overflow_pending and ev.read() == 3 and ev.period_left == -1


def test_a_period_left_of_minus_one_period_or_less_restarts_a_full_period() -> None:
    """x86_perf_event_set_period(): left <= -period restarts at period; -period < left <= 0
    adds one period."""
    for left, armed in ((-5, 5), (-6, 5), (-4, 2), (0, 5)):
        ev = event(5)
        ev.period_left = left
        ev.land_pmi()
        ev.overflow_pending = True
        assert ev.land_pmi() and ev.armed == armed, left
