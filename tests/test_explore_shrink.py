"""Shrinking and the search space, independent of the models (issue: explorer)."""

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from vpmu import msrs
from vpmu.actions import Action, Batch, Cpuid, Insn, Native, Wrmsr
from vpmu.config import preset
from vpmu.explore import (
    ACTION_KINDS,
    Bounds,
    alphabet,
    counters_in_use,
    owner_of,
    setup_prefix,
    shrink,
    state_digest,
)


def test_shrink_drops_irrelevant_steps_and_simplifies_runs() -> None:
    seq: list[Action] = [Cpuid(), Native(3), Wrmsr(msrs.IA32_A_PMC0, 5), Native(3), Cpuid()]

    def fails(c: Sequence[Action]) -> bool:
        return sum(a.count for a in c if isinstance(a, Native)) >= 4

    out = shrink(seq, fails, mask=0xF)
    assert fails(out)
    assert all(isinstance(a, Native) for a in out)
    assert sum(a.count for a in out if isinstance(a, Native)) == 4


def test_shrink_makes_batches_smaller() -> None:
    seq: list[Action] = [Batch((Insn(),) * 5)]

    def fails(c: Sequence[Action]) -> bool:
        return any(isinstance(a, Batch) and len(a.items) >= 3 for a in c)

    assert shrink(seq, fails, mask=0xF) == (Batch((Insn(),) * 3),)


def test_shrink_prefers_values_near_zero() -> None:
    seq: list[Action] = [Wrmsr(msrs.IA32_A_PMC0, 6)]

    def fails(c: Sequence[Action]) -> bool:
        return any(isinstance(a, Wrmsr) and a.value != 0 for a in c)

    out = shrink(seq, fails, mask=0xF)
    assert len(out) == 1 and isinstance(out[0], Wrmsr) and out[0].value in (1, 0xF)


@given(st.lists(st.integers(0, 5), min_size=1, max_size=8), st.integers(0, 5))
def test_shrink_result_still_fails_and_is_no_longer(counts: list[int], needle: int) -> None:
    seq: list[Action] = [Native(c + 1) for c in counts]

    def fails(c: Sequence[Action]) -> bool:
        return any(isinstance(a, Native) and a.count > needle for a in c)

    if not fails(seq):
        return
    out = shrink(seq, fails, mask=0xF)
    assert fails(out) and len(out) <= len(seq)
    assert out == (Native(needle + 1),)


def test_alphabet_respects_kinds_and_bounds() -> None:
    cfg = preset("intel-v2").with_width(4)
    full = alphabet(cfg, Bounds())
    kinds = {k for k, _ in full}
    assert "perf-fail" not in kinds and {"native", "batch", "write-counter"} <= kinds
    only = alphabet(cfg, Bounds(kinds=("native",), native=(1, 5)))
    assert [a for _, a in only] == [Native(1), Native(5)]
    assert set(ACTION_KINDS) >= kinds


def test_setup_prefix_programs_counters_in_use() -> None:
    cfg = preset("intel-v2").with_width(4)
    prefix = setup_prefix(cfg, counters_in_use(cfg, Bounds(gp=2, fixed=1)))
    written = {a.msr: a.value for a in prefix if isinstance(a, Wrmsr)}
    # global enable off first, on last: the set-up does not depend on GLOBAL_CTRL's reset value
    assert prefix[0] == Wrmsr(msrs.IA32_PERF_GLOBAL_CTRL, 0)
    assert written[msrs.IA32_PERF_GLOBAL_CTRL] == 0b11 | 1 << 32
    assert written[msrs.IA32_FIXED_CTR_CTRL] == 0xB
    assert msrs.IA32_PERFEVTSEL0 + 1 in written


def test_owner_is_stable_and_in_range() -> None:
    key = ((1, 2, "x"), (3,))
    assert state_digest(key) == state_digest(((1, 2, "x"), (3,))) != state_digest(((1, 2, "x"), (4,)))
    assert owner_of(state_digest(key), 7) == owner_of(state_digest(((1, 2, "x"), (3,))), 7)
    owners = {owner_of(state_digest((i,)), 3) for i in range(50)}
    assert owners == {0, 1, 2}


def test_shrinking_stops_at_the_deadline_with_the_best_so_far() -> None:
    """Past the deadline nothing more is tried: the input comes back as it was (it fails);
    before it, the same call shrinks."""
    import time

    seq: list[Action] = [Cpuid(), Native(3), Wrmsr(msrs.IA32_A_PMC0, 5), Native(3), Cpuid()]
    tried: list[int] = []

    def fails(c: Sequence[Action]) -> bool:
        tried.append(len(c))
        return sum(a.count for a in c if isinstance(a, Native)) >= 4

    assert shrink(seq, fails, mask=0xF, deadline=time.time() - 1) == tuple(seq) and tried == []
    assert len(shrink(seq, fails, mask=0xF, deadline=time.time() + 60)) < len(seq) and tried


def test_a_finding_shrunk_past_the_deadline_is_only_cut_after_its_divergence() -> None:
    import time

    from vpmu.explore import Target, random_search, select_causes, shrink_finding

    cfg = preset("intel-v2").with_width(4)
    target = Target(cfg, "6.6")
    found = random_search(target, Bounds(depth=5), 0, range(200)).findings
    assert found
    f = found[0]
    late = shrink_finding(target, f, deadline=time.time() - 1)
    assert (late.kind, late.visibility, late.counters) == (f.kind, f.visibility, f.counters)
    assert late.suffix == f.suffix[:len(late.suffix)] and late.step == len(setup_prefix(cfg, f.counters)) + len(
        late.suffix) - 1
    full = shrink_finding(target, f)
    assert len(full.suffix) <= len(late.suffix)
    assert any(len(shrink_finding(target, g).suffix) < len(g.suffix) for g in found)  # shrinking does shrink
    # past the deadline: nothing is shrunk, one candidate as found per kind and visibility
    chosen, causes = select_causes(target, found, 10, deadline=time.time() - 1)
    kinds = {(g.kind, g.visibility) for g in found}
    assert causes == len(chosen) == len(kinds) and {(c.kind, c.visibility) for c in chosen} == kinds
    assert all(c in found for c in chosen)
