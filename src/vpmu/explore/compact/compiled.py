"""The compiled kernel: the whole breadth-first search of compact states in one numba loop.

`compiled_bfs(plan, depth, step)` is `kernel_bfs` with the visited set, the frontier, the
step and the monitor's rules inside compiled code (`expand`): states are packed in the
visited table (vpmu.explore.compact.tables; a state's index is its BFS admission order, so a
level is a range of indices and a path is followed back through `parent`/`via`), each
frontier state carries its window as a row of ints (`M_*`: open or settled, quiet steps, PMI
and wrap balances, the interned window shape, what the window holds for the tolerated-loss
rule), and window shapes are interned in a second table. The loop leaves compiled code only
where Python must act:

* a step no rule decides (`NEED_JUDGE`): the path is replayed on the Python kernel and
  monitor (`Monitor.advance`, the checker itself), and its verdict is stored for the window
  shape — the monitor's rule 1 says the verdict is a function of that shape;
* a step that diverges (`DIVERGED`): its findings are built as `KernelExpander.findings`
  builds them, by replaying the path on the object models;
* a full row (`FULL`): a step showed more than an observation row holds; as in the Python
  kernel, `ObservationFull` is raised (the explorer then runs the object engine).

So the verdicts are the Python monitor's, the states and transitions the Python kernel's, in
the same admission order: tests/test_compact.py holds the statistics and findings of all
three engines equal. Without numba `expand` would run as plain Python (slowly), so the
explorer runs `kernel_bfs` instead and says why (`engine.kernel_search`).
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from ..causes import Candidates
from ..judge import Finding
from ..search import Progress, Reporter, SearchResult, Stats, past_deadline
from .kjit import JIT_MAX_WIDTH, CompiledStep, int64_row
from .kstep import step_row
from .layout import (
    COUNT,
    GLOBALS,
    K_MASKED,
    K_STATUS,
    LETTER_WIDTH,
    NONE,
    O_FULL,
    O_KPMI,
    O_KSIG,
    O_NKPMI,
    O_NKSIG,
    O_NRES,
    O_NRPMI,
    O_NRSIG,
    O_RES,
    O_RSIG,
    O_T,
    OBS_LEN,
    PAUSED,
    R_MASKED,
    R_STATUS,
    REF,
    SCRATCH_LEN,
    SOURCES,
    STRIDE,
    C,
    E,
    P,
)
from .machine import OBSERVATION_FULL, ObservationFull
from .tables import COMPILER, Tables, jit, shape_add, state_add, unpack

#: `expand`'s return codes.
DONE, NEED_JUDGE, DIVERGED, FULL, ROOM = 0, 1, 2, 3, 4

#: A window as a row of ints (per frontier state): settled (0) or open (1); steps since the
#: last signal or PMI (at most 2); reference PMIs minus KVM PMIs; the interned window shape;
#: the settled status and LVTPC mask bits it started from (reference, KVM); signals and PMIs
#: it holds (counts at most 2, the first signal's PMC and source, per machine); then the wrap
#: balance per counter in use (reference wraps minus KVM signals and tolerated losses).
M_OPEN, M_QUIET, M_PMIS, M_SHAPE, M_SRS, M_SKS, M_SRM, M_SKM, M_NRSIG, M_RSIGPMC, M_RSIGSRC, \
    M_NKSIG, M_KSIGPMC, M_KSIGSRC, M_NRPMI, M_NKPMI, M_WRAPS = range(17)

#: The search's constants as a row: counters in use, ints in a state, their width mask, which
#: KVM signal sources meet a wrap (bits by SOURCES index), whether R3 is on (the
#: tolerated-loss rule), then the PMC index of each counter in use.
Q_N, Q_WIDTH, Q_MASK, Q_MEETS, Q_R3, Q_IDX = range(6)

_WRAP, _HW, _EMULATED, _MINP = (SOURCES.index(s) for s in ("wrap", "hw", "emulated", "min-period"))


# --- the monitor's rules on rows --------------------------------------------------------------


@jit
def _start(rec: Any, child: Any, sparent: Any, soff: Any, slen: Any, pool: Any, sslots: Any, scount: Any,
           vec: Any, sbuf: Any, equal: int) -> None:
    """Monitor.start: a settled window showing `child`'s status and LVTPC (`equal`: whether it
    shows equal values, as every settled window but maybe a search's root does)."""
    vec[0], vec[1], vec[2], vec[3], vec[4] = child[R_STATUS], child[K_STATUS], child[R_MASKED], child[K_MASKED], equal
    rec[:] = 0
    rec[M_QUIET] = 2
    rec[M_SHAPE] = shape_add(-1, vec, 5, sparent, soff, slen, pool, sslots, scount, sbuf)
    rec[M_SRS], rec[M_SKS], rec[M_SRM], rec[M_SKM] = vec[0], vec[1], vec[2], vec[3]


