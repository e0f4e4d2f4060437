"""The compiled kernel: the whole breadth-first search of compact states in one numba loop.

`compiled_bfs(plan, depth)` is `kernel_bfs` with the visited set, the frontier, the step and
the monitor's rules inside compiled code (`expand`): states live as rows of an int64 table
(their index is their BFS admission order, so a level is a range of indices and a path is
followed back through `parent`/`via`), each frontier state carries its window as a row of
ints (`M_*`: open or settled, quiet steps, PMI and wrap balances, the interned window shape,
what the window holds for the tolerated-loss rule), and window shapes are interned in a second
table whose rows point into a pool of step shapes. The loop leaves compiled code only where
Python must act:

* a step no rule decides (`NEED_JUDGE`): the path is replayed on the Python kernel and
  monitor (`Monitor.advance`, the checker itself), and its verdict is stored for the window
  shape — the monitor's rule 1 says the verdict is a function of that shape;
* a step that diverges (`DIVERGED`): its findings are built as `KernelExpander.findings`
  builds them, by replaying the path on the object models;
* a full buffer (`FULL`): a step wrote more than an observation row holds; the search is
  then left to the Python kernel.

So the verdicts are the Python monitor's, the states and transitions the Python kernel's, in
the same admission order: tests/test_compact_jit.py holds the statistics and findings equal
to `kernel_bfs`'s. Without numba the same `expand` runs as plain Python (slowly); the
explorer then prefers `kernel_bfs` and says why (`vpmu.explore.compact.engine.plan`).
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from typing import Any, cast

import numpy as np

from ..causes import Candidates
from ..judge import Finding
from ..search import PROGRESS_EVERY, Progress, SearchResult, Stats, past_deadline
from .kstep import CompiledStep, step_row
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
    O_RPMI,
    O_RSIG,
    O_T,
    OBS_LEN,
    PAUSED,
    R_MASKED,
    R_STATUS,
    REF,
    SOURCES,
    STRIDE,
    C,
    E,
    P,
)

try:  # the compiler is optional: without it `expand` runs as Python
    from numba import njit as _njit

    def jit(fn: Any) -> Any:
        return _njit(cache=True, nogil=True)(fn)

    COMPILER: str | None = None
except ImportError as err:  # pragma: no cover - numba is a dependency; this is the fallback
    def jit(fn: Any) -> Any:
        return fn

    COMPILER = f"numba is not importable ({err})"

#: `expand`'s return codes.
DONE, NEED_JUDGE, DIVERGED, FULL, ROOM = 0, 1, 2, 3, 4

#: A window as a row of ints (per frontier state): settled (0) or open (1); steps since the
#: last signal or PMI (at most 2); reference PMIs minus KVM PMIs; the interned window shape;
#: the settled status and LVTPC mask bits it started from (reference, KVM); signals and PMIs
#: it holds (counts at most 2, the first signal's PMC and source, per machine); then the wrap
#: balance per counter in use (reference wraps minus KVM signals and tolerated losses).
M_OPEN, M_QUIET, M_PMIS, M_SHAPE, M_SRS, M_SKS, M_SRM, M_SKM, M_NRSIG, M_RSIGPMC, M_RSIGSRC, \
    M_NKSIG, M_KSIGPMC, M_KSIGSRC, M_NRPMI, M_NKPMI, M_WRAPS = range(17)

#: The search's constants as a row: counters in use, ints in a state, their width mask, which KVM signal
#: sources meet a wrap (bits by SOURCES index), whether R3 is on (the tolerated-loss rule),
#: then the PMC index of each counter in use.
Q_N, Q_WIDTH, Q_MASK, Q_MEETS, Q_R3, Q_IDX = range(6)

_WRAP, _HW, _EMULATED, _MINP = (SOURCES.index(s) for s in ("wrap", "hw", "emulated", "min-period"))
_EMPTY = -1


# --- interning rows of ints -------------------------------------------------------------------


@jit
def _hash_row(row: Any, lo: int, hi: int, seed: int) -> np.uint64:
    h = np.uint64(0xCBF29CE484222325) ^ np.uint64(seed)
    for i in range(lo, hi):
        x = np.int64(row[i])
        h = (h ^ np.uint64(x & 0x7FFFFFFFFFFFFFFF)) * np.uint64(0x100000001B3)
        h ^= np.uint64(1) if x < 0 else np.uint64(0)
        h ^= h >> np.uint64(29)
    return h


@jit
def pack(row: Any, buf: Any) -> int:
    """`row` as bytes (zigzag varints: most slots hold small numbers, so a state of 20-44
    ints packs into a few dozen bytes); returns their count. The encoding is canonical, so
    equal rows pack to equal bytes."""
    k = 0
    for i in range(row.shape[0]):
        x = row[i]
        z = np.uint64(x << 1) ^ np.uint64(x >> 63)
        while z >= np.uint64(0x80):
            buf[k] = np.uint8((z & np.uint64(0x7F)) | np.uint64(0x80))
            z >>= np.uint64(7)
            k += 1
        buf[k] = np.uint8(z)
        k += 1
    return k


@jit
def unpack(pool: Any, off: int, row: Any) -> None:
    """`pack`'s inverse: the row whose bytes start at `pool[off]`."""
    k = off
    for i in range(row.shape[0]):
        z = np.uint64(0)
        shift = np.uint64(0)
        while True:
            byte = np.uint64(pool[k])
            k += 1
            z |= (byte & np.uint64(0x7F)) << shift
            if byte < np.uint64(0x80):
                break
            shift += np.uint64(7)
        row[i] = np.int64(z >> np.uint64(1)) ^ -np.int64(z & np.uint64(1))


