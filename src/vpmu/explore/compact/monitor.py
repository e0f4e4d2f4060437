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

Two more rules spare the checker where its verdict is known without it:

1. *A step whose window has a shape judged before.* The checker reads a window only through
   its shape: the settled status and LVTPC it starts from (and whether its values are
   equal), then per step its *shape* (`Monitor._step_shape`: the letter, which values are
   equal, what the reference counted, the statuses, LVTPCs, PMIs and signals at their
   offsets), not the values themselves. So
   its verdict is memoised by the window's shape (`Window.shape`, interned) and the step's:
   the many states that show different values through the same shape are judged once.
2. *A step inside a tolerated loss* (`Monitor._inside_loss`): after a wrap that perf
   swallowed (R3: a period of 1 under its minimum of 2), the reference shows a status bit, a
   PMI and a masked LVTPC that KVM does not, and the window stays open until KVM's next
   wrap. Every inert step in it, and that next wrap itself, leaves the loss tolerated and
   adds nothing the checker could fault.

So the monitor is the checker, not a second implementation of it; what it adds is the claim
that a settled prefix, an inert step and the two rules do not change the verdict, which
tests/test_compact.py checks against `compare(..., open_end=True)`: on the whole trace, step
by step; through the engines' agreement on whole bounded spaces; and with `verify` on, where
every step a rule decided is judged by the checker too.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from vpmu import msrs as M
from vpmu.actions import Action, Batch, Cpuid, Emulate, Native, Rdmsr, Rdpmc, SetFilter, Wrmsr
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
    still due: no R1/R3/skid deadline can pass), and the window's interned shape (rule 1 of
    the module docstring)."""

    ref: tuple[Observation, ...]
    kvm: tuple[Observation, ...]
    insn: int
    wraps: tuple[int, ...]
    pmis: int
    quiet_steps: int
    shape: int

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
    #: steps a rule decided without the checker (rule 1 or 2 of the module docstring)
    decided: int = 0
    #: tests: also ask the checker where a rule decided, and fail if they differ
    verify: bool = False

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
        #: the verdict of a step by (window shape, step shape), and the interned window shapes
        self._verdicts: dict[tuple[int, Hashable], Verdict] = {}
        self._shapes: dict[Hashable, int] = {}
        #: per letter, whether it is a native run (its counted events are read exactly)
        self._native = [isinstance(a, Native) for a in self.letters]
        self.mask = max(self.cfg.mask_of(self.cfg.pmc_indices[pos]) for pos in self.layout)

    def start(self, shown: Shown) -> Window:
        """A settled window showing `shown` (one per distinct `shown`, shared)."""
        window = self._starts.get(shown)
        if window is None:
            ref = Observation(0, Cpuid(), 0, (), self.counters(shown[0]), shown[2], shown[4])
            kvm = Observation(0, Cpuid(), 0, (), self.counters(shown[1]), shown[3], shown[5])
            # a settled window shows equal values; only a search's root might not (a fast form
            # that disagrees with its hooks), and the checker reads that at the window's start
            shape = self._intern(("start", shown[2], shown[3], shown[4], shown[5], shown[0] == shown[1]))
            window = self._starts[shown] = Window((ref,), (kvm,), 0, (0,) * len(self.layout), 0, 2, shape)
        return window

    def advance(self, window: Window, letter: int, obs: StepObs, shown: Shown,
                replay: bool = False) -> tuple[Verdict, Window]:
        """The verdict of one more step, and the window after it (`replay`: a step known not to
        diverge, whose window alone is wanted: not judged, its shape left unknown, -1).

        Judged by `compare(..., open_end=True)` on the window, except a quiet step from a
        settled window (the object engine's rule), an *inert* step — no signal, PMI or
        read difference (but GLOBAL_STATUS reads showing the status both machines showed
        before), the same status and LVTPC on both machines as before it, equal values — from a
        window where every wrap is met and nothing is still due, and the two rules of the
        module docstring: a step whose window and own shape were judged before, and a step
        inside a tolerated loss."""
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
        if replay:
            step_shape: Hashable = None
        else:
            step_shape = self._step_shape(window, letter, obs, shown)
        if not replay and not (inert and window.quiet_steps >= 2 and not any(window.wraps)):
            verdict = self._decided(window, step_shape, obs, shown, inert)
            if verdict is not None:
                self.decided += 1
            if verdict is None or self.verify:
                self.judged += 1
                divs = compare(self.cfg, ref, kvm, self.options, open_end=True)
                judged = tuple((d.kind, d.visibility, d.counter) for d in divs if not d.tolerated)
                if verdict is not None and verdict != judged:
                    raise AssertionError(f"monitor rule says {verdict}, the checker {judged}: {ref} / {kvm}")
                verdict = judged
                if window.shape >= 0:
                    self._verdicts[window.shape, step_shape] = verdict
            if verdict:
                return verdict, window
        if not pmis and not any(wraps) and shown[0] == shown[1] and shown[2] == shown[3] and shown[4] == shown[5]:
            return (), self.start(shown)
        shape = self._intern((window.shape, step_shape)) if window.shape >= 0 and not replay else -1
        return (), Window(ref, kvm, insn, tuple(wraps), pmis, 0 if eventful else min(window.quiet_steps + 1, 2), shape)

    # -- the two rules that spare the checker (each checked against it by tests/test_compact.py)

    def _decided(self, window: Window, step_shape: Hashable, obs: StepObs, shown: Shown,
                 inert: bool) -> Verdict | None:
        """The verdict of a step without the checker, where a rule gives it (else None)."""
        verdict = self._verdicts.get((window.shape, step_shape)) if window.shape >= 0 else None
        if verdict is None and self.options.r3_min_period and self._inside_loss(window, obs, shown, inert):
            verdict = ()
        return verdict

    def _intern(self, shape: Hashable) -> int:
        return self._shapes.setdefault(shape, len(self._shapes))

    def _step_shape(self, window: Window, letter: int, obs: StepObs, shown: Shown) -> Hashable:
        """What the checker reads of a step (rule 1): the letter, per read result its equality
        (a GLOBAL_STATUS read: both values), per counter in use the equality of both machines'
        values and what the reference counted since the step before (a native run: how many
        events, else whether any), the status and LVTPC both machines show, the instructions
        retired, and the PMIs and signals at their offsets. The values themselves only ever
        meet in `==` (`compare`'s value checks), and the counted events of a step in
        `next_event` and `Timeline.counting_from`."""
        before = self._values(window.ref[-1].counters)
        native = self._native[letter]
        mask = self.mask
        results = tuple((rr, kr) if read else rr == kr
                        for rr, kr, read in zip(obs[1], obs[2], self._status_reads[letter], strict=True))
        counted = tuple((rv == kv, (rv - bv) & mask if native else rv != bv)
                        for rv, kv, bv in zip(shown[0], shown[1], before, strict=True))
        return (letter, results, counted, shown[2:], obs[0]) + obs[3:]

    def _inside_loss(self, window: Window, obs: StepObs, shown: Shown, inert: bool) -> bool:
        """Rule 2: the window holds one tolerated loss and nothing else — since a settled
        start showing the counter's status bit clear and LVTPC unmasked on both machines, one
        reference wrap of it, one reference PMI (the reference's LVTPC is masked since), a
        perf `min-period` signal for it under KVM and no other signal or PMI — and the step is
        inert, or is KVM's next wrap of that counter: one reference wrap (no PMI), one KVM
        overflow signal and one KVM PMI, at or after the wrap. The checker then finds the loss
        tolerated (R3, `loss_relaxation`) however late, and KVM's next overflow either late
        or superseding it, tolerated the same way; the values stay equal."""
        ref, kvm = window.ref, window.kvm
        start_r, start_k = ref[0], kvm[0]
        sigs_r = [s for o in ref for s in o.signals]
        sigs_k = [s for o in kvm for s in o.signals]
        if (len(sigs_r) != 1 or len(sigs_k) != 1 or sigs_r[0].source != "wrap" or sigs_k[0].source != "min-period"
                or sigs_r[0].pmc != sigs_k[0].pmc or sum(len(o.pmis) for o in ref) != 1
                or any(o.pmis for o in kvm) or window.pmis != 1 or any(window.wraps)):
            return False
        pmc = sigs_r[0].pmc
        bit = 1 << pmc
        if (start_r.global_status != start_k.global_status or start_r.global_status & bit
                or start_r.lvtpc != start_k.lvtpc or start_r.lvtpc & M.LVTPC_MASKED):
            return False
        last_r, last_k = ref[-1], kvm[-1]
        if (last_r.global_status != last_k.global_status | bit or last_k.global_status & bit
                or not last_r.lvtpc & M.LVTPC_MASKED or last_k.lvtpc & M.LVTPC_MASKED):
            return False
        reads_ok = all(rr == kr or (isinstance(rr[0], int) and isinstance(kr[0], int) and rr[0] == kr[0] | bit
                                    and not kr[0] & bit) for rr, kr in zip(obs[1], obs[2], strict=True))
        if not reads_ok or shown[0] != shown[1]:
            return False
        if inert:
            return True
        return (len(obs[5]) == 1 and len(obs[6]) == 1 and not obs[3] and len(obs[4]) == 1
                and obs[5][0][0] == pmc == obs[6][0][0] and obs[5][0][2] == "wrap"
                and obs[6][0][2] in ("hw", "emulated") and obs[6][0][1] >= obs[5][0][1]
                and obs[4][0] >= obs[5][0][1]
                and shown[2] == shown[3] and shown[4] == shown[5])

    def _values(self, counters: Sequence[int]) -> tuple[int, ...]:
        """The counters in use of an observation's counter list (`counters`' inverse)."""
        return tuple(counters[pos] for pos in self.layout)

    def counters(self, values: Sequence[int]) -> tuple[int, ...]:
        out = [0] * len(self.cfg.pmc_indices)
        for pos, v in zip(self.layout, values, strict=True):
            out[pos] = v
        return tuple(out)