@jit
def _inside_loss(pr: Any, parent: Any, child: Any, obs: Any, kvals: Any, n: int, inert: bool) -> bool:
    """Monitor._inside_loss (rule 2) on rows."""
    if (pr[M_NRSIG] != 1 or pr[M_NKSIG] != 1 or pr[M_RSIGSRC] != _WRAP or pr[M_KSIGSRC] != _MINP
            or pr[M_RSIGPMC] != pr[M_KSIGPMC] or pr[M_NRPMI] != 1 or pr[M_NKPMI] != 0 or pr[M_PMIS] != 1):
        return False
    for j in range(n):
        if pr[M_WRAPS + j] != 0:
            return False
    pmc = pr[M_RSIGPMC]
    bit = 1 << pmc
    if pr[M_SRS] != pr[M_SKS] or pr[M_SRS] & bit or pr[M_SRM] != pr[M_SKM] or pr[M_SRM]:
        return False
    if (parent[R_STATUS] != parent[K_STATUS] | bit or parent[K_STATUS] & bit or not parent[R_MASKED]
            or parent[K_MASKED]):
        return False
    for r in range(obs[O_NRES]):
        rv, kv = obs[O_RES + 2 * r], obs[O_RES + 2 * r + 1]
        if rv != kv and (rv == NONE or kv == NONE or rv != kv | bit or kv & bit):
            return False
    for j in range(n):
        if child[GLOBALS + STRIDE * j + REF] != kvals[j]:
            return False
    if inert:
        return True
    return bool(obs[O_NRSIG] == 1 and obs[O_NKSIG] == 1 and obs[O_NRPMI] == 0 and obs[O_NKPMI] == 1
            and obs[O_RSIG] == pmc and obs[O_KSIG] == pmc and obs[O_RSIG + 2] == _WRAP
            and (obs[O_KSIG + 2] == _HW or obs[O_KSIG + 2] == _EMULATED) and obs[O_KSIG + 1] >= obs[O_RSIG + 1]
            and obs[O_KPMI] >= obs[O_RSIG + 1]
            and child[R_STATUS] == child[K_STATUS] and child[R_MASKED] == child[K_MASKED])


@jit
def _step_shape(vec: Any, li: int, obs: Any, reads: int, native: bool, parent: Any, child: Any, kvals: Any,
                n: int, mask: int) -> int:
    """Monitor._step_shape as a row: its length."""
    k = 0
    vec[k] = li
    vec[k + 1] = obs[O_NRES]
    k += 2
    for r in range(obs[O_NRES]):
        rv, kv = obs[O_RES + 2 * r], obs[O_RES + 2 * r + 1]
        if reads >> r & 1:
            vec[k], vec[k + 1], vec[k + 2] = 1, rv, kv
        else:
            vec[k], vec[k + 1], vec[k + 2] = 0, 1 if rv == kv else 0, 0
        k += 3
    for j in range(n):
        b = GLOBALS + STRIDE * j + REF
        rv, bv = child[b], parent[b]
        vec[k] = 1 if rv == kvals[j] else 0
        vec[k + 1] = (rv - bv) & mask if native else (1 if rv != bv else 0)
        k += 2
    vec[k], vec[k + 1], vec[k + 2], vec[k + 3], vec[k + 4] = (child[R_STATUS], child[K_STATUS], child[R_MASKED],
                                                               child[K_MASKED], obs[O_T])
    k += 5
    for start, width in ((O_NRPMI, 1), (O_NKPMI, 1), (O_NRSIG, 3), (O_NKSIG, 3)):
        cnt = obs[start]
        vec[k] = cnt
        k += 1
        for i in range(cnt * width):
            vec[k + i] = obs[start + 1 + i]
        k += cnt * width
    return k