@jit
def state_add(pool: Any, offs: Any, slots: Any, count: Any, row: Any, buf: Any) -> tuple[int, bool]:
    """The index of state `row` in the visited table, added if new. The table is the states'
    packed bytes end to end in `pool` (state n at offs[n]..offs[n+1]) and an open-addressing
    index of them (`slots`, linear probe); count = (states, bytes used)."""
    m = pack(row, buf)
    mask = slots.shape[0] - 1
    pos = np.int64(_hash_row(buf, 0, m, 0) & np.uint64(mask))
    while True:
        at = slots[pos]
        if at == _EMPTY:
            n, used = count[0], count[1]
            pool[used:used + m] = buf[:m]
            offs[n + 1] = used + m
            slots[pos] = n
            count[0] = n + 1
            count[1] = used + m
            return n, True
        lo = offs[at]
        if offs[at + 1] - lo == m:
            same = True
            for i in range(m):
                if pool[lo + i] != buf[i]:
                    same = False
                    break
            if same:
                return np.int64(at), False
        pos = (pos + 1) & mask


@jit
def shape_add(parent: int, vec: Any, length: int, sparent: Any, soff: Any, slen: Any, pool: Any,
              slots: Any, count: Any) -> int:
    """The id of window shape (`parent`, step shape `vec[:length]`), interned if new; count
    holds (shapes, pool ints used)."""
    mask = slots.shape[0] - 1
    h = _hash_row(vec, 0, length, parent + 7)
    pos = np.int64(h & np.uint64(mask))
    while True:
        at = slots[pos]
        if at == _EMPTY:
            n, used = count[0], count[1]
            sparent[n] = parent
            soff[n] = used
            slen[n] = length
            pool[used:used + length] = vec[:length]
            slots[pos] = n
            count[0] = n + 1
            count[1] = used + length
            return n
        if sparent[at] == parent and slen[at] == length:
            off = soff[at]
            same = True
            for i in range(length):
                if pool[off + i] != vec[i]:
                    same = False
                    break
            if same:
                return at
        pos = (pos + 1) & mask


