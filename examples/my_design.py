"""A user-written counter design: v1 of the emulated_counter patch (2023-10-23), which Sean
retracted because it snapshots the counter *before* folding in perf's count (spec §4.2).

Load it with `--design examples/my_design.py:SnapshotBeforePerf` (or
`World(cfg, "6.8", "examples/my_design.py:SnapshotBeforePerf")`). On the §3.3 sequence it
signals the hardware wrap twice, like the pre-patch design.

It comes in both forms (docs/designs.md): the object hook `pause_counter`, which the KVM model
calls, and the same hook as a pure function over the PMC's integer fields, `fast`, which
`vpmu explore` runs on its compact kernel. Without `fast` the explorer says so in one line and
runs the object models instead: the same results, about ten times slower.
"""

from __future__ import annotations

from typing import ClassVar

from vpmu.designs import EmulatedCounterDesign, EmulatedCounterFast, FastForm
from vpmu.kvm import KvmPmc, KvmVcpu


class SnapshotBeforePerfFast(EmulatedCounterFast):
    """v1's pause_counter() over (counter, prev_counter, emulated_counter); `live` is perf's
    count (0 when the event is paused). Everything else is the final design's fast form."""

    def pause(self, f: tuple[int, int, int], live: int, mask: int) -> tuple[tuple[int, int, int], bool]:
        counter, prev_counter, emulated = f
        prev = counter & mask                          # BUG: snapshot before the perf count
        new = (counter + emulated + live) & mask
        return (new, prev_counter, 0), new < prev


class SnapshotBeforePerf(EmulatedCounterDesign):
    """The final design with v1's pause_counter(): everything else is inherited."""

    name = "v1-snapshot-before-perf"
    fast: ClassVar[FastForm | None] = SnapshotBeforePerfFast()

    def pause_counter(self, kvm: KvmVcpu, pmc: KvmPmc) -> bool:
        mask = kvm.mask(pmc)
        prev = pmc.counter & mask                      # BUG: snapshot before the perf count
        counter = pmc.counter + pmc.emulated_counter
        if kvm.perf_running(pmc):
            counter += kvm.perf_pause(pmc)
        pmc.counter = counter & mask
        pmc.emulated_counter = 0
        return pmc.counter < prev
