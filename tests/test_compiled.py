"""The compiled search (issue 14): its tables, its ending under a deadline, the explorer's
report of which kernel ran, and its pure-Python `expand` equal to the compiled one. That
its states, transitions and findings are the other engines' is `_agree` in
tests/test_compact.py, over every era, design, preset and counter set there."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helper import cli
from vpmu.config import preset
from vpmu.explore import Bounds, Target, explore
from vpmu.explore.compact import Plan, compiled_search, kernel_bfs, plan
from vpmu.explore.compact import compiled as compiled_module
from vpmu.explore.compact.compiled import compiled_bfs, refusal
from vpmu.explore.compact.kjit import CompiledStep
from vpmu.explore.compact.machine import ObservationFull
from vpmu.explore.compact.tables import EMPTY, pack, rehash_states, state_add, unpack

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)


@settings(deadline=None)  # the first example may compile the packing (numba), once per machine
@given(st.lists(INT64, min_size=1, max_size=50))
def test_a_packed_row_unpacks_to_itself(row: list[int]) -> None:
    values = np.array(row, dtype=np.int64)
    buf = np.zeros(len(row) * 10, dtype=np.uint8)
    n = pack(values, buf)
    back = np.zeros(len(row), dtype=np.int64)
    unpack(buf, 0, back)
    assert back.tolist() == row
    assert n <= len(row) * 10


def test_small_values_pack_into_a_byte_each() -> None:
    buf = np.zeros(40, dtype=np.uint8)
    assert pack(np.array([0, 1, -1, 63, -64], dtype=np.int64), buf) == 5
    assert pack(np.array([64, -65], dtype=np.int64), buf) == 4


@settings(deadline=None)
@given(st.lists(st.lists(st.integers(-300, 300), min_size=3, max_size=3), min_size=1, max_size=60))
def test_the_visited_table_admits_each_distinct_state_once_in_order(rows: list[list[int]]) -> None:
    pool = np.zeros(60 * 30, dtype=np.uint8)
    offs = np.zeros(61, dtype=np.int64)
    slots = np.full(128, EMPTY, dtype=np.int32)
    count = np.zeros(2, dtype=np.int64)
    buf = np.zeros(30, dtype=np.uint8)
    first: dict[tuple[int, ...], int] = {}
    for row in rows:
        at, new = state_add(pool, offs, slots, count, np.array(row, dtype=np.int64), buf)
        assert new == (tuple(row) not in first)
        first.setdefault(tuple(row), len(first))
        assert at == first[tuple(row)]
    rehash_states(pool, offs, int(count[0]), slots)  # a rebuilt index finds every state again
    for row, at in first.items():
        assert state_add(pool, offs, slots, count, np.array(row, dtype=np.int64), buf) == (at, False)


def _plan(era: str = "6.8", **bounds: Any) -> tuple[Plan, Bounds]:
    b = Bounds(**bounds)
    p = plan(Target(b.fit(preset("intel-v2")), era), b)
    assert isinstance(p, Plan)
    return p, b


def test_a_passed_deadline_ends_the_search_as_the_python_kernel_ends_it() -> None:
    p, b = _plan(depth=4)
    cs = compiled_search(p)
    assert isinstance(cs, CompiledStep)
    past = time.time() - 1
    c, k = compiled_bfs(p, b.depth, cs, past), kernel_bfs(plan(p.target, b), b.depth, past)  # type: ignore[arg-type]
    assert c.stats.stopped_by_budget and k.stats.stopped_by_budget
    assert (c.stats.states, c.stats.transitions, c.stats.depth_reached, c.stats.frontier_left) == (
        k.stats.states, k.stats.transitions, k.stats.depth_reached, k.stats.frontier_left) == (1, 0, 0, 1)


def test_progress_is_reported_at_every_level() -> None:
    p, b = _plan(depth=3)
    cs = compiled_search(p)
    assert isinstance(cs, CompiledStep)
    seen: list[tuple[int, int]] = []
    result = compiled_bfs(p, b.depth, cs, progress=lambda stats, kinds: seen.append((stats.depth_reached,
                                                                                      stats.states)))
    assert [d for d, _ in seen][-3:] == [1, 2, 3] and seen[-1][1] == result.stats.states


def test_expand_run_as_python_is_the_compiled_expand() -> None:
    """Without numba the same `expand` runs as Python: the same search (small: it is slow)."""
    p, b = _plan(depth=2, gp=2)
    cs = compiled_search(p)
    assert isinstance(cs, CompiledStep)
    compiled = compiled_bfs(p, b.depth, cs)
    fast = p.kernel.fast
    python = CompiledStep(compiled_module.step_row, fast.incr, fast.pause, fast.read, fast.write,  # type: ignore[arg-type]
                          fast.complete)
    slow = compiled_bfs(plan(p.target, b), b.depth, python, search=compiled_module.expand)  # type: ignore[arg-type]
    assert (slow.stats.states, slow.stats.transitions, [f.suffix for f in slow.findings]) == (
        compiled.stats.states, compiled.stats.transitions, [f.suffix for f in compiled.findings])


def test_counters_too_wide_for_int64_are_refused_with_a_reason() -> None:
    p, _ = _plan(depth=1)
    assert refusal(p) is None
    wide = type("Wide", (), {"kernel": type("K", (), {"mask": (1 << 56) - 1})()})()
    assert "wider than 48 bits" in (refusal(wide) or "")


def test_explore_says_the_kernel_was_compiled(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("explore", "--kvm", "6.8", "--mode", "exhaustive", "--depth", "2", "--no-save", "--jobs", "1")
    code, out, _ = cli(capsys, *args, "--json")
    data = json.loads(out)
    assert code == 0 and data["engine"] == "kernel" and data["kernel_compiled"] is True
    assert data["kernel_note"].startswith("compiled with numba (")
    code, out, _ = cli(capsys, *args, "--engine", "object", "--json")
    data = json.loads(out)
    assert (data["engine"], data["kernel_compiled"], data["kernel_note"]) == ("object", None, None)


def test_a_step_the_kernel_cannot_show_sends_the_search_to_the_object_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> object:
        raise ObservationFull("full")

    monkeypatch.setattr("vpmu.explore.kernel_search", full)
    b = Bounds(depth=2)
    report = explore(Target(b.fit(preset("intel-v2")), "6.8"), b, mode="exhaustive", jobs=1)
    assert report.engine == "object" and "observation row" in report.engine_note
    assert report.stats.states > 1


def test_the_explorer_announces_loading_the_compiled_kernel() -> None:
    """On a terminal the status line says why nothing is searched yet (a first run compiles)."""
    heard: list[str] = []
    b = Bounds(depth=1)
    target = Target(b.fit(preset("intel-v2")), "6.8")
    report = explore(target, b, mode="exhaustive", jobs=1, announce=heard.append)
    assert report.kernel_compiled and heard == [
        "loading the compiled search kernel (the first run on a machine compiles it: about 30 s)"]
    heard.clear()
    explore(target, b, mode="exhaustive", jobs=1, announce=heard.append, engine="object")
    assert heard == []
