"""KVM's x86 vPMU core: `struct kvm_pmc`, `struct kvm_pmu` and pmu.c (spec kvm-vpmu.md §1, §2, §4).

One method per kernel function, named after it; the docstring names the kernel function, its
file and the spec section. The counter-tracking parts (increment, pause, read, write, reset)
go through the era's or the user's `CounterDesign` (vpmu.designs), which sees this vCPU only
as a `DesignHost`; how native execution is counted goes through the design's backing
(vpmu.backing). MSR handlers live in `vpmu.kvm_msr`; the vCPU loop (x86.c request processing)
lives in `vpmu.world`.

Everything here is synchronous and deterministic. Model-internal events go to `self.log` as
typed `Note`s, overflow signals to `self.signals` (both drained by the world after each step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vpmu.config import AMD_COUNTER_WIDTH, ARCH_EVENT_BITS, FIXED_BASE, PmuConfig
from vpmu.eras import Era
from vpmu.events import (
    AMD_EVENT_MASK,
    ENCODINGS,
    EVENTSEL_ENABLE,
    EVENTSEL_EVENT,
    EVENTSEL_INT,
    EVENTSEL_OS,
    EVENTSEL_PIN_CONTROL,
    EVENTSEL_UMASK,
    EVENTSEL_USR,
    FIXED_EVENTS,
    FIXED_OS,
    FIXED_PMI,
    FIXED_USR,
    EventKind,
    fixed_field,
)
from vpmu.filter import EventFilter, pmc_allowed
from vpmu.host import PerfEvent, PerfHost
from vpmu.lapic import Lapic, Route
from vpmu.msrs import GLOBAL_STATUS_COND_CHGD, GLOBAL_STATUS_OVF_BUF, PERF_CAP_FW_WRITES
from vpmu.pmc_map import U64
from vpmu.trace import Note, NoteKind, Signal, SignalSource

if TYPE_CHECKING:
    from vpmu.designs import CounterDesign

KVM_PMC_GP = 0
KVM_PMC_FIXED = 1

REQ_PMU = 1
REQ_PMI = 2
REQ_NMI = 4
REQ_EVENT = 8
REQ_NAMES = {REQ_PMU: "KVM_REQ_PMU", REQ_PMI: "KVM_REQ_PMI", REQ_NMI: "KVM_REQ_NMI", REQ_EVENT: "KVM_REQ_EVENT"}

#: AMD64_RAW_EVENT_MASK_NB: event select (incl. 35:32) + umask; the emulated-event match.
EVENT_MATCH_MASK = AMD_EVENT_MASK
X86_RAW_EVENT_MASK = 0xFF | 0xFF00 | (1 << 18) | (1 << 23) | (0xFF << 24)
AMD64_RAW_EVENT_MASK = X86_RAW_EVENT_MASK | (0xF << 32)
INTEL_RESERVED_BITS = 0xFFFF_FFFF_0020_0000
AMD_RESERVED_BITS = 0xFFFF_FFF0_0028_0000
KVM_MAX_FIXED = 3
#: GP counters of an AMD vPMU without PerfMonV2: the K7 MSRs only, or the core extension.
AMD64_NUM_COUNTERS = 4
AMD64_NUM_COUNTERS_CORE = 6
#: The architectural events `intel_hw_event_available` (v6.6) knows, by CPUID.0AH.EBX bit:
#: NR_REAL_INTEL_ARCH_EVENTS = 7 (topdown slots is not among them).
NR_REAL_INTEL_ARCH_EVENTS = 7


@dataclass(slots=True)
class KvmPmc:
    """`struct kvm_pmc` (kvm_host.h), spec §1.1. `extra` holds user-design state."""

    type: int
    idx: int
    counter: int = 0
    prev_counter: int = 0
    emulated_counter: int = 0
    eventsel: int = 0
    eventsel_hw: int = 0
    perf_event: PerfEvent | None = None
    is_paused: bool = False
    intr: bool = False
    current_config: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def clone(self) -> KvmPmc:
        return KvmPmc(self.type, self.idx, self.counter, self.prev_counter, self.emulated_counter,
                      self.eventsel, self.eventsel_hw,
                      self.perf_event.clone() if self.perf_event is not None else None,
                      self.is_paused, self.intr, self.current_config, dict(self.extra))

    def key(self) -> tuple[object, ...]:
        perf = self.perf_event.key() if self.perf_event is not None else ()
        return (self.counter, self.prev_counter, self.emulated_counter, self.eventsel, self.eventsel_hw,
                perf, self.is_paused, self.intr, self.current_config, tuple(sorted(self.extra.items())))


@dataclass(slots=True)
class KvmPmu:
    """`struct kvm_pmu` (kvm_host.h), spec §1.2 (PEBS/LBR fields not modelled)."""

    version: int = 0
    nr_arch_gp_counters: int = 0
    nr_arch_fixed_counters: int = 0
    counter_bitmask: tuple[int, int] = (0, 0)
    fixed_ctr_ctrl: int = 0
    fixed_ctr_ctrl_rsvd: int = U64
    global_ctrl: int = 0
    global_status: int = 0
    global_ctrl_rsvd: int = U64
    global_status_rsvd: int = U64
    reserved_bits: int = INTEL_RESERVED_BITS
    raw_event_mask: int = X86_RAW_EVENT_MASK
    available_event_types: int = 0
    gp_counters: list[KvmPmc] = field(default_factory=list)
    fixed_counters: list[KvmPmc] = field(default_factory=list)
    reprogram_pmi: int = 0
    all_valid_pmc_idx: int = 0
    pmc_in_use: int = 0
    need_cleanup: bool = False
    event_count: int = 0

    def clone(self) -> KvmPmu:
        return KvmPmu(self.version, self.nr_arch_gp_counters, self.nr_arch_fixed_counters,
                      self.counter_bitmask, self.fixed_ctr_ctrl, self.fixed_ctr_ctrl_rsvd,
                      self.global_ctrl, self.global_status, self.global_ctrl_rsvd,
                      self.global_status_rsvd, self.reserved_bits, self.raw_event_mask,
                      self.available_event_types, [p.clone() for p in self.gp_counters],
                      [p.clone() for p in self.fixed_counters],
                      self.reprogram_pmi, self.all_valid_pmc_idx, self.pmc_in_use, self.need_cleanup,
                      self.event_count)

    def key(self) -> tuple[object, ...]:
        return (self.fixed_ctr_ctrl, self.global_ctrl, self.global_status, self.reprogram_pmi,
                self.pmc_in_use, self.need_cleanup, self.event_count,
                tuple(p.key() for p in self.gp_counters), tuple(p.key() for p in self.fixed_counters))


class KvmVcpu:
    """One vCPU's vPMU plus the request bits and LAPIC it drives (single-vCPU VM)."""

    def __init__(self, cfg: PmuConfig, era: Era, design: CounterDesign, lapic: Lapic, host: PerfHost,
                 enable_pmu: bool = True) -> None:
        self.cfg = cfg
        self.era = era
        self.design = design
        self.lapic = lapic
        self.host = host
        # kvm->arch.enable_pmu: off with KVM_PMU_CAP_DISABLE; an AMD guest "without a PMU" is
        # one too, since AMD CPUID cannot say so (amd_pmu_refresh has no version 0).
        self.enable_pmu = enable_pmu and (cfg.is_intel or cfg.version > 0)
        # vcpu->arch.perf_capabilities as the VMM set it (the configuration's).
        self.perf_capabilities = PERF_CAP_FW_WRITES if cfg.full_width_writes else 0
        self.has_run = False                # kvm_vcpu_has_run(): set by the world at KVM_RUN
        self.pmu = KvmPmu()
        self.filter: EventFilter | None = None
        self.requests = 0
        self.cpl = 0
        self.insn = 0                       # guest instructions retired (set by the world)
        self.handling_nmi_from_guest = False  # inside an NMI VM-exit (v6.1 irq_work choice)
        self.log: list[Note] = []
        self.signals: list[Signal] = []

    # --- clone / key ----------------------------------------------------------------

    def clone(self, lapic: Lapic, host: PerfHost) -> KvmVcpu:
        c = KvmVcpu.__new__(KvmVcpu)
        c.cfg, c.era, c.design, c.lapic, c.host = self.cfg, self.era, self.design, lapic, host
        c.enable_pmu, c.perf_capabilities, c.has_run = self.enable_pmu, self.perf_capabilities, self.has_run
        c.pmu = self.pmu.clone()
        c.filter = self.filter
        c.requests, c.cpl, c.insn = self.requests, self.cpl, self.insn
        c.handling_nmi_from_guest = self.handling_nmi_from_guest
        c.log, c.signals = [], []
        return c

    def key(self) -> tuple[object, ...]:
        return (self.pmu.key(), self.filter, self.requests, self.cfg, self.perf_capabilities, self.has_run)

    # --- small helpers (the DesignHost of vpmu.designs, and the record of a step) ----------

    def note(self, kind: NoteKind, text: str, subject: str = "") -> None:
        """Record a model-internal event (vpmu.trace.Note)."""
        self.log.append(Note(kind, text, subject))

    def record_signal(self, pmc: KvmPmc, source: SignalSource) -> None:
        """Record an overflow signal (vpmu.trace.Signal) for the checker."""
        self.signals.append(Signal(pmc.idx, self.insn, source))

    def make_request(self, req: int) -> None:
        """Mirrors kvm_make_request() (kvm_host.h): set a request bit for the next entry."""
        if not self.requests & req:
            self.note("request", f"request {REQ_NAMES[req]}", REQ_NAMES[req])
        self.requests |= req

    def request_pmi(self) -> None:
        """kvm_make_request(KVM_REQ_PMI, vcpu), as __kvm_perf_overflow() and a wrapping
        guest-owned counter make it."""
        self.make_request(REQ_PMI)

    def pmc_bitmask(self, pmc: KvmPmc) -> int:
        """Mirrors pmc_bitmask() (pmu.h): the PMC's width mask."""
        return self.pmu.counter_bitmask[pmc.type]

    def perf_running(self, pmc: KvmPmc) -> bool:
        """`pmc->perf_event && !pmc->is_paused`, the test pmc_pause_counter() makes (pmu.c)."""
        return pmc.perf_event is not None and not pmc.is_paused

    def perf_read(self, pmc: KvmPmc) -> int:
        """perf_event_read_value() (kernel/events/core.c), as pmc_read_counter() calls it."""
        return pmc.perf_event.read() if pmc.perf_event is not None else 0

    def perf_pause(self, pmc: KvmPmc) -> int:
        """Mirrors perf_event_pause(event, reset=true) (kernel/events/core.c) as
        pmc_pause_counter() calls it, for the design hooks; marks the PMC paused."""
        if pmc.perf_event is None:
            return 0
        self._note_silent_period(pmc)
        value, lost = pmc.perf_event.pause()
        if lost:
            self.note("overflow", f"host PMI for pmc{pmc.idx} lost: event stopped")
        pmc.is_paused = True
        self.note("perf", f"pause pmc{pmc.idx} (perf count {value})")
        return value

    def _note_silent_period(self, pmc: KvmPmc) -> None:
        """Record (model-internal) an overflow perf will never report: its period elapsed
        under the minimum-arming rule of x86_perf_event_set_period() (R3) and the event is now
        paused (perf_event_pause) or re-periodded (perf_event_period). No kernel counterpart:
        the kernel simply never calls the overflow handler."""
        if pmc.perf_event is not None and pmc.perf_event.period_elapsed_silently:
            self.note("overflow",
                      f"pmc{pmc.idx}: period elapsed before perf's minimum of 2 events: overflow never reported")
            self.record_signal(pmc, "min-period")

    def signal_overflow(self, pmc: KvmPmc, in_pmi: bool) -> None:
        """An overflow of `pmc`, raised the way the design's backing raises one: perf-backed,
        __kvm_perf_overflow() (pmu.c); guest-owned counters, STATUS bit + KVM_REQ_PMI."""
        self.design.backing.overflow(self, pmc, in_pmi)

    # Compatibility aliases for designs written before the DesignHost protocol (documented in
    # docs/designs.md; not part of DesignHost, so built-in designs use the kernel names).
    mask = pmc_bitmask

    def request_counter_reprogram(self, pmc: KvmPmc) -> None:
        """Alias of kvm_pmu_request_counter_reprogram() for designs written before DesignHost."""
        self.kvm_pmu_request_counter_reprogram(pmc)

    def pmc(self, idx: int) -> KvmPmc | None:
        """Mirrors kvm_pmc_idx_to_pmc() (pmu.h)."""
        if idx >= FIXED_BASE:
            i = idx - FIXED_BASE
            return self.pmu.fixed_counters[i] if i < self.pmu.nr_arch_fixed_counters else None
        return self.pmu.gp_counters[idx] if idx < self.pmu.nr_arch_gp_counters else None

    def valid_pmcs(self) -> list[KvmPmc]:
        """kvm_for_each_pmc order: GP 0..N-1, then fixed 32..."""
        return (self.pmu.gp_counters[: self.pmu.nr_arch_gp_counters]
                + self.pmu.fixed_counters[: self.pmu.nr_arch_fixed_counters])

    # --- init / refresh / reset ---------------------------------------------------------

    def kvm_pmu_init(self) -> None:
        """Mirrors kvm_pmu_init() (pmu.c) + vendor init, spec §2.1: zeroed PMU, then refresh."""
        self.pmu = KvmPmu()
        self.pmu.gp_counters = [KvmPmc(KVM_PMC_GP, i) for i in range(8)]
        self.pmu.fixed_counters = [KvmPmc(KVM_PMC_FIXED, FIXED_BASE + i, eventsel=FIXED_EVENTS[i])
                                   for i in range(KVM_MAX_FIXED)]
        self.kvm_pmu_refresh()

    def kvm_pmu_refresh(self) -> None:
        """Mirrors kvm_pmu_refresh() (pmu.c), spec §2.1; vendor refresh inlined per vendor."""
        if self.era.reset_before_refresh:
            self.kvm_pmu_reset()
        p = self.pmu
        p.version = p.nr_arch_gp_counters = p.nr_arch_fixed_counters = 0
        p.counter_bitmask = (0, 0)
        p.reserved_bits = INTEL_RESERVED_BITS
        p.raw_event_mask = X86_RAW_EVENT_MASK
        p.fixed_ctr_ctrl_rsvd = p.global_ctrl_rsvd = p.global_status_rsvd = U64
        p.all_valid_pmc_idx = 0
        p.available_event_types = 0
        if self.cfg.is_intel:
            if self.enable_pmu:
                self.intel_pmu_refresh()
        elif self.enable_pmu or self.era.amd_refresh_without_pmu:
            self.amd_pmu_refresh()
        if (self.era.global_ctrl_reset_enables_gp and self.enable_pmu and p.version > 1
                and p.nr_arch_gp_counters):
            p.global_ctrl = (1 << p.nr_arch_gp_counters) - 1

    def intel_pmu_refresh(self) -> None:
        """Mirrors intel_pmu_refresh() (vmx/pmu_intel.c), spec §1.2 (no PEBS, LBR or TSX).
        Reached only with enable_pmu (kvm_pmu_refresh; before 6.9 the vendor code checked)."""
        c, p = self.cfg, self.pmu
        p.version = c.version
        if c.version == 0:
            return
        p.available_event_types = ~c.unavailable_events & ((1 << c.event_vector_length) - 1)
        p.nr_arch_gp_counters = c.num_gp
        p.nr_arch_fixed_counters = min(c.num_fixed, KVM_MAX_FIXED) if c.version > 1 else 0
        p.counter_bitmask = (c.gp_mask, c.fixed_mask if p.nr_arch_fixed_counters else 0)
        p.fixed_ctr_ctrl_rsvd = U64
        for i in range(p.nr_arch_fixed_counters):
            p.fixed_ctr_ctrl_rsvd &= ~(0xB << (4 * i))
        valid = ((1 << p.nr_arch_gp_counters) - 1) | (((1 << p.nr_arch_fixed_counters) - 1) << FIXED_BASE)
        p.global_ctrl_rsvd = U64 & ~valid
        p.global_status_rsvd = p.global_ctrl_rsvd & ~(GLOBAL_STATUS_OVF_BUF | GLOBAL_STATUS_COND_CHGD)
        p.all_valid_pmc_idx = valid

    def amd_pmu_refresh(self) -> None:
        """Mirrors amd_pmu_refresh() (svm/pmu.c), spec §1.2: version 2 for a PerfMonV2 guest
        (once KVM supports it, era switch amd_perfmon_v2), else 1; 6 GP counters with the
        core extension, 4 without, NumCorePmc with PerfMonV2; always 48 bits wide."""
        c, p = self.cfg, self.pmu
        v2 = c.version == 2 and self.era.amd_perfmon_v2
        p.version = 2 if v2 else 1
        if v2:
            p.nr_arch_gp_counters = c.num_gp
        else:
            p.nr_arch_gp_counters = AMD64_NUM_COUNTERS_CORE if c.perfctr_core else AMD64_NUM_COUNTERS
        p.counter_bitmask = ((1 << AMD_COUNTER_WIDTH) - 1, 0)
        p.reserved_bits = AMD_RESERVED_BITS
        p.raw_event_mask = AMD64_RAW_EVENT_MASK
        valid = (1 << p.nr_arch_gp_counters) - 1
        if c.version > 1:
            p.global_ctrl_rsvd = U64 & ~valid
            p.global_status_rsvd = p.global_ctrl_rsvd
        p.all_valid_pmc_idx = valid

    def kvm_pmu_reset(self) -> None:
        """Mirrors kvm_pmu_reset() (pmu.c v6.8+; vendor *_pmu_reset before), spec §2.1."""
        p = self.pmu
        p.reprogram_pmi = 0
        p.need_cleanup = False
        for pmc in self.valid_pmcs():
            self.pmc_stop_counter(pmc)
            self.design.reset_counter(self, pmc)
            if pmc.type == KVM_PMC_GP:
                pmc.eventsel = pmc.eventsel_hw = 0
        p.fixed_ctr_ctrl = p.global_ctrl = p.global_status = 0

    def kvm_pmu_cleanup(self) -> None:
        """Mirrors kvm_pmu_cleanup() (pmu.c), spec §2.1: release idle, untouched perf events.
        Only reached when need_cleanup is set (vCPU sched-in, which the world never models)."""
        for pmc in self.valid_pmcs():
            if (pmc.perf_event is not None and not (self.pmu.pmc_in_use >> pmc.idx & 1)
                    and not self.pmc_speculative_in_use(pmc)):
                self.pmc_stop_counter(pmc)
        self.pmu.pmc_in_use = 0
        self.pmu.need_cleanup = False

    # --- predicates -----------------------------------------------------------------

    def pmc_is_globally_enabled(self, pmc: KvmPmc) -> bool:
        """Mirrors pmc_is_globally_enabled() (pmu.h), spec §2.9."""
        if self.pmu.version <= 1:
            return True
        return bool(self.pmu.global_ctrl >> pmc.idx & 1)

    def pmc_speculative_in_use(self, pmc: KvmPmc) -> bool:
        """Mirrors pmc_speculative_in_use() / pmc_is_locally_enabled() (pmu.h), spec §2.9."""
        if pmc.type == KVM_PMC_FIXED:
            return bool(fixed_field(self.pmu.fixed_ctr_ctrl, pmc.idx - FIXED_BASE) & (FIXED_OS | FIXED_USR))
        return bool(pmc.eventsel & EVENTSEL_ENABLE)

    def hw_event_available(self, pmc: KvmPmc) -> bool:
        """Mirrors intel_hw_event_available() (vmx/pmu_intel.c, until v6.9), spec §1.2/R12: an
        eventsel (a fixed counter's synthetic one included) that is one of the seven real
        architectural events counts only if guest CPUID.0AH enumerates it (available_event_types);
        anything else passes. amd_hw_event_available() always passes."""
        if not self.cfg.is_intel:
            return True
        event = pmc.eventsel & (EVENTSEL_EVENT | EVENTSEL_UMASK)
        for bit, kind in enumerate(ARCH_EVENT_BITS[:NR_REAL_INTEL_ARCH_EVENTS]):
            if event == ENCODINGS["intel"][kind]:
                return bool(self.pmu.available_event_types >> bit & 1)
        return True

    def check_pmu_event_filter(self, pmc: KvmPmc) -> bool:
        """Mirrors check_pmu_event_filter() / pmc_is_event_allowed() (pmu.c), spec §2.14."""
        return pmc_allowed(self.filter, pmc.idx, pmc.eventsel)

    def pmc_event_is_allowed(self, pmc: KvmPmc) -> bool:
        """Mirrors pmc_event_is_allowed() (pmu.c), spec §2.9 step 2."""
        return (self.pmc_is_globally_enabled(pmc) and self.pmc_speculative_in_use(pmc)
                and (not self.era.hw_event_available or self.hw_event_available(pmc))
                and self.check_pmu_event_filter(pmc))

    def cpl_is_matched(self, pmc: KvmPmc) -> bool:
        """Mirrors cpl_is_matched() (pmu.c), spec §2.12: CPL read after the instruction."""
        if pmc.type == KVM_PMC_FIXED:
            f = fixed_field(self.pmu.fixed_ctr_ctrl, pmc.idx - FIXED_BASE)
            os_, usr = bool(f & FIXED_OS), bool(f & FIXED_USR)
        else:
            os_, usr = bool(pmc.eventsel & EVENTSEL_OS), bool(pmc.eventsel & EVENTSEL_USR)
        if self.era.cpl_shortcut and os_ == usr:
            return os_
        return os_ if self.cpl == 0 else usr

    # --- counter value ------------------------------------------------------------------

    def pmc_read_counter(self, pmc: KvmPmc) -> int:
        """Mirrors pmc_read_counter() (pmu.h), spec §1.1/§2.7, via the design."""
        return self.design.read_counter(self, pmc)

    def get_sample_period(self, pmc: KvmPmc, value: int) -> int:
        """Mirrors get_sample_period() (pmu.h), spec §2.7."""
        mask = self.pmc_bitmask(pmc)
        period = (-value) & mask
        return period if period else mask + 1

    def pmc_update_sample_period(self, pmc: KvmPmc) -> None:
        """Mirrors pmc_update_sample_period() (pmu.h), spec §2.7: period from the *base*."""
        ev = pmc.perf_event
        if ev is None or pmc.is_paused or ev.sample_period == 0:
            return
        self._note_silent_period(pmc)
        err, lost = ev.set_period(self.get_sample_period(pmc, pmc.counter))
        if lost:
            self.note("overflow", f"host PMI for pmc{pmc.idx} lost: period changed")
        if err:
            self.note("perf", f"perf_event_period pmc{pmc.idx} failed ({err})")

    def pmc_write_counter(self, pmc: KvmPmc, value: int) -> None:
        """Mirrors pmc_write_counter() (pmu.c v6.8+; pmu.h + caller before), spec §2.7. A
        design that re-arms perf itself (`writes_sample_period`) is not re-armed twice."""
        self.design.write_counter(self, pmc, value)
        if not self.design.writes_sample_period:
            self.pmc_update_sample_period(pmc)

    # --- perf event life cycle ----------------------------------------------------------

    def pmc_release_perf_event(self, pmc: KvmPmc) -> None:
        """Mirrors pmc_release_perf_event() (pmu.h), spec §2.9."""
        if pmc.perf_event is not None:
            if pmc.perf_event.overflow_pending:
                self.note("overflow", f"host PMI for pmc{pmc.idx} lost: event released")
            pmc.perf_event = None
            pmc.current_config = 0
            self.pmu.event_count -= 1
            self.note("perf", f"perf release pmc{pmc.idx}")

    def pmc_stop_counter(self, pmc: KvmPmc) -> None:
        """Mirrors pmc_stop_counter() (pmu.h), spec §2.9/§4.4."""
        if pmc.perf_event is not None:
            pmc.counter = self.pmc_read_counter(pmc)
            self.pmc_release_perf_event(pmc)

    def pmc_pause_counter(self, pmc: KvmPmc) -> bool:
        """Mirrors pmc_pause_counter() (pmu.c), spec §2.9 step 1 / §4.1, via the design."""
        wrapped = self.design.pause_counter(self, pmc)
        pmc.is_paused = True
        return wrapped

    def pmc_resume_counter(self, pmc: KvmPmc) -> bool:
        """Mirrors pmc_resume_counter() (pmu.c), spec §2.9."""
        ev = pmc.perf_event
        if ev is None:
            return False
        if ev.sample_period:
            err, lost = ev.set_period(self.get_sample_period(pmc, pmc.counter))
            if lost:
                self.note("overflow", f"host PMI for pmc{pmc.idx} lost: period changed")
            if err:
                return False
        ev.enable()
        pmc.is_paused = False
        self.note("perf", f"resume pmc{pmc.idx} (period {ev.sample_period:#x})")
        return True

    def pmc_reprogram_counter(self, pmc: KvmPmc, config: int, exclude_user: bool, exclude_kernel: bool,
                              intr: bool) -> int:
        """Mirrors pmc_reprogram_counter() (pmu.c), spec §2.9: create the perf event."""
        period = self.get_sample_period(pmc, pmc.counter)
        ev = self.host.create(pmc.idx, config, config & EVENT_MATCH_MASK, exclude_user, exclude_kernel, period)
        if isinstance(ev, int):
            self.note("perf", f"perf create pmc{pmc.idx} failed ({ev})")
            return ev
        pmc.perf_event = ev
        self.pmu.event_count += 1
        pmc.is_paused = False
        pmc.intr = intr
        self.note("perf", f"perf create pmc{pmc.idx} config {config:#x} period {period:#x}")
        return 0

    # --- reprogramming -------------------------------------------------------------------

    def reprogram_complete(self, pmc: KvmPmc) -> None:
        """The `reprogram_complete:` tail of reprogram_counter() (pmu.c, spec §2.9): clear the
        PMC's reprogram bit (before the 6.9 snapshot bitmap) and the design's own reset."""
        if not self.era.snapshot_reprogram_bitmap:
            self.pmu.reprogram_pmi &= ~(1 << pmc.idx)
        self.design.reprogram_complete(self, pmc)

    def reprogram_counter(self, pmc: KvmPmc) -> int:
        """Mirrors reprogram_counter() (pmu.c), spec §2.9 (pre and post) / §4.1. An emulated
        overflow of a PMC that is no longer allowed is dropped: a `disallowed` signal (R11). A
        backing that runs the guest's eventsel on the hardware itself (the mediated series'
        early return to kvm_mediated_pmu_refresh_event_filter) needs no perf event."""
        self.note("reprogram", f"reprogram pmc{pmc.idx}")
        emulate_overflow = self.pmc_pause_counter(pmc)
        if not self.pmc_event_is_allowed(pmc):
            if emulate_overflow:
                self.record_signal(pmc, "disallowed")
                self.note("overflow", f"emulated overflow of pmc{pmc.idx} dropped: not allowed")
            pmc.eventsel_hw = 0
            self.reprogram_complete(pmc)
            return 0
        if self.design.backing.program(self, pmc):
            self.reprogram_complete(pmc)
            return 0
        if emulate_overflow:
            self.kvm_perf_overflow_inner(pmc, in_pmi=False)
        if pmc.type == KVM_PMC_FIXED:
            f = fixed_field(self.pmu.fixed_ctr_ctrl, pmc.idx - FIXED_BASE)
            eventsel = pmc.eventsel
            eventsel |= EVENTSEL_OS if f & FIXED_OS else 0
            eventsel |= EVENTSEL_USR if f & FIXED_USR else 0
            eventsel |= EVENTSEL_INT if f & FIXED_PMI else 0
            new_config = f
        else:
            eventsel = pmc.eventsel
            new_config = eventsel
            if eventsel & EVENTSEL_PIN_CONTROL:
                self.note("reprogram", f"pmc{pmc.idx}: pin control ignored")
        if pmc.current_config == new_config and self.pmc_resume_counter(pmc):
            self.reprogram_complete(pmc)
            return 0
        self.pmc_release_perf_event(pmc)
        pmc.current_config = new_config
        err = self.pmc_reprogram_counter(pmc, eventsel & self.pmu.raw_event_mask,
                                         not eventsel & EVENTSEL_USR, not eventsel & EVENTSEL_OS,
                                         bool(eventsel & EVENTSEL_INT))
        if err:
            return err
        self.reprogram_complete(pmc)
        return 0

    def kvm_pmu_handle_event(self) -> None:
        """Mirrors kvm_pmu_handle_event() (pmu.c), spec §2.8: live bitmap before v6.9,
        snapshot-and-clear from v6.9 (failed bits re-set without a new request)."""
        p = self.pmu
        if self.era.snapshot_reprogram_bitmap:
            snapshot = p.reprogram_pmi
            p.reprogram_pmi &= ~snapshot
            for idx in _bits(snapshot):
                pmc = self.pmc(idx)
                if pmc is None:
                    continue
                if self.reprogram_counter(pmc):
                    p.reprogram_pmi |= 1 << idx
        else:
            for idx in _bits(p.reprogram_pmi):
                if not p.reprogram_pmi >> idx & 1:
                    continue
                pmc = self.pmc(idx)
                if pmc is None:
                    p.reprogram_pmi &= ~(1 << idx)
                    continue
                self.reprogram_counter(pmc)
        if p.need_cleanup:
            self.kvm_pmu_cleanup()

    def kvm_pmu_request_counter_reprogram(self, pmc: KvmPmc) -> None:
        """Mirrors kvm_pmu_request_counter_reprogram() (pmu.h), spec §2.8."""
        self.pmu.reprogram_pmi |= 1 << pmc.idx
        self.make_request(REQ_PMU)

    def reprogram_counters(self, diff: int) -> None:
        """Mirrors reprogram_counters() (pmu.h), spec §2.8: GLOBAL_CTRL changes."""
        if not diff:
            return
        for pmc in self.valid_pmcs():
            if diff >> pmc.idx & 1:
                self.pmu.reprogram_pmi |= 1 << pmc.idx
        self.make_request(REQ_PMU)

    def reprogram_fixed_counters(self, data: int) -> None:
        """Mirrors reprogram_fixed_counters() (vmx/pmu_intel.c), spec §2.4. Until 05519c86d699
        the old value was kept in a u8 (era switch fixed_ctr_ctrl_u8_snapshot): fixed counter
        2's old field reads 0, so clearing it goes unseen and any other change reprograms it."""
        old = self.pmu.fixed_ctr_ctrl
        if self.era.fixed_ctr_ctrl_u8_snapshot:
            old &= 0xFF
        self.pmu.fixed_ctr_ctrl = data
        for i in range(self.pmu.nr_arch_fixed_counters):
            if fixed_field(old, i) != fixed_field(data, i):
                pmc = self.pmu.fixed_counters[i]
                self.pmu.pmc_in_use |= 1 << pmc.idx
                self.kvm_pmu_request_counter_reprogram(pmc)

    # --- overflow signalling ------------------------------------------------------------

    def kvm_perf_overflow(self, pmc: KvmPmc) -> None:
        """Mirrors kvm_perf_overflow() (pmu.c), spec §2.10: perf's overflow handler; dropped
        when the PMC's reprogram bit is already set."""
        if self.pmu.reprogram_pmi >> pmc.idx & 1:
            self.record_signal(pmc, "ignored")
            self.note("overflow", f"hw overflow of pmc{pmc.idx} ignored: reprogram pending")
            return
        self.pmu.reprogram_pmi |= 1 << pmc.idx
        self.kvm_perf_overflow_inner(pmc, in_pmi=True)
        self.make_request(REQ_PMU)

    def kvm_perf_overflow_inner(self, pmc: KvmPmc, in_pmi: bool) -> None:
        """Mirrors __kvm_perf_overflow() (pmu.c), spec §2.10 (PEBS not modelled)."""
        self.pmu.global_status |= 1 << pmc.idx
        self.record_signal(pmc, "hw" if in_pmi else "emulated")
        self.note("overflow", f"overflow pmc{pmc.idx} ({'hw' if in_pmi else 'emulated'}): STATUS bit set")
        if not pmc.intr:
            return
        if self.era.pmi_via_irq_work and in_pmi and not self.handling_nmi_from_guest:
            self.note("pmi", "irq_work: deliver PMI now")
            self.kvm_pmu_deliver_pmi()
        else:
            self.make_request(REQ_PMI)

    def kvm_pmu_deliver_pmi(self) -> None:
        """Mirrors kvm_pmu_deliver_pmi() (pmu.c) -> kvm_apic_local_deliver(LVTPC), spec §2.11."""
        delivery = self.lapic.local_deliver_lvtpc(self.era.auto_mask_lvtpc(self.cfg.vendor))
        self.note("pmi", f"PMI {delivery}")
        if delivery.route is Route.NMI:
            self.make_request(REQ_NMI)
        elif delivery.route is Route.FIXED:
            self.make_request(REQ_EVENT)

    # --- emulated events -----------------------------------------------------------------

    def eventsel_matches(self, pmc: KvmPmc, enc: int) -> bool:
        """The event select + umask comparison kvm_pmu_trigger_event() makes (pmu.c, §2.12)."""
        return not (pmc.eventsel ^ enc) & EVENT_MATCH_MASK

    def kvm_pmu_trigger_event(self, kind: EventKind) -> None:
        """Mirrors kvm_pmu_trigger_event() (pmu.c), spec §2.12, per era's candidate set."""
        enc = ENCODINGS[self.cfg.vendor][kind]
        mode = self.era.trigger_candidates
        for pmc in self.valid_pmcs():
            if mode == "all-valid":
                ok = (self.pmc_event_is_allowed(pmc) and self.eventsel_matches(pmc, enc)
                      and self.cpl_is_matched(pmc))
            elif mode == "global-ctrl":
                ok = (self.pmc_is_globally_enabled(pmc) and self.eventsel_matches(pmc, enc)
                      and self.pmc_event_is_allowed(pmc) and self.cpl_is_matched(pmc))
            else:  # counting-bitmaps: locally enabled + eventsel match, & global_ctrl
                ok = (self.pmc_speculative_in_use(pmc) and self.eventsel_matches(pmc, enc)
                      and self.pmc_is_globally_enabled(pmc) and self.check_pmu_event_filter(pmc)
                      and self.cpl_is_matched(pmc))
            if ok:
                self.kvm_pmu_incr_counter(pmc)

    def kvm_pmu_incr_counter(self, pmc: KvmPmc) -> None:
        """Mirrors kvm_pmu_incr_counter() (pmu.c), spec §2.12, via the design."""
        self.design.incr_counter(self, pmc)

    # --- event filter --------------------------------------------------------------------

    def kvm_vm_ioctl_set_pmu_event_filter(self, flt: EventFilter | None) -> None:
        """Mirrors kvm_vm_ioctl_set_pmu_event_filter() (pmu.c), spec §2.14: install, then
        mark every PMC for reprogramming and request KVM_REQ_PMU."""
        self.filter = flt
        self.pmu.reprogram_pmi = U64
        self.note("host", "event filter " + ("removed" if flt is None else f"installed ({flt.action})"))
        self.make_request(REQ_PMU)


def _bits(value: int) -> list[int]:
    out = []
    i = 0
    while value >> i:
        if value >> i & 1:
            out.append(i)
        i += 1
    return out
