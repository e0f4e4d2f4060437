"""A user-written counter design: v1 of the emulated_counter patch (2023-10-23), which Sean
retracted because it snapshots the counter *before* folding in perf's count (spec §4.2).

Load it with `--design examples/my_design.py:SnapshotBeforePerf` (or
`World(cfg, "6.8", "examples/my_design.py:SnapshotBeforePerf")`). On the §3.3 sequence it
signals the hardware wrap twice, like the pre-patch design.
"""

from __future__ import annotations

from vpmu.designs import EmulatedCounterDesign
from vpmu.kvm import KvmPmc, KvmVcpu


class SnapshotBeforePerf(EmulatedCounterDesign):
    """The final design with v1's pause_counter(): everything else is inherited."""

    name = "v1-snapshot-before-perf"

    def pause_counter(self, kvm: KvmVcpu, pmc: KvmPmc) -> bool:
        mask = kvm.mask(pmc)
        prev = pmc.counter & mask                      # BUG: snapshot before the perf count
        counter = pmc.counter + pmc.emulated_counter
        if kvm.perf_running(pmc):
            counter += kvm.perf_pause(pmc)
        pmc.counter = counter & mask
        pmc.emulated_counter = 0
        return pmc.counter < prev
