"""Shrinking: make a counterexample as small as it gets while it keeps its divergence.

The order is "fewer steps, then smaller magnitude": a candidate is tried only if it has
fewer steps than the current sequence, or as many steps with one action simpler (a plain
CPUID for any other intercepted or emulated step: the simplest VM-exit that retires an
instruction; a shorter run, a smaller batch, a write value nearer 0, hold_pmi off, the host
PMI before the handler). Every accepted candidate is therefore strictly smaller in that well-founded
order, so shrinking ends even without its `max_tries` cap (which bounds the replays). When
it ends without reaching the cap, no single step can be dropped and no single action
simplified any more. Given a `deadline` (the search's `--time-budget`), shrinking stops there
too and keeps the smallest sequence found so far, which still diverges.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from vpmu.actions import Action, Batch, Cpuid, Emulate, Hlt, Native, Rdmsr, Rdpmc, Wrmsr

from .judge import Finding, Judge, Target
from .space import EventMap, setup_prefix, touches


def _simpler_actions(action: Action, mask: int) -> Iterable[Action]:
    """Candidate replacements for one action, simplest first; each strictly simpler."""
    if isinstance(action, Wrmsr | Rdmsr | Rdpmc | Hlt | Emulate | Batch):
        yield Cpuid()
    if isinstance(action, Native):
        if action.count > 1:
            yield replace(action, count=1, branches=min(action.branches, 1))
            if action.count > 2:
                yield replace(action, count=action.count // 2,
                              branches=min(action.branches, action.count // 2))
            yield replace(action, count=action.count - 1,
                          branches=min(action.branches, action.count - 1))
        if action.branches:
            yield replace(action, branches=0)
        if action.cpl:
            yield replace(action, cpl=0)
        if action.hold_pmi:
            yield replace(action, hold_pmi=False)
    elif isinstance(action, Batch | Emulate):
        items = action.items
        for i in range(len(items)):
            if len(items) > 1:
                yield replace(action, items=items[:i] + items[i + 1:])
    elif isinstance(action, Wrmsr):
        v = action.value & mask
        for simpler in (0, 1, mask, mask - 1, mask - 2):
            if _magnitude(simpler, mask) < _magnitude(v, mask):
                yield replace(action, value=simpler)
    elif isinstance(action, Cpuid) and action.host_pmi != "before-handler":
        yield replace(action, host_pmi="before-handler")


def _past(deadline: float | None) -> bool:
    """`vpmu.explore.search.past_deadline` (not imported: search imports this module, via causes)."""
    return deadline is not None and time.time() > deadline


def _magnitude(v: int, mask: int) -> int:
    """How far a value is from 0 in counter terms (so -1 is as simple as 1)."""
    v &= mask
    return min(v, mask + 1 - v)


def shrink(
    actions: Sequence[Action],
    still_fails: Callable[[Sequence[Action]], bool],
    mask: int,
    max_tries: int = 2000,
    deadline: float | None = None,
) -> tuple[Action, ...]:
    """Greedy minimisation: drop chunks of steps (halving chunk sizes, like ddmin), then
    simplify single actions, repeating until nothing more can be removed or simplified, the
    tries reach `max_tries` or the wall clock `deadline` passes (then: the best so far)."""
    current = tuple(actions)
    tries = 0

    def more() -> bool:
        return tries < max_tries and not _past(deadline)

    progress = True
    while progress and more():
        progress = False
        chunk = max(1, len(current) // 2)
        while chunk >= 1 and more():
            i = 0
            while i < len(current) and more():
                candidate = current[:i] + current[i + chunk:]
                tries += 1
                if candidate and still_fails(candidate):
                    current = candidate
                    progress = True
                else:
                    i += chunk
            chunk //= 2
        for i in range(len(current)):
            for simpler in _simpler_actions(current[i], mask):
                if not more():
                    return current
                candidate = current[:i] + (simpler,) + current[i + 1:]
                tries += 1
                if still_fails(candidate):
                    current = candidate
                    progress = True
                    break
    return current


def first_of_kind(target: Target, counters: tuple[int, ...], suffix: Sequence[Action], kind: str,
                  visibility: str, judge: Judge | None = None, events: EventMap = ()) -> Finding | None:
    """Replay set-up (`counters` counting `events`) + `suffix`; the first untolerated
    divergence of `kind`, if any."""
    judge = judge or Judge(target)
    _, divs = judge.root(setup_prefix(target.cfg, counters, events) + tuple(suffix))
    for d in divs:
        if d.kind == kind and d.visibility == visibility:
            return Finding.of(target.cfg, counters, tuple(suffix), d, events)
    return None


def shrink_finding(target: Target, finding: Finding, deadline: float | None = None) -> Finding:
    """Minimise while the same divergence kind and visibility stay reported: fewer and
    simpler explored steps (the set-up prefix is kept, so the cause cannot drift into the
    set-up), then fewer counters in use; finally cut the trace after the first step at
    which the divergence is reported, so nothing follows it. Past `deadline` only that cut
    is made (at most one replay per step): the finding is as small as it got by then."""
    judge = Judge(target)
    kind, vis, events = finding.kind, finding.visibility, finding.events

    def found(counters: tuple[int, ...], suffix: Sequence[Action]) -> Finding | None:
        return first_of_kind(target, counters, suffix, kind, vis, judge, events)

    def shrink_suffix(counters: tuple[int, ...], suffix: Sequence[Action]) -> tuple[Action, ...]:
        return shrink(suffix, lambda candidate: found(counters, candidate) is not None, target.cfg.gp_mask,
                      deadline=deadline)

    counters, suffix = finding.counters, shrink_suffix(finding.counters, finding.suffix)
    for pmc in sorted(counters, reverse=True):
        if len(counters) == 1 or _past(deadline):
            break
        fewer = tuple(c for c in counters if c != pmc)
        kept = tuple(a for a in suffix if not touches(target.cfg, a, pmc))
        if kept and found(fewer, kept) is not None:
            counters, suffix = fewer, shrink_suffix(fewer, kept)
    for n in range(len(suffix) + 1):
        result = found(counters, suffix[:n])
        if result is not None:
            return result
    raise AssertionError("shrinking lost the divergence")