@jit
def _roomy(count: Any, offs: Any, pool: Any, slots: Any, nmon: Any, hi: int, width: int, scount: Any, sparent: Any,
           spool: Any, sslots: Any, veclen: int) -> bool:
    """Whether the tables hold one more transition: a state, its window, three shapes."""
    return bool(count[0] + 2 <= offs.shape[0] and count[1] + width * 10 <= pool.shape[0]
                and 2 * (count[0] + 1) <= slots.shape[0] and count[0] + 1 - hi <= nmon.shape[0]
                and scount[0] + 3 <= sparent.shape[0] and 2 * (scount[0] + 3) <= sslots.shape[0]
                and scount[1] + 30 * veclen <= spool.shape[0])


def expand(lo: int, hi: int, at_i: int, at_li: int, stop_i: int,
           pool: Any, offs: Any, slots: Any, count: Any, parent_of: Any, via: Any,
           mon: Any, nmon: Any, letters: Any, reads: Any, native: Any, prm: Any, q: Any,
           sparent: Any, soff: Any, slen: Any, spool: Any, sslots: Any, scount: Any, verdict: Any,
           out: Any, incr: Any, pause: Any, read: Any, write: Any, complete: Any) -> int:
    """Expand frontier states `at_i`..`stop_i` - 1 of the level `lo`..`hi` - 1, from letter
    `at_li` of the first; new states get the next indices, their windows rows of `nmon`.
    Returns DONE, or where Python must act: `out` = (state, letter, shape or verdict code,
    transitions counted)."""
    n = q[Q_N]
    mask = q[Q_MASK]
    nletters = letters.shape[0]
    width = q[Q_WIDTH]
    child: Any = np.empty(width, dtype=np.int64)
    parent: Any = np.empty(width, dtype=np.int64)
    buf = np.empty(width * 10, dtype=np.uint8)
    obs: Any = np.empty(OBS_LEN, dtype=np.int64)
    scratch: Any = np.zeros(SCRATCH_LEN, dtype=np.int64)
    vec = np.empty(OBS_LEN * 2 + 8 * n + 16, dtype=np.int64)
    sbuf = np.empty(vec.shape[0] * 10, dtype=np.uint8)
    kvals = np.empty(n, dtype=np.int64)
    rec = np.empty(mon.shape[1], dtype=np.int64)
    transitions = 0
    for i in range(at_i, stop_i):
        unpack(pool, offs[i], parent)
        pr = mon[i - lo]
        for li in range((at_li if i == at_i else 0), nletters):
            if not _roomy(count, offs, pool, slots, nmon, hi, width, scount, sparent, spool, sslots, vec.shape[0]):
                out[0], out[1], out[3] = i, li, transitions
                return ROOM
            child[:] = parent
            step_row(child, letters[li], prm, scratch, obs, incr, pause, read, write, complete)
            if obs[O_FULL]:
                out[0], out[1], out[3] = i, li, transitions
                return FULL
            for j in range(n):
                b = GLOBALS + STRIDE * j
                live = child[b + COUNT] if not child[b + PAUSED] else 0
                kvals[j] = read((child[b + C], child[b + P], child[b + E]), live, mask)
            same = (child[R_STATUS] == child[K_STATUS] and child[R_MASKED] == child[K_MASKED])
            for j in range(n):
                if child[GLOBALS + STRIDE * j + REF] != kvals[j]:
                    same = False
            results_equal = True
            for r in range(obs[O_NRES]):
                if obs[O_RES + 2 * r] != obs[O_RES + 2 * r + 1]:
                    results_equal = False
            eventful = obs[O_NRPMI] or obs[O_NKPMI] or obs[O_NRSIG] or obs[O_NKSIG]
            # the child's window: settled (built by `_start` only if the child is admitted) or open
            starts = not pr[M_OPEN] and not eventful and results_equal and same
            if not starts:
                inert = (not eventful and child[R_STATUS] == parent[R_STATUS] and child[K_STATUS] == parent[K_STATUS]
                         and child[R_MASKED] == parent[R_MASKED] and child[K_MASKED] == parent[K_MASKED])
                if inert:
                    for j in range(n):
                        if child[GLOBALS + STRIDE * j + REF] != kvals[j]:
                            inert = False
                if inert and not results_equal:
                    for r in range(obs[O_NRES]):
                        rv, kv = obs[O_RES + 2 * r], obs[O_RES + 2 * r + 1]
                        if rv != kv and not (reads[li] >> r & 1 and rv == parent[R_STATUS] and kv == parent[K_STATUS]):
                            inert = False
                rec[:] = pr
                met = True
                for j in range(n):
                    if pr[M_WRAPS + j] != 0:
                        met = False
                for s in range(obs[O_NRSIG]):
                    pmc = obs[O_RSIG + 3 * s]
                    for j in range(n):
                        if q[Q_IDX + j] == pmc:
                            rec[M_WRAPS + j] += 1
                for s in range(obs[O_NKSIG]):
                    pmc, src = obs[O_KSIG + 3 * s], obs[O_KSIG + 3 * s + 2]
                    if q[Q_MEETS] >> src & 1:
                        for j in range(n):
                            if q[Q_IDX + j] == pmc:
                                rec[M_WRAPS + j] -= 1
                rec[M_PMIS] = pr[M_PMIS] + obs[O_NRPMI] - obs[O_NKPMI]
                settles = rec[M_PMIS] == 0 and same
                for j in range(n):
                    if rec[M_WRAPS + j] != 0:
                        settles = False
                judge = not (inert and pr[M_QUIET] >= 2 and met)
                # a window shape is interned only where it is needed: for a step the checker
                # judges (its verdict is kept by shape) and for an admitted state's open window
                shape = -1
                length = 0
                if judge or not settles:
                    length = _step_shape(vec, li, obs, reads[li], native[li], parent, child, kvals, n, mask)
                if judge:
                    shape = shape_add(pr[M_SHAPE], vec, length, sparent, soff, slen, spool, sslots, scount, sbuf, False)
                    v = verdict[shape] if shape >= 0 else -1
                    if v < 0 and q[Q_R3] and _inside_loss(pr, parent, child, obs, kvals, n, inert):
                        v = 0
                    if v < 0:
                        shape = shape_add(pr[M_SHAPE], vec, length, sparent, soff, slen, spool, sslots, scount, sbuf)
                        out[0], out[1], out[2], out[3] = i, li, shape, transitions
                        return NEED_JUDGE
                    if v > 0:
                        transitions += 1
                        out[0], out[1], out[2], out[3] = i, li, v, transitions
                        return DIVERGED
                starts = settles
                if not settles:
                    rec[M_OPEN] = 1
                    rec[M_QUIET] = 0 if eventful else min(pr[M_QUIET] + 1, 2)
                    rec[M_SHAPE] = shape  # -1 until the state is admitted (below)
                    if obs[O_NRSIG] and rec[M_NRSIG] == 0:
                        rec[M_RSIGPMC], rec[M_RSIGSRC] = obs[O_RSIG], obs[O_RSIG + 2]
                    if obs[O_NKSIG] and rec[M_NKSIG] == 0:
                        rec[M_KSIGPMC], rec[M_KSIGSRC] = obs[O_KSIG], obs[O_KSIG + 2]
                    rec[M_NRSIG] = min(rec[M_NRSIG] + obs[O_NRSIG], 2)
                    rec[M_NKSIG] = min(rec[M_NKSIG] + obs[O_NKSIG], 2)
                    rec[M_NRPMI] = min(rec[M_NRPMI] + obs[O_NRPMI], 2)
                    rec[M_NKPMI] = min(rec[M_NKPMI] + obs[O_NKPMI], 2)
            transitions += 1
            at, new = state_add(pool, offs, slots, count, child, buf)
            if new:
                parent_of[at] = i
                via[at] = li
                if starts:
                    _start(rec, child, sparent, soff, slen, spool, sslots, scount, vec, sbuf, 1)
                elif rec[M_SHAPE] < 0:
                    rec[M_SHAPE] = shape_add(pr[M_SHAPE], vec, length, sparent, soff, slen, spool, sslots, scount, sbuf)
                nmon[at - hi, :] = rec
    out[3] = transitions
    return DONE


