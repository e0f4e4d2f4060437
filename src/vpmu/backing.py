"""The backing seam: what counts the guest's native execution for a PMC.

A counter-tracking design (vpmu.designs) says how KVM keeps a PMC's value. Its backing says
what counts the instructions the guest runs natively, and how an overflow of such a counter is
raised. Two backings exist:

* `CounterBacking`, the base class and the default (every KVM before the mediated vPMU): a
  host perf event per PMC (vpmu.host) counts; its overflow is a host PMI whose landing the
  world schedules, and KVM's overflow is `__kvm_perf_overflow()`.
* `GuestCounters` (the mediated vPMU, spec kvm-vpmu.md §2.12, §5): the guest owns the hardware
  counters; native counts go straight into `pmc.counter`, a wrap sets GLOBAL_STATUS and, if the
  PMC's PMI bit is set, is a real PMI routed to KVM_REQ_PMI and handled at once (no skid).

The KVM model calls exactly these hooks; a backing is part of the model rather than the patch
seam, so it gets the whole `KvmVcpu`:

* `native_sources(kvm)` — the PMCs that count a native run at the guest's CPL (`kvm.cpl`),
  each with its event kind, the events left until it interrupts, and the eventsel bits that
  decide how it counts (CMASK/INV/EDGE, vpmu.events.step_count);
* `count_native(kvm, pmc, n)` — count n > 0 events; True on an interrupting overflow;
* `native_pmi_exits(kvm, hold_pmi)` — after an interrupting overflow, whether the vCPU exits
  at once (a host PMI held by the scenario's `hold_pmi` stays in flight);
* `program(kvm, pmc)` — reprogram_counter() for an allowed PMC: True if the backing programmed
  the hardware itself, so no perf event is needed;
* `overflow(kvm, pmc, in_pmi)` — raise an overflow of `pmc` (the design helper
  `kvm.signal_overflow`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vpmu.config import FIXED_BASE
from vpmu.events import EVENTSEL_INT, FIXED_PMI, EventKind, event_kind, event_mask, fixed_field
from vpmu.trace import SignalSource

if TYPE_CHECKING:
    from vpmu.kvm import KvmPmc, KvmVcpu

#: One counting PMC of a native run: (event kind, events left until it interrupts (0: it
#: cannot interrupt), PMC, the eventsel or perf config it counts with).
NativeSource = tuple[EventKind, int, "KvmPmc", int]


class CounterBacking:
    """The backing hooks, with host perf events counting the guest (spec §2.9): the default."""

    def native_sources(self, kvm: KvmVcpu) -> list[NativeSource]:
        """Running perf events that count at the guest's CPL; a pending overflow cannot
        interrupt again (0 left)."""
        out: list[NativeSource] = []
        for pmc in kvm.valid_pmcs():
            ev = pmc.perf_event
            if ev is None or not ev.enabled or not ev.counts_at(kvm.cpl):
                continue
            kind = event_kind(kvm.cfg.vendor, ev.event, fixed=pmc.idx >= FIXED_BASE)
            if kind is not None:
                out.append((kind, ev.events_to_interrupt(), pmc, ev.config))
        return out

    def count_native(self, kvm: KvmVcpu, pmc: KvmPmc, n: int) -> bool:
        """The perf event counts; an overflow raises a pending host PMI."""
        ev = pmc.perf_event
        if ev is not None and ev.advance(n):
            kvm.note("pmi", f"perf overflow pmc{pmc.idx}: host PMI pending")
            return True
        return False

    def native_pmi_exits(self, kvm: KvmVcpu, hold_pmi: bool) -> bool:
        """The host PMI lands right away unless the scenario holds it in flight."""
        return not hold_pmi

    def program(self, kvm: KvmVcpu, pmc: KvmPmc) -> bool:
        """Perf-backed PMCs need a perf event: reprogram_counter() goes on."""
        return False

    def overflow(self, kvm: KvmVcpu, pmc: KvmPmc, in_pmi: bool) -> None:
        """Mirrors __kvm_perf_overflow() (pmu.c), spec §2.10."""
        kvm.kvm_perf_overflow_inner(pmc, in_pmi)


class GuestCounters(CounterBacking):
    """The guest owns the hardware counters (2026 mediated vPMU, spec §2.12, §5)."""

    def counts(self, kvm: KvmVcpu, pmc: KvmPmc) -> EventKind | None:
        """What `pmc` counts on hardware at the guest's CPL (eventsel_hw semantics: locally and
        globally enabled, allowed by the filter, CPL matches), or None."""
        if not (kvm.pmc_is_globally_enabled(pmc) and kvm.pmc_speculative_in_use(pmc)
                and kvm.check_pmu_event_filter(pmc) and kvm.cpl_is_matched(pmc)):
            return None
        vendor = kvm.cfg.vendor
        return event_kind(vendor, pmc.eventsel & event_mask(vendor), fixed=pmc.idx >= FIXED_BASE)

    def native_sources(self, kvm: KvmVcpu) -> list[NativeSource]:
        """PMCs the guest's hardware counts, with events left until they wrap."""
        out: list[NativeSource] = []
        for pmc in kvm.valid_pmcs():
            kind = self.counts(kvm, pmc)
            if kind is not None:
                mask = kvm.pmc_bitmask(pmc)
                config = pmc.eventsel if pmc.idx < FIXED_BASE else 0
                out.append((kind, mask + 1 - (pmc.counter & mask), pmc, config))
        return out

    def count_native(self, kvm: KvmVcpu, pmc: KvmPmc, n: int) -> bool:
        """The counter itself counts; a wrap is an overflow at once."""
        mask = kvm.pmc_bitmask(pmc)
        new = (pmc.counter & mask) + n
        pmc.counter = new & mask
        if new > mask:
            self.overflow(kvm, pmc, in_pmi=True)
            return True
        return False

    def native_pmi_exits(self, kvm: KvmVcpu, hold_pmi: bool) -> bool:
        """A real PMI exits at once (kvm_handle_guest_mediated_pmi); `hold_pmi` is ignored."""
        kvm.note("pmi", "hardware PMI (mediated): VM-exit")
        return True

    def program(self, kvm: KvmVcpu, pmc: KvmPmc) -> bool:
        """kvm_mediated_pmu_refresh_event_filter() (pmu.c) for an allowed PMC: the hardware
        runs the guest's eventsel."""
        pmc.eventsel_hw = pmc.eventsel
        return True

    def overflow(self, kvm: KvmVcpu, pmc: KvmPmc, in_pmi: bool) -> None:
        """A wrap of a guest-owned counter (emulated increment or real hardware), spec §2.12:
        STATUS bit, then KVM_REQ_PMI if pmc_pmi_enabled() (pmu.c, mediated series)."""
        source: SignalSource = "hw" if in_pmi else "emulated"
        kvm.pmu.global_status |= 1 << pmc.idx
        kvm.record_signal(pmc, source)
        kvm.note("overflow", f"overflow pmc{pmc.idx} ({source}, mediated): STATUS bit set")
        if pmc_pmi_enabled(kvm, pmc):
            kvm.request_pmi()


def pmc_pmi_enabled(kvm: KvmVcpu, pmc: KvmPmc) -> bool:
    """Mirrors pmc_pmi_enabled() (pmu.c, mediated series): the eventsel INT bit, or the fixed
    counter's PMI field bit."""
    if pmc.idx >= FIXED_BASE:
        return bool(fixed_field(kvm.pmu.fixed_ctr_ctrl, pmc.idx - FIXED_BASE) & FIXED_PMI)
    return bool(pmc.eventsel & EVENTSEL_INT)