@jit
def rehash_states(pool: Any, offs: Any, count: int, slots: Any) -> None:
    slots[:] = _EMPTY
    mask = slots.shape[0] - 1
    for n in range(count):
        pos = np.int64(_hash_row(pool, offs[n], offs[n + 1], 0) & np.uint64(mask))
        while slots[pos] != _EMPTY:
            pos = (pos + 1) & mask
        slots[pos] = n


@jit
def rehash_shapes(sparent: Any, soff: Any, slen: Any, pool: Any, count: int, slots: Any) -> None:
    slots[:] = _EMPTY
    mask = slots.shape[0] - 1
    for n in range(count):
        pos = np.int64(_hash_row(pool[soff[n]:soff[n] + slen[n]], 0, slen[n], sparent[n] + 7) & np.uint64(mask))
        while slots[pos] != _EMPTY:
            pos = (pos + 1) & mask
        slots[pos] = n


# --- the monitor's rules on rows --------------------------------------------------------------


@jit
def _start(rec: Any, child: Any, sparent: Any, soff: Any, slen: Any, pool: Any, sslots: Any, scount: Any,
           vec: Any, n: int) -> None:
    """Monitor.start: a settled window showing `child`'s status and LVTPC."""
    vec[0], vec[1], vec[2], vec[3] = child[R_STATUS], child[K_STATUS], child[R_MASKED], child[K_MASKED]
    rec[:] = 0
    rec[M_QUIET] = 2
    rec[M_SHAPE] = shape_add(-1, vec, 4, sparent, soff, slen, pool, sslots, scount)
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
    return (obs[O_NRSIG] == 1 and obs[O_NKSIG] == 1 and obs[O_NRPMI] == 0 and obs[O_NKPMI] == 1
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
    child = np.empty(width, dtype=np.int64)
    parent = np.empty(width, dtype=np.int64)
    buf = np.empty(width * 10, dtype=np.uint8)
    obs = np.empty(OBS_LEN, dtype=np.int64)
    scratch = np.zeros(16, dtype=np.int64)
    vec = np.empty(OBS_LEN * 2 + 8 * n + 16, dtype=np.int64)
    kvals = np.empty(n, dtype=np.int64)
    rec = np.empty(mon.shape[1], dtype=np.int64)
    transitions = 0
    for i in range(at_i, stop_i):
        unpack(pool, offs[i], parent)
        pr = mon[i - lo]
        for li in range((at_li if i == at_i else 0), nletters):
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
            if not pr[M_OPEN] and not eventful and results_equal and same:
                _start(rec, child, sparent, soff, slen, spool, sslots, scount, vec, n)
            else:
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
                shape = -1
                if judge or not settles:
                    length = _step_shape(vec, li, obs, reads[li], native[li], parent, child, kvals, n, mask)
                    shape = shape_add(pr[M_SHAPE], vec, length, sparent, soff, slen, spool, sslots, scount)
                if judge:
                    v = verdict[shape]
                    if v < 0 and q[Q_R3] and _inside_loss(pr, parent, child, obs, kvals, n, inert):
                        v = 0
                        verdict[shape] = 0
                    if v < 0:
                        out[0], out[1], out[2], out[3] = i, li, shape, transitions
                        return NEED_JUDGE
                    if v > 0:
                        transitions += 1
                        out[0], out[1], out[2], out[3] = i, li, v, transitions
                        return DIVERGED
                if settles:
                    _start(rec, child, sparent, soff, slen, spool, sslots, scount, vec, n)
                else:
                    rec[M_OPEN] = 1
                    rec[M_QUIET] = 0 if eventful else min(pr[M_QUIET] + 1, 2)
                    rec[M_SHAPE] = shape
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
                nmon[at - hi, :] = rec
    out[3] = transitions
    return DONE


_compiled: dict[str, Any] = {}


def compiled_expand(cs: CompiledStep) -> Callable[..., int]:
    """`expand` as `compiled_bfs` runs it: compiled, with `cs.step` (the compiled `step_row`,
    the same for every design) as its global `step_row`, so that its only per-design
    arguments are the fast form's hooks (first-class functions of fixed signatures) and numba
    can cache it on disk; without the compiler, `expand` itself. Compiling takes about a
    minute, once per machine (numba's cache beside this file, or NUMBA_CACHE_DIR)."""
    if COMPILER is not None or not hasattr(cs.step, "py_func"):
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


# --- the Python side: the driver ---------------------------------------------------------------


#: Frontier states handed to one `expand` call (between calls: the deadline, progress, room).
CHUNK = 2048


class _Tables:
    """The compiled search's arrays, grown by doubling between `expand` calls."""

    def __init__(self, width: int, mon_width: int) -> None:
        self.width = width
        self.pool = np.zeros(1 << 16, dtype=np.uint8)
        self.offs = np.zeros(1024, dtype=np.int64)
        self.slots = np.full(2048, _EMPTY, dtype=np.int32)
        self.count = np.zeros(2, dtype=np.int64)
        self.parent = np.zeros(1024, dtype=np.int64)
        self.via = np.zeros(1024, dtype=np.int16)
        self.mon = np.zeros((1, mon_width), dtype=np.int64)
        self.nmon = np.zeros((1024, mon_width), dtype=np.int64)
        self.sparent = np.zeros(1024, dtype=np.int64)
        self.soff = np.zeros(1024, dtype=np.int64)
        self.slen = np.zeros(1024, dtype=np.int64)
        self.verdict = np.full(1024, -1, dtype=np.int64)
        self.spool = np.zeros(1 << 16, dtype=np.int64)
        self.sslots = np.full(2048, _EMPTY, dtype=np.int64)
        self.scount = np.zeros(2, dtype=np.int64)

    def room(self, new: int, hi: int, vec: int) -> None:
        """Make room for `new` more states and shapes (of at most `vec` ints each)."""
        need = int(self.count[0]) + new
        if need + 1 > len(self.offs):
            size = _grown(len(self.offs), need + 1)
            self.offs, self.parent, self.via = (_resized(a, size) for a in (self.offs, self.parent, self.via))
        if need * 2 > len(self.slots):
            self.slots = np.full(_grown(len(self.slots), need * 2), _EMPTY, dtype=np.int32)
            rehash_states(self.pool, self.offs, int(self.count[0]), self.slots)
        used = int(self.count[1]) + new * self.width * 10
        if used > len(self.pool):
            self.pool = _resized(self.pool, _grown(len(self.pool), used))
        if need - hi > len(self.nmon):
            self.nmon = _resized(self.nmon, _grown(len(self.nmon), need - hi))
        shapes = int(self.scount[0]) + new
        if shapes > len(self.sparent):
            size = _grown(len(self.sparent), shapes)
            self.sparent, self.soff, self.slen = (_resized(a, size) for a in (self.sparent, self.soff, self.slen))
            grown = np.full(size, -1, dtype=np.int64)
            grown[:len(self.verdict)] = self.verdict
            self.verdict = grown
        if shapes * 2 > len(self.sslots):
            self.sslots = np.full(_grown(len(self.sslots), shapes * 2), _EMPTY, dtype=np.int64)
            rehash_shapes(self.sparent, self.soff, self.slen, self.spool, int(self.scount[0]), self.sslots)
        pooled = int(self.scount[1]) + new * vec
        if pooled > len(self.spool):
            self.spool = _resized(self.spool, _grown(len(self.spool), pooled))

    def path(self, i: int) -> list[int]:
        """The letters from the root to state `i` (its admitting path)."""
        out = []
        while i:
            out.append(int(self.via[i]))
            i = int(self.parent[i])
        return out[::-1]

    def nbytes(self) -> int:
        return sum(a.nbytes for a in vars(self).values() if isinstance(a, np.ndarray))


def _grown(size: int, need: int) -> int:
    while size < need:
        size *= 2
    return size


def _resized(a: Any, size: int) -> Any:
    out = np.zeros((size,) + a.shape[1:], dtype=a.dtype)
    out[:len(a)] = a
    return out


def compiled_bfs(p: Any, depth: int, cs: CompiledStep, deadline: float | None = None,
                 progress: Progress | None = None) -> SearchResult:
    """`kernel_bfs(p, depth, ...)` with the search in `expand`, stepping with `cs` (the plan's
    design's `kstep.compiled_step`): the same levels, admission order, statistics, end
    conditions and findings."""
    from .engine import KernelExpander  # the findings of a diverged path, built as there

    search = compiled_expand(cs)
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
    q = np.array([n, len(p.root), p.kernel.mask, meets, int(monitor.options.r3_min_period), *p.kernel.idx], dtype=np.int64)
    prm = np.array(p.kernel.params(), dtype=np.int64)
    t = _Tables(len(p.root), M_WRAPS + n)
    vec_len = OBS_LEN * 2 + 8 * n + 16
    root = np.array(p.root, dtype=np.int64)
    state_add(t.pool, t.offs, t.slots, t.count, root, np.zeros(len(root) * 10, dtype=np.uint8))
    vec = np.zeros(vec_len, dtype=np.int64)
    rec = np.zeros(M_WRAPS + n, dtype=np.int64)
    _start(rec, root, t.sparent, t.soff, t.slen, t.spool, t.sslots, t.scount, vec, n)
    t.mon = rec.reshape(1, -1).copy()
    verdicts: list[tuple[tuple[str, str, str | None], ...]] = [()]
    out = np.zeros(4, dtype=np.int64)

    def call(at_i: int, at_li: int, stop: int) -> int:
        return int(search(lo, hi, at_i, at_li, stop, t.pool, t.offs, t.slots, t.count, t.parent, t.via, t.mon,
                          t.nmon, letters, reads, native, prm, q, t.sparent, t.soff, t.slen, t.spool, t.sslots,
                          t.scount, t.verdict, out, cs.incr, cs.pause, cs.read, cs.write, cs.complete))

    lo, hi = 0, 1
    call(0, 0, 0)  # compiles (or loads) `expand` before the clock starts: an empty range
    stats = Stats(states=1)
    found: Candidates[Finding] = Candidates()
    start = time.perf_counter()
    reported = 0

    def report() -> None:
        nonlocal reported
        reported = stats.transitions
        if progress is not None:
            stats.elapsed = time.perf_counter() - start
            progress(stats, found.kinds)

    def judged(path: list[int]) -> int:
        """The Python monitor's verdict of the path's last step (as a code)."""
        state, window = p.root, monitor.start(p.shown(p.root))
        verdict: tuple[tuple[str, str, str | None], ...] = ()
        for k, li in enumerate(path):
            state, obs = p.kernel.step(state, p.letters[li])
            verdict, window = monitor.advance(window, li, obs, p.shown(state))
            if verdict and k + 1 < len(path):
                raise AssertionError(f"the compiled kernel went on after step {k} of {path}, which diverges")
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
            t.room((stop - at_i) * nletters, hi, vec_len)
            code = call(at_i, at_li, stop)
            stats.transitions += int(out[3])
            stats.states = int(t.count[0])
            i, li = int(out[0]), int(out[1])
            if code == DONE:
                at_i, at_li = stop, 0
            elif code == NEED_JUDGE:
                t.verdict[int(out[2])] = judged(t.path(i) + [li])
                at_i, at_li = i, li
            elif code == DIVERGED:
                for f in kx.findings(tuple(t.path(i) + [li]), verdicts[int(out[2])]):
                    found.add(f)
                at_i, at_li = i, li + 1
            else:
                raise RuntimeError("a step wrote more than an observation row holds")
            if stats.transitions - reported >= PROGRESS_EVERY and at_i < hi:
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
    stats.elapsed = time.perf_counter() - start
    return SearchResult("exhaustive", stats, found.findings())
