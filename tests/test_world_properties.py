"""Hypothesis properties of the KVM world over random action sequences without racing choices
(hold_pmi False, host PMIs before the handler, perf creation never fails).

Guest-visible values are compared with a small independent architectural computation
(`Expected` below), written from spec architecture-and-peers.md A.3-A.6, not from the model,
and with `vpmu.reference.ReferenceMachine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpmu import msrs as M
from vpmu.actions import (
    Batch,
    ClearFilter,
    Cpuid,
    Emulate,
    Hlt,
    HostPmi,
    HostWrmsr,
    Insn,
    Native,
    PerfFail,
    Rdmsr,
    Rdpmc,
    SaveRestore,
    SetFilter,
    Wrmsr,
)
from vpmu.config import PmuConfig
from vpmu.filter import EventFilter, pmc_allowed
from vpmu.reference import ReferenceMachine
from vpmu.world import World

W = 8
CFG = PmuConfig("intel", 2, 2, W, 1, W, full_width_writes=True, pdcm=True, name="small")
MASK = (1 << W) - 1
IDX = CFG.pmc_indices  # (0, 1, 32)

EVENTS = st.sampled_from([0x00C0, 0x00C4, 0x003C])
FLAGS = st.sets(st.sampled_from([1 << 16, 1 << 17, 1 << 20, 1 << 22]))
EVENTSEL = st.builds(lambda e, f: e | sum(f), EVENTS, FLAGS)
NEAR = st.one_of(st.integers(0, MASK), st.integers(MASK - 6, MASK))
MSR_ACTIONS = st.one_of(
    st.builds(Wrmsr, st.sampled_from([M.IA32_PERFEVTSEL0, M.IA32_PERFEVTSEL0 + 1]), EVENTSEL),
    st.builds(Wrmsr, st.sampled_from([M.IA32_A_PMC0, M.IA32_A_PMC0 + 1, M.IA32_FIXED_CTR0]), NEAR),
    st.builds(Wrmsr, st.sampled_from([M.IA32_PMC0, M.IA32_PMC0 + 1]),
              st.one_of(NEAR, st.integers(0x8000_0000, 0xFFFF_FFFF))),
    st.builds(Wrmsr, st.just(M.IA32_FIXED_CTR_CTRL), st.sampled_from([0, 1, 2, 3, 8, 9, 0xA, 0xB])),
    st.builds(Wrmsr, st.just(M.IA32_PERF_GLOBAL_CTRL),
              st.sampled_from([0, 1, 2, 3, 1 << 32, (1 << 32) | 3])),
    st.builds(Wrmsr, st.just(M.IA32_PERF_GLOBAL_OVF_CTRL), st.sampled_from([0, 1, 2, 1 << 32])),
    st.builds(Rdmsr, st.sampled_from([M.IA32_A_PMC0, M.IA32_PMC0 + 1, M.IA32_FIXED_CTR0,
                                      M.IA32_PERF_GLOBAL_STATUS])),
    st.builds(Rdpmc, st.sampled_from([0, 1, 0x4000_0000]), st.sampled_from([0, 3])),
)
ITEMS = st.lists(st.one_of(st.builds(Insn, st.booleans(), st.sampled_from([0, 3])), MSR_ACTIONS),
                 min_size=1, max_size=6)
ACTION = st.one_of(
    MSR_ACTIONS,
    st.builds(lambda n, b, c: Native(n, min(b, n), c), st.integers(0, 700), st.integers(0, 300),
              st.sampled_from([0, 3])),
    st.builds(Cpuid, st.sampled_from([0, 3])),
    st.builds(Emulate, ITEMS.map(tuple)),
    st.builds(Batch, ITEMS.map(tuple)),
    st.just(Hlt()),
    st.builds(SetFilter, st.sampled_from(["allow", "deny"]), st.sampled_from([(0x00C0,), (0x00C4,), ()]),
              st.sampled_from([0, 1])),
    st.just(ClearFilter()),
    st.just(SaveRestore()),
)
SEQ = st.lists(ACTION, max_size=25)
START = [HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 3)]  # same start state in every era (spec I8)


@dataclass
class Expected:
    """Architectural counter values: written values + qualifying retired events, mod 2^W."""

    value: dict[int, int] = field(default_factory=lambda: dict.fromkeys(IDX, 0))
    eventsel: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})
    fixed_ctrl: int = 0
    global_ctrl: int = 3
    flt: EventFilter | None = None

    def counts(self, idx: int, kind: str, cpl: int) -> bool:
        if not self.global_ctrl >> idx & 1:
            return False
        if idx >= 32:
            f = self.fixed_ctrl & 0xF
            en, os_, usr, ev = bool(f & 3), bool(f & 1), bool(f & 2), 0x00C0
        else:
            s = self.eventsel[idx]
            en, os_, usr, ev = bool(s & 1 << 22), bool(s & 1 << 17), bool(s & 1 << 16), s & 0xFFFF
        if not en or not (os_ if cpl == 0 else usr):
            return False
        if not pmc_allowed(self.flt, idx, ev if idx >= 32 else self.eventsel[idx]):
            return False
        return ev == {"instructions": 0x00C0, "branches": 0x00C4}[kind]

    def retire(self, n: int, branches: int, cpl: int) -> None:
        for idx in IDX:
            add = (n if self.counts(idx, "instructions", cpl) else 0)
            add += branches if self.counts(idx, "branches", cpl) else 0
            self.value[idx] = (self.value[idx] + add) & MASK

    def msr(self, item: Wrmsr | Rdmsr | Rdpmc) -> None:
        if isinstance(item, Rdpmc):
            self.retire(1, 0, item.cpl)
            return
        if item.cpl != 0:
            return
        if isinstance(item, Wrmsr):
            m, v = item.msr, item.value
            if m in (M.IA32_PERFEVTSEL0, M.IA32_PERFEVTSEL0 + 1):
                self.eventsel[m - M.IA32_PERFEVTSEL0] = v
            elif m in (M.IA32_A_PMC0, M.IA32_A_PMC0 + 1):
                if v > MASK:
                    return
                self.value[m - M.IA32_A_PMC0] = v
            elif m in (M.IA32_PMC0, M.IA32_PMC0 + 1):
                self.value[m - M.IA32_PMC0] = (v | (0xFFFF_FFFF_0000_0000 if v >> 31 & 1 else 0)) & MASK
            elif m == M.IA32_FIXED_CTR0:
                self.value[32] = v & MASK
            elif m == M.IA32_FIXED_CTR_CTRL:
                self.fixed_ctrl = v
            elif m == M.IA32_PERF_GLOBAL_CTRL:
                self.global_ctrl = v
        self.retire(1, 0, 0)

    def step(self, a: object) -> None:
        if isinstance(a, Native):
            self.retire(a.count, a.branches, a.cpl)
        elif isinstance(a, Cpuid):
            self.retire(1, 0, a.cpl)
        elif isinstance(a, Hlt):
            self.retire(1, 0, 0)
        elif isinstance(a, Wrmsr | Rdmsr | Rdpmc):
            self.msr(a)
        elif isinstance(a, Emulate | Batch):
            for item in a.items:
                if isinstance(item, Insn):
                    self.retire(1, 1 if item.branch else 0, item.cpl)
                else:
                    self.msr(item)
        elif isinstance(a, SetFilter):
            self.flt = EventFilter.from_ioctl(a.action, a.events, a.fixed_counter_bitmap, a.masked, "intel")
        elif isinstance(a, ClearFilter):
            self.flt = None

    def counters(self) -> tuple[int, ...]:
        return tuple(self.value[i] for i in IDX)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("era", ["6.8", "6.9", "mediated"])
@given(seq=SEQ)
@SETTINGS
def test_values_match_architecture(era: str, seq: list) -> None:  # type: ignore[type-arg]
    world = World(CFG, era)
    for a in START:
        world.step(a)
    exp = Expected()
    for a in seq:
        obs = world.step(a)
        exp.step(a)
        assert obs.counters == exp.counters(), (a, obs.log)


@pytest.mark.parametrize("era", ["6.1", "6.6", "6.8", "6.9", "mediated"])
@given(seq=SEQ)
@SETTINGS
def test_values_within_width_and_clone_is_faithful(era: str, seq: list) -> None:  # type: ignore[type-arg]
    world = World(CFG, era)
    half = len(seq) // 2
    for a in seq[:half]:
        world.step(a)
    twin = world.clone()
    assert twin.state_key() == world.state_key()
    hash(world.state_key())
    for a in seq[half:]:
        o1, o2 = world.step(a), twin.step(a)
        assert o1 == o2
        assert all(0 <= v <= MASK for v in o1.counters)


@pytest.mark.parametrize("era", ["6.9", "mediated"])
@given(seq=SEQ)
@settings(max_examples=30, deadline=None)
def test_values_match_reference(era: str, seq: list) -> None:  # type: ignore[type-arg]
    world, ref = World(CFG, era), ReferenceMachine(CFG)
    for a in [*START, *seq]:
        assert world.step(a).counters == ref.step(a).counters


RACY = st.one_of(
    ACTION,
    st.builds(Native, st.integers(0, 700), st.just(0), st.sampled_from([0, 3]), st.just(True)),
    st.builds(Cpuid, st.sampled_from([0, 3]), st.sampled_from(["before-handler", "after-handler"])),
    st.builds(Wrmsr, st.sampled_from([M.IA32_A_PMC0, M.IA32_PERFEVTSEL0, M.X2APIC_LVTPC]),
              st.one_of(NEAR, EVENTSEL), st.just(0), st.sampled_from(["before-handler", "after-handler"])),
    st.just(HostPmi()),
    st.builds(PerfFail, st.booleans()),
    st.builds(Wrmsr, st.integers(0, 0xC001_0300), st.integers(-5, 1 << 65)),
    st.builds(Rdmsr, st.integers(0, 0xC001_0300)),
    st.builds(HostWrmsr, st.integers(0, 0xC001_0300), st.integers(0, 1 << 64)),
    st.builds(Rdpmc, st.integers(0, 0xFFFF_FFFF)),
)


@pytest.mark.parametrize("preset_name", ["intel-v1", "intel-v5", "amd-k7", "amd-perfmon-v2"])
@pytest.mark.parametrize("era", ["6.1", "6.6", "6.9", "mediated"])
@given(seq=st.lists(RACY, max_size=20))
@settings(max_examples=25, deadline=None)
def test_racing_and_bad_input_never_raise(preset_name: str, era: str, seq: list) -> None:  # type: ignore[type-arg]
    from vpmu.config import preset

    cfg = preset(preset_name)
    cfg = cfg.with_width(8) if cfg.is_intel else cfg   # AMD counters are always 48 bits
    world = World(cfg, era)
    for a in seq:
        obs = world.step(a)
        assert all(0 <= v <= cfg.gp_mask for v in obs.counters)
        if isinstance(a, Rdmsr | Rdpmc):
            assert all(r.fault == (r.value is None) for r in obs.results)
