"""The compiled step against the Python step (issue 14): `kstep.step_row` compiled by numba
gives the same state row (as int64) and observation row as the same code run on lists, on
every transition of bounded spaces and on random paths; an @njit caller can take it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpmu.config import preset
from vpmu.designs import EmulatedCounterFast, FastForm, Fields
from vpmu.eras import ERAS
from vpmu.explore import Bounds, Target
from vpmu.explore.compact import Plan, kjit, plan
from vpmu.explore.compact.kjit import CompiledStep, compiled_step, int64_row
from vpmu.explore.compact.kstep import step_row
from vpmu.explore.compact.layout import (
    LETTER_WIDTH,
    MAX_SIGS,
    O_FULL,
    O_NKPMI,
    O_NKSIG,
    O_NRPMI,
    O_NRSIG,
    OBS_LEN,
    OP_NATIVE,
    SCRATCH_LEN,
)
from vpmu.explore.compact.machine import ObservationFull

numba = pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]
ERAS_WITH_FAST_DEFAULT = [e for e in ERAS if e != "mediated"]
MY_DESIGN = f"{ROOT / 'examples' / 'my_design.py'}:SnapshotBeforePerf"
#: Counters in use: 1 GP, 2 GP, 1 GP + 1 fixed.
COUNTERS = {"1gp": (1, 0), "2gp": (2, 0), "gp+fixed": (1, 1)}


@numba.njit
def step_all(step: Any, incr: Any, pause: Any, read: Any, write: Any, complete: Any, states: Any, letters: Any,
             prm: Any) -> tuple[Any, Any]:
    """Each row of `states` stepped by the letter in the same row of `letters`: the compiled
    step called from compiled code, taking the step and the design's hooks as arguments."""
    out = states.copy()
    obs = np.zeros((states.shape[0], OBS_LEN), dtype=np.int64)
    x = np.zeros(SCRATCH_LEN, dtype=np.int64)
    for i in range(states.shape[0]):
        step(out[i], letters[i], prm, x, obs[i], incr, pause, read, write, complete)
    return out, obs


_plans: dict[tuple[str, str | None, str], Plan] = {}


def _plan(era: str, design: str | None, counters: str, depth: int = 3) -> Plan:
    """The kernel's plan for a space, once per module (the hooks compile once per design)."""
    key = (era, design, counters)
    if key not in _plans:
        gp, fixed = COUNTERS[counters]
        b = Bounds(gp=gp, fixed=fixed, depth=depth)
        t = Target(b.fit(preset("intel-v2")), era, design)
        p = plan(replace(t, world=replace(t.world, skid=b.skid)), b)
        assert isinstance(p, Plan), p
        _plans[key] = p
    return _plans[key]


def _compiled(p: Plan) -> CompiledStep:
    cs = compiled_step(p.kernel.fast)
    assert isinstance(cs, CompiledStep), cs
    return cs


def _python_step(p: Plan, state: tuple[int, ...], letter: tuple[int, ...]) -> tuple[tuple[int, ...], list[int]]:
    """The step run as plain Python on lists: the next state and the observation row."""
    s, obs = list(state), [0] * OBS_LEN
    f = p.kernel.fast
    step_row(s, letter, p.kernel.params(), [0] * SCRATCH_LEN, obs, f.incr, f.pause, f.read, f.write, f.complete)
    return tuple(s), obs


def _letter_row(letter: tuple[int, ...]) -> list[int]:
    return list(letter) + [0] * (LETTER_WIDTH - len(letter))


def _transitions(p: Plan, depth: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[tuple[int, ...]],
                                               list[list[int]]]:
    """Every transition of the BFS to `depth` from the root, run in Python: the states,
    letters, next states and observation rows."""
    seen, level = {p.root}, [p.root]
    states, letters, nexts, observed = [], [], [], []
    for _ in range(depth):
        following = []
        for state in level:
            for letter in p.letters:
                child, obs = _python_step(p, state, letter)
                states.append(state)
                letters.append(letter)
                nexts.append(child)
                observed.append(obs)
                if child not in seen:
                    seen.add(child)
                    following.append(child)
        level = following
    return states, letters, nexts, observed


def _agree_on_every_transition(p: Plan, depth: int = 3) -> None:
    states, letters, nexts, observed = _transitions(p, depth)
    cs = _compiled(p)
    out, obs = step_all(cs.step, cs.incr, cs.pause, cs.read, cs.write, cs.complete,
                        np.array([int64_row(s) for s in states], dtype=np.int64),
                        np.array([_letter_row(lt) for lt in letters], dtype=np.int64),
                        np.array(p.kernel.params(), dtype=np.int64))
    for i in range(len(states)):
        assert out[i].tolist() == int64_row(nexts[i]), (states[i], letters[i])
        assert obs[i].tolist() == observed[i], (states[i], letters[i])
    for letter, row in zip(letters, observed, strict=True):  # what plan() relies on to cover a letter
        shown = (row[O_NRSIG], row[O_NRPMI], row[O_NKSIG], row[O_NKPMI])
        assert all(a <= b for a, b in zip(shown, p.kernel.shows_at_most(letter), strict=True)), (letter, shown)


