"""The checker's indexes over one run's observations, so that a check costs O(log n) per
question instead of a rescan: the reference's wraps and KVM's overflow signals per PMC, sorted
by step (and instruction), answered by binary search (`bisect`).

`vpmu.checker` asks: the latest wrap of a PMC at or before a point (`wrap_before`), KVM's
first reporting signal of a PMC in a step range (`signal_in`), the first signal at or after a
step that explains a loss (`loss_signal`), the first step at or after a step where the
reference's counter counts (`counting_from`), the step in which an instruction retires
(`step_of_insn`) and the first step that lands a held host PMI (`landing_after`).

`work` counts the entries the indexes examined (one per binary search, one per entry walked):
the linearity test and benchmark read it (docs/reliability.md).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from vpmu.actions import keeps_host_pmi_in_flight
from vpmu.config import PmuConfig
from vpmu.trace import Observation, Signal

REPORTING = ("hw", "emulated")


class Timeline:
    """Sorted per-PMC views of the reference's wraps and KVM's signals of one run."""

    def __init__(self, cfg: PmuConfig, ref: Sequence[Observation], kvm: Sequence[Observation]) -> None:
        self.work = 0
        self.wraps: dict[int, list[tuple[int, int]]] = {}  # pmc -> [(insn, step)], in order
        self.kvm_sigs: dict[int, list[tuple[Signal, int]]] = {}  # pmc -> [(signal, step)], in order
        for o in ref:
            for s in o.signals:
                if s.source == "wrap":
                    self.wraps.setdefault(s.pmc, []).append((s.insn, o.step))
        for o in kvm:
            for s in o.signals:
                self.kvm_sigs.setdefault(s.pmc, []).append((s, o.step))
        self._wrap_insn = {p: [w[0] for w in ws] for p, ws in self.wraps.items()}
        self._wrap_step = {p: [w[1] for w in ws] for p, ws in self.wraps.items()}
        # a wrap list is sorted by step and by instruction (instructions only ever retire);
        # should it not be (an observation list built by hand), fall back to scanning
        self._sorted = all(a <= b for ws in self._wrap_insn.values() for a, b in zip(ws, ws[1:], strict=False))
        self._reporting = {p: [(s, st) for s, st in sigs if s.source in REPORTING] for p, sigs in self.kvm_sigs.items()}
        self._reporting_step = {p: [st for _, st in sigs] for p, sigs in self._reporting.items()}
        self._insns = [o.insn for o in ref]
        self._sources: dict[tuple[int, tuple[str, ...]], tuple[list[Signal], list[int]]] = {}
        self._counting: dict[int, list[int]] = {}
        self._landing: list[int] | None = None
        self._cfg, self._ref = cfg, ref

    def wrap_before(self, pmc: int, step: int, insn: int | None = None) -> tuple[int, int] | None:
        """The latest reference wrap of `pmc` at or before `step` (and `insn`)."""
        wraps = self.wraps.get(pmc)
        if not wraps:
            return None
        self.work += 1
        if not self._sorted:
            self.work += len(wraps)
            best = None
            for w_insn, w_step in wraps:
                if w_step <= step and (insn is None or w_insn <= insn):
                    best = (w_insn, w_step)
            return best
        n = bisect_right(self._wrap_step[pmc], step)
        if insn is not None:
            n = min(n, bisect_right(self._wrap_insn[pmc], insn))
        return wraps[n - 1] if n else None

    def signal_in(self, pmc: int, lo: int, hi: int) -> tuple[Signal, int] | None:
        """KVM's first reporting overflow signal (hw/emulated) of `pmc` in steps lo..hi."""
        sigs = self._reporting.get(pmc)
        if not sigs:
            return None
        self.work += 1
        i = bisect_left(self._reporting_step[pmc], lo)
        return sigs[i] if i < len(sigs) and sigs[i][1] <= hi else None

    def first_signal(self, pmc: int, from_step: int, sources: tuple[str, ...]) -> Signal | None:
        """KVM's first signal of `pmc` with one of `sources` in a step >= `from_step`."""
        key = (pmc, sources)
        if key not in self._sources:
            picked = [(s, st) for s, st in self.kvm_sigs.get(pmc, []) if s.source in sources]
            self._sources[key] = ([s for s, _ in picked], [st for _, st in picked])
            self.work += len(picked)
        sigs, steps = self._sources[key]
        self.work += 1
        i = bisect_left(steps, from_step)
        return sigs[i] if i < len(sigs) else None

    def counting_from(self, pos: int, step: int) -> int | None:
        """The first step >= `step` in which the reference's counter at position `pos` of the
        configuration changes (counts events), or None."""
        if pos not in self._counting:
            mask = self._cfg.mask_of(self._cfg.pmc_indices[pos])
            steps, before = [], 0
            for o in self._ref:
                if (o.counters[pos] - before) & mask:
                    steps.append(o.step)
                before = o.counters[pos]
            self._counting[pos] = steps
            self.work += len(self._ref)
        steps = self._counting[pos]
        self.work += 1
        i = bisect_left(steps, step)
        return steps[i] if i < len(steps) else None

    def step_of_insn(self, insn: int, from_step: int) -> int | None:
        """The step (from `from_step` on) in which instruction `insn` retires."""
        self.work += 1
        s = bisect_left(self._insns, insn, lo=from_step)
        return s if s < len(self._insns) else None

    def landing_after(self, step: int) -> int:
        """The first step after `step` that lands a held host PMI (`keeps_host_pmi_in_flight`
        is false), or the number of steps."""
        if self._landing is None:
            n = len(self._ref)
            landing = [n] * (n + 1)
            for s in range(n - 1, -1, -1):
                landing[s] = landing[s + 1] if keeps_host_pmi_in_flight(self._ref[s].action) else s
            self._landing = landing
            self.work += n
        self.work += 1
        return self._landing[min(step + 1, len(self._ref))]
