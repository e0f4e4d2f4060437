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


def _overflow_run(n: int) -> tuple[object, ...]:
    """n/4 rounds of: a native run that wraps a 4-bit counter 4 times with PMIs, an emulated
    instruction, the guest's status clear and LVTPC unmask (many wraps, signals, PMIs, gaps)."""
    from vpmu import actions as A
    from vpmu import msrs as M
    from vpmu.config import preset
    from vpmu.explore import setup_prefix
    from vpmu.run import start_machines

    cfg = preset("intel-v2").with_width(4)
    acts = list(setup_prefix(cfg, [0]))
    for _ in range(n // 4):
        acts += [A.Native(63), A.Emulate((A.Insn(),)), A.Wrmsr(M.IA32_PERF_GLOBAL_OVF_CTRL, 1),
                 A.Wrmsr(M.X2APIC_LVTPC, 0x400)]
    ref, kvm = start_machines(cfg, "6.6")
    return cfg, [ref.step(a) for a in acts], [kvm.step(a) for a in acts]


def test_the_checker_examines_o_overflows_entries() -> None:
    """No rescans: the index entries the checker examines grow linearly with the overflows
    (the quadratic rescan examined ~n^2/2: 2 million at n = 2000)."""
    from vpmu.checker import check_work

    per_overflow = []
    for n in (500, 1000, 2000):
        cfg, ref, kvm = _overflow_run(n)
        wraps = sum(1 for o in ref for s in o.signals if s.source == "wrap")
        assert wraps >= n
        per_overflow.append(check_work(cfg, ref, kvm) / wraps)
    assert max(per_overflow) < 8
    assert per_overflow[-1] < per_overflow[0] * 1.25


def test_a_small_host_counter_costs_o_overflows() -> None:
    """10^12 instructions on a 3-bit host counter (max_period 3): no guest overflow, and a
    handful of native loop iterations, not 10^12 / 3."""
    from vpmu import actions as A
    from vpmu.config import preset
    from vpmu.explore import setup_prefix
    from vpmu.host import PerfEvent
    from vpmu.world import World, WorldOptions

    calls = 0
    real = PerfEvent.advance

    def counting(self: PerfEvent, events: int) -> bool:
        nonlocal calls
        calls += 1
        return real(self, events)

    cfg = preset("intel-v2")
    world = World(cfg, "6.8", None, WorldOptions(host_counter_width=3))
    for a in setup_prefix(cfg, [0]):
        before = world.step(a).counters[0]
    PerfEvent.advance = counting  # type: ignore[method-assign]
    try:
        obs = world.step(A.Native(10**12))
    finally:
        PerfEvent.advance = real  # type: ignore[method-assign]
    assert obs.counters[0] == before + 10**12 and not obs.pmis
    assert calls < 10
