"""The incremental judge: open obligations carried per state instead of a re-read trace.

The checker (`vpmu.checker.compare`) judges a whole trace. A search path, though, is judged
after every step, and almost all of a path is settled: once every overflow obligation is met
(the same GLOBAL_STATUS, as many PMIs, each reference wrap matched by one KVM overflow
signal) and both machines show the same values and LVTPC, nothing before that point can make
a later step diverge or be tolerated. The monitor therefore keeps only the *window* since the
last settled point: the values at that point (`base`) and the steps after it. A step from a
settled state that shows the same on both machines without any overflow is quiet and needs no
judging (the object engine's rule too); any other step is judged by the checker itself on
the window — the window's obligations are exactly what is still open (wraps not yet
signalled, PMIs owed, status gaps and their R1/R3 deadlines) — and the verdict is memoised
by the window, which repeats across the search. When the step settles everything the window
closes again.

So the monitor is the checker, not a second implementation of it; what it adds is the claim
that a settled prefix does not matter, which tests/test_compact.py checks against
`compare(..., open_end=True)` on every path of the explorer's spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vpmu.actions import Action, Cpuid
from vpmu.checker import compare
from vpmu.config import PmuConfig
from vpmu.tolerances import CheckerOptions
from vpmu.trace import Observation, Result, Signal

from .machine import StepObs

#: The values both machines show after a step: (reference counters, KVM counters, reference
#: status, KVM status, reference LVTPC, KVM LVTPC); counters are the counters in use.
Shown = tuple[tuple[int, ...], tuple[int, ...], int, int, int, int]
#: One judged step of a window: the letter's index, its compact observation, what it shows.
Entry = tuple[int, StepObs, Shown]
#: A window: the values at its start and the steps since.
Window = tuple[Shown, tuple[Entry, ...]]
#: An untolerated divergence as the kernel reports it: (kind, visibility, counter).
Verdict = tuple[tuple[str, str, str | None], ...]


def settled(entries: Sequence[Entry], losses: frozenset[str] = frozenset()) -> bool:
    """Every obligation of the window is met at its end (judge.py `_balanced`, plus equal
    values and LVTPC): the next window may start here. A wrap whose loss the options tolerate
    (`losses`: the KVM signal sources recording it, e.g. "min-period" under R3) is met too."""
    last = entries[-1][2]
    if last[0] != last[1] or last[2] != last[3] or last[4] != last[5]:
        return False
    pmis = 0
    wraps: dict[int, int] = {}
    for _, obs, _ in entries:
        pmis += len(obs[3]) - len(obs[4])
        for pmc, _, _ in obs[5]:
            wraps[pmc] = wraps.get(pmc, 0) + 1
        for pmc, _, source in obs[6]:
            if source in ("hw", "emulated") or source in losses:
                wraps[pmc] = wraps.get(pmc, 0) - 1
    return not pmis and not any(wraps.values())


def quiet(obs: StepObs, shown: Shown) -> bool:
    """judge.py `_quiet`: the same on both machines and no overflow."""
    return (not obs[3] and not obs[4] and not obs[5] and not obs[6] and obs[1] == obs[2]
            and shown[0] == shown[1] and shown[2] == shown[3] and shown[4] == shown[5])


@dataclass
class Monitor:
    """Judges compact steps for one configuration. `letters` are the alphabet's actions;
    `layout` the position of each counter in use in the CPU's counter list."""

    cfg: PmuConfig
    options: CheckerOptions
    letters: Sequence[Action]
    layout: Sequence[int]
    memo: dict[tuple[Shown, tuple[Entry, ...]], Verdict] = field(default_factory=dict)
    judged: int = 0

    def __post_init__(self) -> None:
        o = self.options
        self.losses = frozenset(src for src, on in (("min-period", o.r3_min_period), ("ignored", o.r7_ignored_overflow),
                                                    ("disallowed", o.r11_disallowed_overflow)) if on)

    def advance(self, window: Window, letter: int, obs: StepObs, shown: Shown) -> tuple[Verdict, Window]:
        """The verdict of one more step, and the window after it."""
        base, entries = window
        if not entries and quiet(obs, shown):
            return (), (shown, ())
        full = entries + ((letter, obs, shown),)
        key = (base, full)
        verdict = self.memo.get(key)
        if verdict is None:
            verdict = self.judge(base, full)
            self.memo[key] = verdict
        if verdict:
            return verdict, window
        return (), ((shown, ()) if settled(full, self.losses) else (base, full))

    def judge(self, base: Shown, entries: Sequence[Entry]) -> Verdict:
        """`compare(..., open_end=True)` on the window: a settled start, then its steps."""
        self.judged += 1
        ref, kvm = self.observations(base, entries)
        divs = compare(self.cfg, ref, kvm, self.options, open_end=True)
        return tuple((d.kind, d.visibility, d.counter) for d in divs if not d.tolerated)

    def observations(self, base: Shown, entries: Sequence[Entry]) -> tuple[list[Observation], list[Observation]]:
        """The window as the checker's observation lists; its start is a step without
        accesses or overflows that shows the settled values."""
        ref = [Observation(0, Cpuid(), 0, (), self.counters(base[0]), base[2], base[4])]
        kvm = [Observation(0, Cpuid(), 0, (), self.counters(base[1]), base[3], base[5])]
        insn = 0
        for step, (letter, obs, shown) in enumerate(entries, start=1):
            action = self.letters[letter]
            ref.append(Observation(step, action, insn + obs[0], tuple(Result(v, f) for v, f in obs[1]),
                                   self.counters(shown[0]), shown[2], shown[4], tuple(insn + p for p in obs[3]),
                                   tuple(Signal(p, insn + i, src) for p, i, src in obs[5])))  # type: ignore[arg-type]
            kvm.append(Observation(step, action, insn + obs[0], tuple(Result(v, f) for v, f in obs[2]),
                                   self.counters(shown[1]), shown[3], shown[5], tuple(insn + p for p in obs[4]),
                                   tuple(Signal(p, insn + i, src) for p, i, src in obs[6])))  # type: ignore[arg-type]
            insn += obs[0]
        return ref, kvm

    def counters(self, values: Sequence[int]) -> tuple[int, ...]:
        out = [0] * len(self.cfg.pmc_indices)
        for pos, v in zip(self.layout, values, strict=True):
            out[pos] = v
        return tuple(out)
