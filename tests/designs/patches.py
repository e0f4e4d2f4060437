"""Counter-tracking designs a patch author might write, for the `vpmu check` tests: a pure
refactor of the 6.8 design and three buggy variants (our own code, shaped like pmu.c), and
one whose fast form does not say what its hooks do."""

from __future__ import annotations

from typing import ClassVar

from vpmu.designs import CounterDesign, DesignHost, EmulatedCounterDesign, EmulatedCounterFast, FastForm
from vpmu.kvm import KvmPmc

MASK48 = (1 << 48) - 1


class RefactoredEmulated(CounterDesign):
    """6.8's emulated_counter design rewritten: the perf fold in a helper, the wrap test as a
    carry check. Behaviourally the same as `emulated-counter`."""

    name = "refactored-emulated"

    def _fold_perf(self, kvm: DesignHost, pmc: KvmPmc) -> int:
        return pmc.counter + (kvm.perf_pause(pmc) if kvm.perf_running(pmc) else 0)

    def incr_counter(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        pmc.emulated_counter += 1
        kvm.kvm_pmu_request_counter_reprogram(pmc)

    def pause_counter(self, kvm: DesignHost, pmc: KvmPmc) -> bool:
        mask = kvm.pmc_bitmask(pmc)
        before = self._fold_perf(kvm, pmc) & mask
        pending, pmc.emulated_counter = pmc.emulated_counter, 0
        pmc.counter = (before + pending) & mask
        return before + pending > mask

    def read_counter(self, kvm: DesignHost, pmc: KvmPmc) -> int:
        live = kvm.perf_read(pmc) if kvm.perf_running(pmc) else 0
        return (live + pmc.emulated_counter + pmc.counter) & kvm.pmc_bitmask(pmc)

    def write_counter(self, kvm: DesignHost, pmc: KvmPmc, value: int) -> None:
        pmc.emulated_counter = 0
        pmc.counter = (pmc.counter - self.read_counter(kvm, pmc) + value) & kvm.pmc_bitmask(pmc)


class ForgetClearEmulated(EmulatedCounterDesign):
    """Bug: pmc_pause_counter folds emulated_counter into the counter but never clears it."""

    name = "forget-clear"

    def pause_counter(self, kvm: DesignHost, pmc: KvmPmc) -> bool:
        counter = pmc.counter + (kvm.perf_pause(pmc) if kvm.perf_running(pmc) else 0)
        prev = counter & kvm.pmc_bitmask(pmc)
        pmc.counter = (counter + pmc.emulated_counter) & kvm.pmc_bitmask(pmc)
        return pmc.counter < prev


class HardcodedWidth(EmulatedCounterDesign):
    """Bug: the emulated-overflow test and the fold use a hard-coded 48-bit mask instead of the
    PMC's width (invisible on 48-bit counters)."""

    name = "hardcoded-width"

    def pause_counter(self, kvm: DesignHost, pmc: KvmPmc) -> bool:
        counter = pmc.counter + (kvm.perf_pause(pmc) if kvm.perf_running(pmc) else 0)
        prev = counter & MASK48
        counter = (counter + pmc.emulated_counter) & MASK48
        pmc.emulated_counter = 0
        pmc.counter = counter & kvm.pmc_bitmask(pmc)
        return counter < prev


class NoReprogramRequest(EmulatedCounterDesign):
    """Bug: an emulated event is accounted but never requests the reprogram, so it is folded
    (and its overflow detected) only when something else reprograms the PMC."""

    name = "no-reprogram-request"

    def incr_counter(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        pmc.emulated_counter += 1


class ForgetClearUpstreamFast(ForgetClearEmulated):
    """`ForgetClearEmulated`'s buggy hooks with upstream's fast form: a wrong fast form, which
    would make the compact kernel search upstream instead and miss every regression of the
    hooks (the run-time guard, vpmu.explore.fastguard, refuses it)."""

    name = "forget-clear-upstream-fast"
    fast: ClassVar[FastForm | None] = EmulatedCounterFast()


class _RaisingFast(EmulatedCounterFast):
    def read(self, f: tuple[int, int, int], live: int, mask: int) -> int:
        raise ValueError("no\nread")


class FastFormRaises(EmulatedCounterDesign):
    """Upstream's hooks with a fast form whose `read` raises: also refused by the guard."""

    name = "fast-form-raises"
    fast: ClassVar[FastForm | None] = _RaisingFast()
