"""The incremental judge: the open obligations carried with each state, not a re-read trace.

The checker (`vpmu.checker.compare`) judges a whole trace. A search path, though, is judged
after every step, and most of a path is settled: once every overflow obligation is met (each
reference wrap matched by one KVM overflow signal or by a loss the options tolerate, as many
PMIs) and both machines show the same values, GLOBAL_STATUS and LVTPC, nothing before that
point can make a later step diverge or be tolerated. The monitor therefore keeps only the
*window* since the last settled point (`Window`: a step showing the settled values, then the
steps since, as the checker's observations). What is open in the window is exactly what the
checker still has to decide: wraps not yet signalled, PMIs owed, status gaps and their
R1/R3/skid deadlines. A step is judged by the checker itself on the window, except

* a quiet step from a settled window (the same on both machines, no overflow: the object
  engine's rule), and
* an inert step from a window where every wrap is met and the last two steps carried no
  signal or PMI (so no deadline can pass): no signal, PMI or differing read (but a
  GLOBAL_STATUS read showing the status both machines already showed), the same status and
  LVTPC on both machines as before, equal values;

and the verdict of a step from a settled window is memoised (many states show the same
values). When a step settles everything the window closes again.

So the monitor is the checker, not a second implementation of it; what it adds is the claim
that a settled prefix and an inert step do not change the verdict, which tests/test_compact.py
checks against `compare(..., open_end=True)` on the whole trace, step by step, and through
the engines' agreement on whole bounded spaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from vpmu.actions import Action, Batch, Cpuid, Emulate, Rdmsr, Rdpmc, SetFilter, Wrmsr
from vpmu.checker import compare
from vpmu.config import PmuConfig
from vpmu.pmc_map import status_msr
from vpmu.tolerances import CheckerOptions
from vpmu.trace import Observation, Result, Signal

from .layout import StepObs

#: The values both machines show after a step: (reference counters, KVM counters, reference
#: status, KVM status, reference LVTPC, KVM LVTPC); counters are the counters in use.
Shown = tuple[tuple[int, ...], tuple[int, ...], int, int, int, int]
#: An untolerated divergence as the kernel reports it: (kind, visibility, counter).
Verdict = tuple[tuple[str, str, str | None], ...]


class Window(NamedTuple):
    """The trace since the last settled point, as the checker reads it: both machines'
    observations (the first one a step without accesses or overflows that shows the settled
    values), instructions retired since, the open wrap balance per counter in use (reference
    wraps minus KVM signals and tolerated losses), reference PMIs minus KVM PMIs, and whether
    the last two steps carried no overflow signal or PMI (then, with every wrap met, nothing is
    still due: no R1/R3/skid deadline can pass)."""

    ref: tuple[Observation, ...]
    kvm: tuple[Observation, ...]
    insn: int
    wraps: tuple[int, ...]
    pmis: int
    quiet_steps: int

    @property
    def open(self) -> bool:
        return len(self.ref) > 1


def _status_reads(cfg: PmuConfig, action: Action) -> tuple[bool, ...]:
    """For each result `action` produces (vpmu.world: one per WRMSR, RDMSR, RDPMC, also
    inside an emulated batch, and per filter ioctl), whether it reads GLOBAL_STATUS."""
    items = action.items if isinstance(action, Emulate | Batch) else (action,)
    return tuple(isinstance(i, Rdmsr) and i.msr == status_msr(cfg) for i in items
                 if isinstance(i, Rdmsr | Wrmsr | Rdpmc | SetFilter))


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
    judged: int = 0

    def __post_init__(self) -> None:
        o = self.options
        #: KVM signal sources recording a loss the options tolerate: they meet a wrap.
        self.losses = frozenset(src for src, on in (("min-period", o.r3_min_period), ("ignored", o.r7_ignored_overflow),
                                                    ("disallowed", o.r11_disallowed_overflow)) if on)
        self._starts: dict[Shown, Window] = {}
        #: per letter, which of its results are reads of GLOBAL_STATUS
        self._status_reads = [_status_reads(self.cfg, a) for a in self.letters]
        #: the slot (position in `layout`) of each counter in use, by PMC index
        self._slot = {self.cfg.pmc_indices[pos]: k for k, pos in enumerate(self.layout)}
        self._settled: dict[object, Verdict] = {}

    def start(self, shown: Shown) -> Window:
        """A settled window showing `shown` (one per distinct `shown`, shared)."""
        window = self._starts.get(shown)
        if window is None:
            ref = Observation(0, Cpuid(), 0, (), self.counters(shown[0]), shown[2], shown[4])
            kvm = Observation(0, Cpuid(), 0, (), self.counters(shown[1]), shown[3], shown[5])
            window = self._starts[shown] = Window((ref,), (kvm,), 0, (0,) * len(self.layout), 0, 2)
        return window

    def advance(self, window: Window, letter: int, obs: StepObs, shown: Shown) -> tuple[Verdict, Window]:
        """The verdict of one more step, and the window after it.

        Judged by `compare(..., open_end=True)` on the window, except a quiet step from a
        settled window (the object engine's rule) and an *inert* step — no signal, PMI or
        read difference (but GLOBAL_STATUS reads showing the status both machines showed
        before), the same status and LVTPC on both machines as before it, equal values — from a
        window where every wrap is met and nothing is still due."""
        if not window.open and quiet(obs, shown):
            return (), self.start(shown)
        step = len(window.ref)
        insn = window.insn + obs[0]
        action = self.letters[letter]
        last_r, last_k = window.ref[-1], window.kvm[-1]
        r = Observation(step, action, insn, tuple(Result(v, f) for v, f in obs[1]), self.counters(shown[0]),
                        shown[2], shown[4], tuple(window.insn + p for p in obs[3]),
                        tuple(Signal(p, window.insn + i, src) for p, i, src in obs[5]))  # type: ignore[arg-type]
        k = Observation(step, action, insn, tuple(Result(v, f) for v, f in obs[2]), self.counters(shown[1]),
                        shown[3], shown[5], tuple(window.insn + p for p in obs[4]),
                        tuple(Signal(p, window.insn + i, src) for p, i, src in obs[6]))  # type: ignore[arg-type]
        ref, kvm = window.ref + (r,), window.kvm + (k,)
        eventful = bool(obs[3] or obs[4] or obs[5] or obs[6])
        inert = (not eventful and shown[0] == shown[1]
                 and (shown[2], shown[3], shown[4], shown[5])
                 == (last_r.global_status, last_k.global_status, last_r.lvtpc, last_k.lvtpc)
                 and (obs[1] == obs[2] or all(
                     rr == kr or (read and rr == (last_r.global_status, False) and kr == (last_k.global_status, False))
                     for rr, kr, read in zip(obs[1], obs[2], self._status_reads[letter], strict=True))))
        wraps = list(window.wraps)
        for pmc, _, _ in obs[5]:
            wraps[self._slot[pmc]] += 1
        for pmc, _, source in obs[6]:
            if source in ("hw", "emulated") or source in self.losses:
                wraps[self._slot[pmc]] -= 1
        pmis = window.pmis + len(obs[3]) - len(obs[4])
        if not (inert and window.quiet_steps >= 2 and not any(window.wraps)):
            # from a settled window (one shared object per shown values, `start`) the verdict is
            # a function of the window and the step: memoised, many states show the same values
            key = (id(window), letter, obs, shown) if len(ref) == 2 else None
            verdict = self._settled.get(key) if key is not None else None
            if verdict is None:
                self.judged += 1
                divs = compare(self.cfg, ref, kvm, self.options, open_end=True)
                verdict = tuple((d.kind, d.visibility, d.counter) for d in divs if not d.tolerated)
                if key is not None:
                    self._settled[key] = verdict
            if verdict:
                return verdict, window
        if not pmis and not any(wraps) and shown[0] == shown[1] and shown[2] == shown[3] and shown[4] == shown[5]:
            return (), self.start(shown)
        return (), Window(ref, kvm, insn, tuple(wraps), pmis, 0 if eventful else min(window.quiet_steps + 1, 2))

    def counters(self, values: Sequence[int]) -> tuple[int, ...]:
        out = [0] * len(self.cfg.pmc_indices)
        for pos, v in zip(self.layout, values, strict=True):
            out[pos] = v
        return tuple(out)
