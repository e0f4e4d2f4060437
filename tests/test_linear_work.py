"""Native runs and the checker cost O(overflows): bulk arithmetic equals the step-by-step
definition (Hypothesis), and the work counted does not grow with rescans."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from vpmu.host import PerfEvent


def _naive(ev: PerfEvent, events: int) -> bool:
    """The definition: one hardware interrupt at a time (the pre-bulk `advance`)."""
    hit = False
    while events > 0:
        n = min(events, ev.armed) if ev.armed and not ev.overflow_pending else events
        events -= n
        ev.count += n
        if ev.sample_period == 0:
            continue
        ev.period_left -= n
        if ev.overflow_pending or ev.armed == 0:
            continue
        ev.armed -= n
        if ev.armed > 0:
            continue
        if ev.period_left <= 0:
            ev.overflow_pending, ev.armed, hit = True, 0, True
            assert events == 0
        else:
            ev._set_period()  # noqa: SLF001 - the definition uses perf's own re-arm
    return hit


@settings(max_examples=300, deadline=None)
@given(period=st.integers(1, 5000), width=st.integers(2, 12), left=st.integers(-300, 5000), data=st.data())
def test_bulk_advance_is_the_step_by_step_definition(period: int, width: int, left: int,
                                                     data: st.DataObject) -> None:
    ev = PerfEvent(0, 0xC0, 0xC0, False, False, period, (1 << (width - 1)) - 1, period_left=left)
    ref = replace(ev)
    for _ in range(4):
        need = ev.events_to_interrupt()
        n = data.draw(st.integers(1, need if need else 3000))
        assert ev.advance(n) == _naive(ref, n)
        assert ev == ref
        if ev.overflow_pending:
            assert n == need
            ev.land_pmi()
            ref.land_pmi()