_compiled: dict[str, Any] = {}


def compiled_expand(cs: CompiledStep) -> Callable[..., int]:
    """`expand` as `compiled_bfs` runs it: compiled, with `cs.step` (the compiled `step_row`,
    the same for every design) as its global `step_row`, so that its only per-design
    arguments are the fast form's hooks (first-class functions of fixed signatures) and numba
    can cache it on disk; without the compiler, `expand` itself. Compiling takes about 30 s,
    once per machine (numba's cache beside this file, or NUMBA_CACHE_DIR)."""
    if COMPILER is not None:
        return expand
    if "expand" not in _compiled:
        g = dict(expand.__globals__)
        g["step_row"] = cs.step
        fn = types.FunctionType(expand.__code__, g, "expand", expand.__defaults__, expand.__closure__)
        fn.__qualname__ = "expand"
        fn.__module__ = __name__
        fn.__doc__ = expand.__doc__
        _compiled["expand"] = jit(fn)
    return cast(Callable[..., int], _compiled["expand"])


def _entry_point(fn: Callable[..., int]) -> Callable[..., int]:
    """The compiled `fn`'s own entry point once it has its one signature: numba's dispatcher
    types every argument on every call, ~16 us for each of the hooks (first-class functions),
    and `compiled_bfs` calls it once per question to the checker."""
    sigs: list[Any] = list(getattr(fn, "signatures", ()))
    if len(sigs) != 1:
        return fn
    dispatcher: Any = fn
    return cast(Callable[..., int], dispatcher.overloads[sigs[0]].entry_point)


