"""A user-written counter design: v1 of the emulated_counter patch (2023-10-23), which Sean
retracted because it snapshots the counter *before* folding in perf's count (spec §4.2).

Load it with `--design examples/my_design.py:SnapshotBeforePerf` (or
`World(cfg, "6.8", "examples/my_design.py:SnapshotBeforePerf")`). On the §3.3 sequence it
signals the hardware wrap twice, like the pre-patch design.
"""

from __future__ import annotations

from vpmu.designs import CounterDesign
from vpmu.kvm import KvmPmc, KvmVcpu


class SnapshotBeforePerf(CounterDesign):
    name = "v1-snapshot-before-perf"

    def incr_counter(self, kvm: KvmVcpu, pmc: KvmPmc) -> None:
        pmc.emulated_counter += 1                      # defer, like the final patch
        kvm.request_counter_reprogram(pmc)

    def pause_counter(self, kvm: KvmVcpu, pmc: KvmPmc) -> bool:
        mask = kvm.mask(pmc)
        prev = pmc.counter & mask                      # BUG: snapshot before the perf count
        counter = pmc.counter + pmc.emulated_counter
        if kvm.perf_running(pmc):
            counter += kvm.perf_pause(pmc)
        pmc.counter = counter & mask
        pmc.emulated_counter = 0
        return pmc.counter < prev

    def read_counter(self, kvm: KvmVcpu, pmc: KvmPmc) -> int:
        live = kvm.perf_read(pmc) if kvm.perf_running(pmc) else 0
        return (pmc.counter + pmc.emulated_counter + live) & kvm.mask(pmc)

    def write_counter(self, kvm: KvmVcpu, pmc: KvmPmc, value: int) -> None:
        pmc.emulated_counter = 0
        pmc.counter = (pmc.counter + value - self.read_counter(kvm, pmc)) & kvm.mask(pmc)