@pytest.mark.parametrize("counters", list(COUNTERS))
@pytest.mark.parametrize("design", ["emulated-counter", "prev-counter"])
@pytest.mark.parametrize("era", ERAS_WITH_FAST_DEFAULT)
def test_compiled_step_equals_the_python_step_on_every_transition(era: str, design: str, counters: str) -> None:
    _agree_on_every_transition(_plan(era, design, counters))


def test_a_user_designs_compiled_step_equals_its_python_step() -> None:
    _agree_on_every_transition(_plan("6.8", MY_DESIGN, "1gp"))


SPACES = [(era, design, counters) for era in ERAS_WITH_FAST_DEFAULT for design in ("emulated-counter", "prev-counter")
          for counters in COUNTERS]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space=st.sampled_from(SPACES), data=st.data())
def test_compiled_step_equals_the_python_step_on_random_paths(space: tuple[str, str, str], data: st.DataObject) -> None:
    """Random paths, longer than the BFS reaches: the compiled state is carried forward
    and equals the Python state after every step."""
    p = _plan(*space)
    cs = _compiled(p)
    # swarm: a few letters per path, so that rare interleavings come up often
    few = data.draw(st.lists(st.integers(0, len(p.letters) - 1), min_size=1, max_size=4, unique=True))
    path = data.draw(st.lists(st.sampled_from(few), min_size=1, max_size=24))
    prm = np.array(p.kernel.params(), dtype=np.int64)
    x, obs = np.zeros(SCRATCH_LEN, dtype=np.int64), np.zeros(OBS_LEN, dtype=np.int64)
    state, row = p.root, np.array(int64_row(p.root), dtype=np.int64)
    for li in path:
        state, expected = _python_step(p, state, p.letters[li])
        obs[:] = 0
        cs(row, np.array(_letter_row(p.letters[li]), dtype=np.int64), prm, x, obs)
        assert row.tolist() == int64_row(state), p.letters[li]
        assert obs.tolist() == expected, p.letters[li]
        shown = (expected[O_NRSIG], expected[O_NRPMI], expected[O_NKSIG], expected[O_NKPMI])
        assert all(a <= b for a, b in zip(shown, p.kernel.shows_at_most(p.letters[li]), strict=True))


def test_a_step_that_shows_more_than_the_row_holds_sets_o_full() -> None:
    """A native run of 1024 instructions wraps each 4-bit counter 64 times: more signals than
    the row holds. Both steps stop appending and set O_FULL; `Kernel.step` refuses the row,
    and `plan` does not cover bounds with such a letter (the object engine runs them)."""
    p = _plan("6.8", None, "2gp")
    letter = (OP_NATIVE, 1024, 0)
    assert not p.kernel.row_holds(letter) and p.kernel.row_holds(p.letters[0])
    _, expected = _python_step(p, p.root, letter)
    assert expected[O_FULL] == 1 and expected[O_NRSIG] == MAX_SIGS
    cs = _compiled(p)
    row, obs = np.array(int64_row(p.root), dtype=np.int64), np.zeros(OBS_LEN, dtype=np.int64)
    cs(row, np.array(_letter_row(letter), dtype=np.int64), np.array(p.kernel.params(), dtype=np.int64),
       np.zeros(SCRATCH_LEN, dtype=np.int64), obs)
    assert obs.tolist() == expected
    with pytest.raises(ObservationFull):
        p.kernel.step(p.root, letter)
    b = Bounds(gp=2, native=(1, 1024), depth=1)
    t = Target(b.fit(preset("intel-v2")), "6.8", None)
    why = plan(replace(t, world=replace(t.world, skid=b.skid)), b)
    assert why == ("a step of native, native-held may show more signals or PMIs than the compact kernel's "
                   "observation row holds")


# --- what does not compile, and the cache ------------------------------------------------------


class _Stateful(EmulatedCounterFast):
    """A fast form whose hook reads state off `self`: it runs in Python, but cannot compile."""

    step = 1

    def incr(self, f: Fields, mask: int) -> Fields:
        return (f[0], f[1], f[2] + self.step)


def test_a_fast_form_that_does_not_compile_gets_a_one_line_reason() -> None:
    why = compiled_step(_Stateful())
    assert isinstance(why, str) and "\n" not in why
    assert why.startswith("the fast form's _Stateful.incr does not compile with numba (")


def test_without_numba_the_reason_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kjit, "_jit", {})
    monkeypatch.setattr(kjit, "_fast", {})
    monkeypatch.setitem(sys.modules, "numba", None)
    why = compiled_step(FastForm())
    assert isinstance(why, str) and why.startswith("numba is not importable (") and "\n" not in why


def test_a_new_process_loads_the_compiled_step_from_numbas_cache() -> None:
    """`cache=True`: once compiled (by the tests above), another process's first step runs
    from the cache, without compiling."""
    _compiled(_plan("6.8", None, "1gp"))
    code = """
import numpy as np
from vpmu.designs import EmulatedCounterFast
from vpmu.explore.compact.kjit import compiled_step
from vpmu.explore.compact.layout import OBS_LEN, SCRATCH_LEN, params_len
cs = compiled_step(EmulatedCounterFast())
z = lambda n: np.zeros(n, dtype=np.int64)
cs(z(20), z(4), z(params_len(1)), z(SCRATCH_LEN), z(OBS_LEN))
print(cs.step.stats.cache_hits and not cs.step.stats.cache_misses)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert out.stdout.strip() == "True", out.stdout + out.stderr