def refusal(p: Any) -> str | None:
    """Why the compiled search cannot run plan `p` exactly (one line), or None."""
    if p.kernel.mask >= 1 << JIT_MAX_WIDTH:
        return f"counters wider than {JIT_MAX_WIDTH} bits leave the compiled kernel's 64-bit arithmetic"
    return None


# --- the Python side: the driver ---------------------------------------------------------------


#: Replayed states kept for the checker's questions (`compiled_bfs`), at most.
REPLAYED = 1 << 12
#: Frontier states handed to one `expand` call (between calls: the deadline, progress, room).
CHUNK = 2048


def compiled_bfs(p: Any, depth: int, cs: CompiledStep, deadline: float | None = None,
                 progress: Progress | None = None, search: Callable[..., int] | None = None) -> SearchResult:
    """`kernel_bfs(p, depth, ...)` with the search in `expand`, stepping with `cs` (the plan's
    design's `kjit.compiled_step`): the same levels, admission order, statistics, end
    conditions and findings. `search`: `expand` as it runs (default: compiled,
    `compiled_expand`; tests pass `expand` itself with Python hooks to run it as Python)."""
    from .engine import KernelExpander  # the findings of a diverged path, built as there

    search = search or compiled_expand(cs)
    kx = KernelExpander(p)
    monitor = p.monitor
    n = p.kernel.n
    nletters = len(p.letters)
    letters = np.zeros((nletters, LETTER_WIDTH), dtype=np.int64)
    for li, letter in enumerate(p.letters):
        letters[li, :len(letter)] = letter
    reads = np.array([sum(1 << r for r, read in enumerate(monitor._status_reads[li]) if read)
                      for li in range(nletters)], dtype=np.int64)
    native = np.array(monitor._native, dtype=np.bool_)
    meets = (1 << _HW) | (1 << _EMULATED) | sum(1 << SOURCES.index(s) for s in monitor.losses)
    q = np.array([n, len(p.root), p.kernel.mask, meets, int(monitor.options.r3_min_period), *p.kernel.idx],
                 dtype=np.int64)
    prm = np.array(int64_row(p.kernel.params()), dtype=np.int64)
    t = Tables(len(p.root), M_WRAPS + n)
    vec_len = OBS_LEN * 2 + 8 * n + 16
    root = np.array(p.root, dtype=np.int64)
    state_add(t.pool, t.offs, t.slots, t.count, root, np.zeros(len(root) * 10, dtype=np.uint8))
    vec = np.zeros(vec_len, dtype=np.int64)
    rec = np.zeros(M_WRAPS + n, dtype=np.int64)
    shown = p.shown(p.root)
    _start(rec, root, t.sparent, t.soff, t.slen, t.spool, t.sslots, t.scount, vec, np.zeros(vec_len * 10, np.uint8),
           int(shown[0] == shown[1]))
    t.mon = rec.reshape(1, -1).copy()
    verdicts: list[tuple[tuple[str, str, str | None], ...]] = [()]
    out = np.zeros(4, dtype=np.int64)

    def call(at_i: int, at_li: int, stop: int) -> int:
        return int(run(lo, hi, at_i, at_li, stop, t.pool, t.offs, t.slots, t.count, t.parent, t.via, t.mon,
                          t.nmon, letters, reads, native, prm, q, t.sparent, t.soff, t.slen, t.spool, t.sslots,
                          t.scount, t.verdict, out, cs.incr, cs.pause, cs.read, cs.write, cs.complete))

    lo, hi = 0, 1
    run = search
    call(0, 0, 0)  # compiles (or loads) `expand` before the clock starts: an empty range
    run = _entry_point(search)
    stats = Stats(states=1)
    found: Candidates[Finding] = Candidates()
    report = Reporter(stats, found, progress)

    #: states replayed for the checker: index -> (compact state, window), so that a state's
    #: letters, and its descendants, extend a replayed window instead of replaying from the root
    replayed: dict[int, tuple[tuple[int, ...], Any]] = {0: (p.root, monitor.start(p.shown(p.root)))}

    def replay(i: int) -> tuple[tuple[int, ...], Any]:
        """State `i` and its window, from its nearest replayed ancestor (its window built, not
        judged: the compiled search went on from every step of it)."""
        down = []
        while i not in replayed:
            down.append(i)
            i = int(t.parent[i])
        state, window = replayed[i]
        for j in reversed(down):
            k = int(t.via[j])
            state, obs = p.kernel.step(state, p.letters[k])
            _, window = monitor.advance(window, k, obs, p.shown(state), replay=True)
            if len(replayed) >= REPLAYED:
                replayed.clear()
                replayed[0] = (p.root, monitor.start(p.shown(p.root)))
            replayed[j] = (state, window)
        return state, window

    def judged(i: int, li: int) -> int:
        """The Python monitor's verdict of letter `li` from state `i` (as a code): the state
        replayed on the Python kernel, then the step judged by the monitor, which asks the
        checker."""
        state, window = replay(i)
        state, obs = p.kernel.step(state, p.letters[li])
        verdict, _ = monitor.advance(window, li, obs, p.shown(state))
        if not verdict:
            return 0
        if verdict not in verdicts:
            verdicts.append(verdict)
        return verdicts.index(verdict)

    for level in range(1, depth + 1):
        at_i, at_li = lo, 0
        while at_i < hi:
            if past_deadline(deadline):
                stats.stopped_by_budget = True
                break
            stop = min(hi, at_i + CHUNK)
            code = call(at_i, at_li, stop)
            stats.transitions += int(out[3])
            stats.states = int(t.count[0])
            i, li = int(out[0]), int(out[1])
            if code == DONE:
                at_i, at_li = stop, 0
            elif code == ROOM:
                t.grow(hi, vec_len)
                at_i, at_li = i, li
            elif code == NEED_JUDGE:
                t.verdict[int(out[2])] = judged(i, li)
                at_i, at_li = i, li
            elif code == DIVERGED:
                for f in kx.findings(tuple(t.path(i) + [li]), verdicts[int(out[2])]):
                    found.add(f)
                at_i, at_li = i, li + 1
            else:
                raise ObservationFull(OBSERVATION_FULL)
            if report.due and at_i < hi:
                report()
        if stats.stopped_by_budget:
            stats.frontier_left = hi - at_i + int(t.count[0]) - hi
            break
        stats.depth_reached = level
        report()
        lo, hi = hi, int(t.count[0])
        t.mon, t.nmon = t.nmon[:hi - lo].copy(), t.nmon
        if lo == hi:
            stats.exhausted = True
            break
    else:
        stats.depth_limited = True
        stats.frontier_left = hi - lo
    stats.elapsed = time.perf_counter() - report.start
    return SearchResult("exhaustive", stats, found.findings())
