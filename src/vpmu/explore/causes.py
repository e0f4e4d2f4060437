"""One counterexample per cause, not per divergence kind.

A search meets the same bug along many paths and different bugs of the same kind. The
searches keep a bounded set of candidates (`Candidates`: the first few per coarse key, the
divergence plus the set of action kinds on its path); `select_causes` shrinks them, names
each by its cause `signature` and keeps the shortest trace per signature.

A signature is the first divergent observation — kind, visibility, counter and what was
compared (value, status, PMI, fault or overflow signal) — and the shape of the shrunk trace:
its action kinds in order, with the assumptions they rest on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from .judge import Finding, Target
from .shrink import shrink_finding
from .space import kind_of

#: Candidates kept per coarse key, and coarse keys per (kind, visibility), in discovery order.
PER_KEY = 2
KEYS_PER_KIND = 24

#: Default cap on the counterexamples a report lists (`--max-counterexamples`).
MAX_COUNTEREXAMPLES = 10


def compared(kind: str, visibility: str) -> str:
    """What the checker compared to find a divergence of `kind`."""
    if kind == "wrong-value":
        return "value"
    if kind.endswith("-pmi"):
        return "pmi"
    if kind.endswith("-fault"):
        return "fault"
    return "status" if visibility == "guest" else "signal"


def signature(f: Finding) -> str:
    """The cause of a (shrunk) finding, e.g. `lost-overflow guest gp0 status: write-counter
    native-held cpuid [pmi-skid pmi-after-handler]`."""
    shape = " ".join(kind_of(f.cfg, a) for a in f.suffix)
    assumed = " ".join(f.assumptions) or "no assumption"
    return f"{f.kind} {f.visibility} {f.counter or '-'} {compared(f.kind, f.visibility)}: {shape} [{assumed}]"


def digest(f: Finding) -> str:
    """8 hex digits naming a cause (stable across runs: saved files use it)."""
    return hashlib.blake2b(signature(f).encode(), digest_size=4).hexdigest()


class Recorded(Protocol):
    """What a search records: anything with a `record_key` (the kind of finding it is)."""

    @property
    def record_key(self) -> Hashable: ...


F = TypeVar("F", bound=Recorded)


def coarse_key(f: Recorded) -> Hashable:
    """A cause before shrinking: for an explorer `Finding` its kind, visibility, counter and the
    set of action kinds on its path; for another record (`vpmu.check`'s differences) its key."""
    if isinstance(f, Finding):
        return (f.record_key, f.counter, frozenset(kind_of(f.cfg, a) for a in f.suffix))
    return f.record_key


class Candidates(Generic[F]):
    """Findings worth shrinking, in discovery order: the first `PER_KEY` per coarse key, at
    most `KEYS_PER_KIND` coarse keys per record key (kind and visibility). Adding parts in
    order gives the same set as adding their findings one by one, so merged parallel
    searches keep what one process keeps."""

    def __init__(self, findings: Iterable[F] = ()) -> None:
        self._kept: list[F] = []
        self._per_key: dict[Hashable, int] = {}
        self._keys: dict[Hashable, int] = {}
        for f in findings:
            self.add(f)

    def add(self, f: F) -> None:
        kind, key = f.record_key, coarse_key(f)
        seen = self._per_key.get(key)
        if seen is None:
            if self._keys.get(kind, 0) >= KEYS_PER_KIND:
                return
            self._keys[kind] = self._keys.get(kind, 0) + 1
            seen = 0
        if seen < PER_KEY:
            self._per_key[key] = seen + 1
            self._kept.append(f)

    def wants(self, kind: Hashable, key: Hashable) -> bool:
        """Would a finding of record key `kind` and coarse key `key` be kept? (A search that
        must replay a path to build the finding asks first.)"""
        seen = self._per_key.get(key)
        if seen is None:
            return self._keys.get(kind, 0) < KEYS_PER_KIND
        return seen < PER_KEY

    @property
    def kinds(self) -> int:
        """Distinct record keys (kind and visibility) found so far."""
        return len(self._keys)

    def findings(self) -> list[F]:
        return list(self._kept)


def select_causes(target: Target, findings: Sequence[Finding], cap: int,
                  deadline: float | None = None) -> tuple[list[Finding], int]:
    """Shrink every candidate, keep the shortest per signature (the first found on a tie),
    and return at most `cap` of them with the number of distinct causes. Within the cap each
    (kind, visibility) gets its shortest cause before any gets a second; the result is sorted
    by kind, visibility, then length. Shrinking stops at `deadline` (the search's time
    budget): the candidate being shrunk keeps its best shrink so far; of those left, one is
    kept as found for each kind and visibility that has no counterexample yet, the rest are
    dropped (unshrunk traces would each count as a cause of their own)."""
    best: dict[str, Finding] = {}
    done: set[tuple[object, ...]] = set()
    for f in findings:
        start = (f.kind, f.visibility, f.counters, f.suffix)
        if start in done:
            continue
        done.add(start)
        if deadline is not None and time.time() > deadline:
            if any((b.kind, b.visibility) == (f.kind, f.visibility) for b in best.values()):
                continue
            s = f
        else:
            s = shrink_finding(target, f, deadline)
        sig = signature(s)
        if sig not in best or len(s.suffix) < len(best[sig].suffix):
            best[sig] = s
    groups: dict[tuple[str, str], list[Finding]] = {}
    for s in best.values():
        groups.setdefault((s.kind, s.visibility), []).append(s)
    for group in groups.values():
        group.sort(key=lambda s: len(s.suffix))  # stable: discovery order breaks ties
    chosen: list[tuple[tuple[str, str], int, Finding]] = []
    rank = 0
    while len(chosen) < cap and any(rank < len(g) for g in groups.values()):
        for kind in sorted(groups):
            if rank < len(groups[kind]) and len(chosen) < cap:
                chosen.append((kind, rank, groups[kind][rank]))
        rank += 1
    chosen.sort(key=lambda c: (c[0], c[1]))
    return [f for _, _, f in chosen], len(best)
