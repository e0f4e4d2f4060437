"""The compiled search's tables: visited states packed as bytes, and interned window shapes.

A state row packs into zigzag varints (`pack`/`unpack`: most slots hold small numbers, so a
row of 20-44 ints takes a few dozen bytes); the visited table is the packed states end to end
in one byte pool with an open-addressing index over them (`state_add`), so a state's index is
its admission order. Window shapes (vpmu.explore.compact.monitor, rule 1) are interned the
same way (`shape_add`). `Tables` holds the arrays and doubles them when the compiled loop
asks for room. Compiled by numba where it is importable (`jit`: cached on disk and keyed by
what the code reads, kjit.keyed_njit), else run as Python.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from . import layout
from .kjit import cache_key, keyed_njit

try:  # the compiler is optional: without it `expand` runs as Python
    import numba  # noqa: F401

    COMPILER: str | None = None
except ImportError as err:  # pragma: no cover - numba is a dependency; this is the fallback
    COMPILER = f"numba is not importable ({err})"


def _key() -> str:
    """What this module's compiled code depends on besides its own file (which numba's cache
    checks): the step's key and the layout's constants."""
    consts = sorted((k, v) for k, v in vars(layout).items() if isinstance(v, int | tuple) and not k.startswith("_"))
    return cache_key() + hashlib.sha256(repr(consts).encode()).hexdigest()[:8]


def jit(fn: Any) -> Any:
    """`fn` compiled by numba and cached on disk under `_key()` too (kjit.keyed_njit), or
    `fn` itself without numba."""
    return fn if COMPILER else keyed_njit(fn, _key(), cache=True, nogil=True)


#: An empty slot of an index.
EMPTY = -1


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
def _same(pool: Any, off: int, buf: Any, m: int) -> bool:
    """Whether the `m` packed bytes at `pool[off]` are `buf[:m]`."""
    for i in range(m):  # noqa: SIM110 - a loop numba compiles, not a generator
        if pool[off + i] != buf[i]:
            return False
    return True


@jit
def state_add(pool: Any, offs: Any, slots: Any, count: Any, row: Any, buf: Any) -> tuple[Any, bool]:
    """The index of state `row` in the visited table, added if new. The table is the states'
    packed bytes end to end in `pool` (state n at offs[n]..offs[n+1]) and an open-addressing
    index of them (`slots`, linear probe); count = (states, bytes used)."""
    m = pack(row, buf)
    mask = slots.shape[0] - 1
    pos = np.int64(_hash_row(buf, 0, m, 0) & np.uint64(mask))
    while True:
        at = slots[pos]
        if at == EMPTY:
            n, used = count[0], count[1]
            pool[used:used + m] = buf[:m]
            offs[n + 1] = used + m
            slots[pos] = n
            count[0] = n + 1
            count[1] = used + m
            return n, True
        if offs[at + 1] - offs[at] == m and _same(pool, offs[at], buf, m):
            return np.int64(at), False
        pos = (pos + 1) & mask


@jit
def shape_add(parent: int, vec: Any, length: int, sparent: Any, soff: Any, slen: Any, pool: Any,
              slots: Any, count: Any, buf: Any, insert: bool = True) -> Any:
    """The id of window shape (`parent`, step shape `vec[:length]`), interned if new (or -1
    when new and not `insert`). Shapes are packed like states (`pack`, through the byte
    buffer `buf`) into the byte `pool`; count holds (shapes, pool bytes used)."""
    m = pack(vec[:length], buf)
    mask = slots.shape[0] - 1
    pos = np.int64(_hash_row(buf, 0, m, parent + 7) & np.uint64(mask))
    while True:
        at = slots[pos]
        if at == EMPTY:
            if not insert:
                return -1
            n, used = count[0], count[1]
            sparent[n] = parent
            soff[n] = used
            slen[n] = m
            pool[used:used + m] = buf[:m]
            slots[pos] = n
            count[0] = n + 1
            count[1] = used + m
            return n
        if sparent[at] == parent and slen[at] == m and _same(pool, soff[at], buf, m):
            return at
        pos = (pos + 1) & mask


@jit
def rehash_states(pool: Any, offs: Any, count: int, slots: Any) -> None:
    slots[:] = EMPTY
    mask = slots.shape[0] - 1
    for n in range(count):
        pos = np.int64(_hash_row(pool, offs[n], offs[n + 1], 0) & np.uint64(mask))
        while slots[pos] != EMPTY:
            pos = (pos + 1) & mask
        slots[pos] = n


@jit
def rehash_shapes(sparent: Any, soff: Any, slen: Any, pool: Any, count: int, slots: Any) -> None:
    slots[:] = EMPTY
    mask = slots.shape[0] - 1
    for n in range(count):
        pos = np.int64(_hash_row(pool, soff[n], soff[n] + slen[n], sparent[n] + 7) & np.uint64(mask))
        while slots[pos] != EMPTY:
            pos = (pos + 1) & mask
        slots[pos] = n


class Tables:
    """The compiled search's arrays, grown by doubling between `expand` calls."""

    def __init__(self, width: int, mon_width: int) -> None:
        self.width = width
        self.pool = np.zeros(1 << 16, dtype=np.uint8)
        self.offs = np.zeros(1024, dtype=np.int64)
        self.slots = np.full(2048, EMPTY, dtype=np.int32)
        self.count = np.zeros(2, dtype=np.int64)
        self.parent = np.zeros(1024, dtype=np.int64)
        self.via = np.zeros(1024, dtype=np.int16)
        self.mon = np.zeros((1, mon_width), dtype=np.int64)
        self.nmon = np.zeros((1024, mon_width), dtype=np.int64)
        self.sparent = np.zeros(1024, dtype=np.int64)
        self.soff = np.zeros(1024, dtype=np.int64)
        self.slen = np.zeros(1024, dtype=np.int64)
        self.verdict = np.full(1024, -1, dtype=np.int64)
        self.spool = np.zeros(1 << 16, dtype=np.uint8)
        self.sslots = np.full(2048, EMPTY, dtype=np.int64)
        self.scount = np.zeros(2, dtype=np.int64)

    def grow(self, hi: int, vec: int) -> None:
        """Double what cannot hold one more transition (`compiled._roomy` asked for room):
        a state and its window (the level's first new state has index `hi`), and three window
        shapes of at most `vec` ints."""
        n, used = int(self.count[0]), int(self.count[1])
        if n + 2 > len(self.offs):
            size = 2 * len(self.offs)
            self.offs, self.parent, self.via = (_resized(a, size) for a in (self.offs, self.parent, self.via))
        if 2 * (n + 1) > len(self.slots):
            self.slots = np.full(2 * len(self.slots), EMPTY, dtype=np.int32)
            rehash_states(self.pool, self.offs, n, self.slots)
        if used + self.width * 10 > len(self.pool):
            self.pool = _resized(self.pool, 2 * len(self.pool))
        if n + 1 - hi > len(self.nmon):
            self.nmon = _resized(self.nmon, 2 * len(self.nmon))
        shapes, pooled = int(self.scount[0]), int(self.scount[1])
        if shapes + 3 > len(self.sparent):
            size = 2 * len(self.sparent)
            self.sparent, self.soff, self.slen = (_resized(a, size) for a in (self.sparent, self.soff, self.slen))
            grown = np.full(size, -1, dtype=np.int64)
            grown[:len(self.verdict)] = self.verdict
            self.verdict = grown
        if 2 * (shapes + 3) > len(self.sslots):
            self.sslots = np.full(2 * len(self.sslots), EMPTY, dtype=np.int64)
            rehash_shapes(self.sparent, self.soff, self.slen, self.spool, shapes, self.sslots)
        while pooled + 3 * vec * 10 > len(self.spool):
            self.spool = _resized(self.spool, 2 * len(self.spool))

    def path(self, i: int) -> list[int]:
        """The letters from the root to state `i` (its admitting path)."""
        out = []
        while i:
            out.append(int(self.via[i]))
            i = int(self.parent[i])
        return out[::-1]


def _resized(a: Any, size: int) -> Any:
    out = np.zeros((size,) + a.shape[1:], dtype=a.dtype)
    out[:len(a)] = a
    return out
