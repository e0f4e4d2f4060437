"""Hypothesis properties of the architectural reference PMU (spec A.6, A.7, A.8; invariants I1, I3, I4)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vpmu import msrs as M
from vpmu.arch import ArchPmu
from vpmu.config import PmuConfig, preset
from vpmu.events import ENCODINGS, make_eventsel

SETTINGS = settings(max_examples=120, deadline=None)
UNMASKED = M.LVTPC_DELIVERY_NMI

widths = st.sampled_from([2, 3, 4, 5, 8, 48])
vendors = st.sampled_from(["intel", "amd"])


def make(vendor: str, width: int) -> ArchPmu:
    """Intel counters `width` bits wide; AMD counters are always 48 bits (start values then
    sit near the top instead, see `start_value`)."""
    cfg = preset("intel-v4").with_width(width) if vendor == "intel" else preset("amd-perfmon-v2")
    return ArchPmu(cfg, lvtpc=UNMASKED)


def start_value(cfg: PmuConfig, start: int, width: int) -> int:
    """A counter start that wraps like a `width`-bit counter starting at `start` would, the
    first time: the value itself on a counter that narrow, else that far below the top."""
    if cfg.gp_width == width:
        return start & cfg.gp_mask
    return cfg.gp_mask + 1 - (1 << width) + start % (1 << width)


def sel_msr(p: ArchPmu, i: int) -> int:
    return (M.IA32_PERFEVTSEL0 + i) if p.is_intel else (M.MSR_F15H_PERF_CTL0 + 2 * i)


def ctr_msr(p: ArchPmu, i: int) -> int:
    return (M.IA32_A_PMC0 + i) if p.is_intel else (M.MSR_F15H_PERF_CTL0 + 2 * i + 1)


# A counter programming: (event kind, os, usr, int)
programs = st.lists(
    st.tuples(st.sampled_from(["instructions", "branches", "off"]), st.booleans(), st.booleans(), st.booleans()),
    min_size=1, max_size=4,
)
# A run: (count, branches, cpl)
runs = st.lists(st.tuples(st.integers(0, 70), st.integers(0, 70), st.sampled_from([0, 3])), min_size=1, max_size=5)


def program(p: ArchPmu, progs: list[tuple[str, bool, bool, bool]], starts: list[int], fixed: int,
            width: int) -> None:
    for i, (kind, os, usr, intr) in enumerate(progs):
        enc = ENCODINGS[p.cfg.vendor]["instructions" if kind == "off" else kind]
        sel = make_eventsel(enc, os=os, usr=usr, intr=intr, enable=kind != "off")
        assert p.wrmsr(sel_msr(p, i), sel).fault is False
        assert p.wrmsr(ctr_msr(p, i), start_value(p.cfg, starts[i], width)).fault is False
    if p.is_intel:
        assert p.wrmsr(M.IA32_FIXED_CTR_CTRL, fixed).fault is False
        assert p.wrmsr(M.IA32_PERF_GLOBAL_CTRL, p.cfg.global_ctrl_valid_bits).fault is False


def expected_events(kind: str, os: bool, usr: bool, rs: list[tuple[int, int, int]]) -> int:
    total = 0
    for n, b, cpl in rs:
        if kind == "off" or not (os if cpl == 0 else usr):
            continue
        total += n if kind == "instructions" else min(b, n)
    return total


@SETTINGS
@given(vendors, widths, programs, st.lists(st.integers(0, (1 << 64) - 1), min_size=4, max_size=4), runs)
def test_value_is_write_plus_events_mod_width(vendor: str, width: int, progs: list[tuple[str, bool, bool, bool]],
                                              starts: list[int], rs: list[tuple[int, int, int]]) -> None:
    """I1 (A.6): the value read equals the written value + qualifying events, mod 2^width."""
    p = make(vendor, width)
    program(p, progs, starts, 0, width)
    for n, b, cpl in rs:
        p.retire(n, min(b, n), cpl)
    for i, (kind, os, usr, _) in enumerate(progs):
        want = (start_value(p.cfg, starts[i], width) + expected_events(kind, os, usr, rs)) & p.cfg.gp_mask
        assert p.rdmsr(ctr_msr(p, i)).value == want
        assert p.rdpmc(i).value == want


@SETTINGS
@given(vendors, widths, programs, st.lists(st.integers(0, 300), min_size=4, max_size=4),
       st.lists(st.one_of(st.tuples(st.integers(0, 40), st.integers(0, 40), st.sampled_from([0, 3])),
                          st.just((-1, 0, 0))), min_size=1, max_size=8))
def test_status_bit_iff_wrap_since_last_clear(vendor: str, width: int, progs: list[tuple[str, bool, bool, bool]],
                                              starts: list[int], ops: list[tuple[int, int, int]]) -> None:
    """I3 (A.7): status bit i is set iff PMC i wrapped at least once since the last clear."""
    p = make(vendor, width)
    program(p, progs, starts, 0, width)
    p.take()
    wrapped: set[int] = set()
    clear = M.IA32_PERF_GLOBAL_OVF_CTRL if p.is_intel else M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR
    for n, b, cpl in ops:
        if n < 0:
            assert p.wrmsr(clear, p.cfg.global_ctrl_valid_bits).fault is False
            wrapped.clear()
            continue
        p.retire(n, min(b, n), cpl)
        wrapped |= {w.pmc for w in p.take()[0]}
        assert p.global_status == sum(1 << i for i in wrapped)


@SETTINGS
@given(vendors, widths, programs, st.lists(st.integers(0, 300), min_size=4, max_size=4), runs,
       st.sampled_from([0x0, 0x8, 0x9, 0xB]))
def test_pmi_requests_equal_wraps_with_int(vendor: str, width: int, progs: list[tuple[str, bool, bool, bool]],
                                           starts: list[int], rs: list[tuple[int, int, int]], fixed: int) -> None:
    """I4 (A.7/A.8): one PMI request per wrap of a PMC with INT/PMI set; with LVTPC unmasked
    again after each delivery, every request is delivered."""
    p = make(vendor, width)
    program(p, progs, starts, fixed, width)
    p.take()
    requests = wraps_with_int = delivered = boundaries = 0
    for n, b, cpl in rs:
        b = min(b, n)
        for k in range(n):
            p.retire_one(k < b, cpl)
            wraps, pmis, _ = p.take()
            wraps_with_int += sum(1 for w in wraps if p.pmi_enabled(w.pmc))
            requests += sum(len(x.pmcs) for x in pmis)
            delivered += sum(1 for x in pmis if x.delivered)
            assert len(pmis) <= 1
            if pmis:
                assert pmis[0].delivered
                boundaries += 1
            p.wrmsr(M.X2APIC_LVTPC, UNMASKED)
    assert requests == wraps_with_int
    assert delivered == boundaries


@SETTINGS
@given(st.sampled_from(["intel-v1", "intel-v2", "intel-v4", "amd-k7", "amd-perfmon-v2"]), widths, programs,
       st.lists(st.integers(0, 1000), min_size=4, max_size=4), runs, st.sampled_from([0x0, 0x9, 0xBA, 0xB]),
       st.booleans())
def test_bulk_retire_equals_one_by_one(name: str, width: int, progs: list[tuple[str, bool, bool, bool]],
                                       starts: list[int], rs: list[tuple[int, int, int]], fixed: int,
                                       masked: bool) -> None:
    """retire(n, b, cpl) == n single retirements: values, status, LVTPC, wraps and PMI indices."""
    cfg: PmuConfig = preset(name)
    cfg = cfg.with_width(width) if cfg.is_intel else cfg
    lv = UNMASKED | (M.LVTPC_MASKED if masked else 0)
    bulk, single = ArchPmu(cfg, lvtpc=lv), ArchPmu(cfg, lvtpc=lv)
    for p in (bulk, single):
        for i, (kind, os, usr, intr) in enumerate(progs):
            enc = ENCODINGS[cfg.vendor]["instructions" if kind == "off" else kind]
            sel = (M.IA32_PERFEVTSEL0 + i) if cfg.is_intel else (M.MSR_K7_EVNTSEL0 + i)
            ctr = (M.IA32_PMC0 + i) if cfg.is_intel else (M.MSR_K7_PERFCTR0 + i)
            p.wrmsr(sel, make_eventsel(enc, os=os, usr=usr, intr=intr, enable=kind != "off"))
            p.wrmsr(ctr, start_value(cfg, starts[i], width))
        if cfg.version >= 2 and cfg.is_intel:
            p.wrmsr(M.IA32_FIXED_CTR_CTRL, fixed)
            p.wrmsr(M.IA32_PERF_GLOBAL_CTRL, cfg.global_ctrl_valid_bits)
        p.take()
    for n, b, cpl in rs:
        b = min(b, n)
        bulk.retire(n, b, cpl)
        for k in range(n):
            single.retire_one(k < b, cpl)
        assert bulk.key() == single.key()
        assert bulk.insn == single.insn
        bw, bp, bl = bulk.take()
        sw, sp, sl = single.take()
        assert bw == sw and bp == sp and bl == sl
