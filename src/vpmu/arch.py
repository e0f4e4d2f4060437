"""The architectural reference PMU: what an x86 CPU promises a guest (spec architecture-and-peers.md A).

`ArchPmu` is a pure register model of one logical CPU's PMU as `PmuConfig` describes it. It
knows nothing of KVM or perf. Every MSR access, RDPMC, retirement and fed event is decided
here; every access answers with a `vpmu.trace.Result` whose `fault` is the architectural #GP.

Conventions (docs/reference.md explains each one and where it comes from):

* Counters are stored masked to their width; reads never see bits above it (A.6).
* Instruction numbers are global: `insn` is the number of guest instructions retired so far;
  the k-th instruction is number k (1-based). A wrap caused by instruction k is recorded as
  `Wrap(pmc, k)`; the PMI it requests is delivered *before* instruction k+1 and recorded as
  `Pmi(k, ...)` ("k instructions had retired when it arrived").
* All PMI requests raised at one instruction boundary (one retiring instruction, or one
  `feed`) coalesce into one PMI: the APIC sees one interrupt per boundary.
* Overflow = carry out of the counter width (A.7). The GLOBAL_STATUS bit is sticky and set on
  every wrap where the PMU has global status; a PMI is requested iff INT / fixed PMI is set.
* Delivery through the LVTPC (A.8): masked -> dropped (not latched); otherwise delivered and,
  on Intel only, the mask bit is set by the delivery.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from vpmu import msrs as M
from vpmu.config import FIXED_BASE, INTEL_MAX_FIXED, PmuConfig
from vpmu.errors import ValueRangeError
from vpmu.events import (
    EVENTSEL_ENABLE,
    EVENTSEL_INT,
    EVENTSEL_OS,
    EVENTSEL_USR,
    FIXED_EVENTS,
    FIXED_KINDS,
    FIXED_OS,
    FIXED_PMI,
    FIXED_USR,
    EventKind,
    cpl_matches,
    event_kind,
    event_mask,
    fixed_field,
    per_step,
    step_count,
)
from vpmu.filter import EventFilter, pmc_allowed
from vpmu.pmc_map import U64, counter_name
from vpmu.trace import Note, Result

# The reserved and writable masks below are stated from the SDM/APM here on purpose, although
# vpmu.kvm (INTEL_RESERVED_BITS, AMD_RESERVED_BITS) and vpmu.lapic (LVTPC_WRITABLE) hold equal
# values: those are KVM's choices, these are the architectural oracle they are checked against.

#: Intel eventsel reserved bits: 63:32 and 21 (AnyThread; no SMT sibling is modelled, KVM
#: reserves it too). A.3.
INTEL_EVENTSEL_RESERVED = 0xFFFF_FFFF_0020_0000
#: AMD eventsel bits silently dropped on write: 19 (pin control), 21, 63:36 (incl. Host/GuestOnly). A.3.
AMD_EVENTSEL_RESERVED = 0xFFFF_FFF0_0028_0000
#: Writable bits of one fixed-counter field: EN_OS, EN_USR, PMI (AnyThread bit 2 reserved). A.4.
FIXED_FIELD_WRITABLE = FIXED_OS | FIXED_USR | FIXED_PMI
#: GLOBAL_INUSE "PMI in use" bit (Linux: BIT(63)). A.5.
INUSE_PMI = 1 << 63
#: LVTPC writable bits: vector 7:0, delivery mode 10:8, mask 16. A.8.
LVTPC_WRITABLE = 0xFF | 0x700 | M.LVTPC_MASKED
#: RDPMC type for fixed counters (ECX[31:16] = 0x4000; the reference decodes RDPMC on its own,
#: see vpmu.pmc_map). A.10.
RDPMC_TYPE_FIXED = 0x4000


@dataclass(frozen=True, slots=True)
class Wrap:
    """Counter `pmc` carried out of its width; `insn` = the wrapping instruction's number
    (for a fed event: the number of instructions retired when it was fed)."""

    pmc: int
    insn: int


@dataclass(frozen=True, slots=True)
class Pmi:
    """One PMI (coalesced over the PMI requests of one boundary) after `insn` instructions.

    delivered: False when LVTPC was masked (the PMI is dropped, not latched).
    pmcs:      the counters whose overflow requested it, in `pmc_indices` order.
    """

    insn: int
    delivered: bool
    pmcs: tuple[int, ...]


def _check_u64(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueRangeError(f"{what} must be an integer, not {value!r}")
    if not 0 <= value <= U64:
        raise ValueRangeError(f"{what} {value:#x} does not fit 64 bits")
    return value


def _check_cpl(cpl: int) -> int:
    if isinstance(cpl, bool) or not isinstance(cpl, int) or not 0 <= cpl <= 3:
        raise ValueRangeError(f"CPL must be 0..3, not {cpl!r}")
    return cpl


def _check_count(n: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueRangeError(f"{what} must be an integer >= 0, not {n!r}")
    return n


_FAULT = Result(None, True)
_OK = Result(None, False)


@dataclass(slots=True)
class ArchPmu:
    """The architectural PMU of one logical CPU configured by `cfg` (spec A.1-A.11).

    State: counter values (masked), eventsels, FIXED_CTR_CTRL, GLOBAL_CTRL, GLOBAL_STATUS,
    LVTPC, the filter gate, the retired-instruction count and `ran` (the CPU has executed since
    RESET: its enumeration, PERF_CAPABILITIES included, is fixed from then on). `wraps`,
    `pmis` and `log` accumulate what happened; `take()` hands them over and clears them.
    """

    cfg: PmuConfig
    lvtpc: int = M.LVTPC_RESET
    counters: dict[int, int] = field(default_factory=dict)
    eventsel: list[int] = field(default_factory=list)
    fixed_ctrl: int = 0
    global_ctrl: int = -1  # -1: the reset value, cfg.global_ctrl_reset
    global_status: int = 0
    filter: EventFilter | None = None
    insn: int = 0
    wraps: list[Wrap] = field(default_factory=list)
    pmis: list[Pmi] = field(default_factory=list)
    log: list[Note] = field(default_factory=list)
    ran: bool = False

    def __post_init__(self) -> None:
        _check_u64(self.lvtpc, "LVTPC")
        if self.lvtpc & ~LVTPC_WRITABLE:
            raise ValueRangeError(f"LVTPC value {self.lvtpc:#x} sets bits outside {LVTPC_WRITABLE:#x}")
        if not self.counters:
            self.counters = dict.fromkeys(self.cfg.pmc_indices, 0)
        if not self.eventsel:
            self.eventsel = [0] * self.cfg.num_gp
        if self.global_ctrl < 0:
            self.global_ctrl = self.cfg.global_ctrl_reset

    # --- copying and identity -------------------------------------------------------------

    def clone(self) -> ArchPmu:
        """An independent copy of the register state (event lists start empty)."""
        return ArchPmu(self.cfg, self.lvtpc, dict(self.counters), list(self.eventsel), self.fixed_ctrl,
                       self.global_ctrl, self.global_status, self.filter, self.insn, ran=self.ran)

    def key(self) -> tuple[object, ...]:
        """Everything that affects the future (not the instruction count)."""
        return (tuple(self.counters[i] for i in self.cfg.pmc_indices), tuple(self.eventsel), self.fixed_ctrl,
                self.global_ctrl, self.global_status, self.lvtpc, self.filter, self.cfg, self.ran)

    def take(self) -> tuple[list[Wrap], list[Pmi], list[Note]]:
        """The wraps, PMIs and log notes since the last `take()`; clears them."""
        out = (self.wraps, self.pmis, self.log)
        self.wraps, self.pmis, self.log = [], [], []
        return out

    # --- derived facts --------------------------------------------------------------------

    @property
    def is_intel(self) -> bool:
        return self.cfg.is_intel

    @property
    def has_status(self) -> bool:
        """GLOBAL_STATUS exists (Intel v2+, AMD PerfMonV2)."""
        return self.cfg.has_global_msrs

    @property
    def status_bits(self) -> int:
        """Bits GLOBAL_STATUS can hold: counter overflow bits (+ OvfBuf/CondChgd on Intel, A.5:
        clearable and settable, never set by this model: no PEBS, no CondChgd tracking)."""
        if not self.has_status:
            return 0
        bits = self.cfg.global_ctrl_valid_bits
        return bits | M.GLOBAL_STATUS_OVF_BUF | M.GLOBAL_STATUS_COND_CHGD if self.is_intel else bits

    @property
    def fixed_ctrl_writable(self) -> int:
        bits = 0
        for i in self.cfg.fixed_indices:
            bits |= FIXED_FIELD_WRITABLE << (4 * i)
        return bits

    def counter(self, pmc: int) -> int:
        """Guest-visible value of PMC `pmc` (no side effects)."""
        return self.counters[pmc]

    def counter_values(self, layout: Sequence[int] | None = None) -> tuple[int, ...]:
        """Counter values in `layout` order (default: this CPU's counters); a counter the CPU
        does not have reads 0."""
        return tuple(self.counters.get(i, 0) for i in (self.cfg.pmc_indices if layout is None else layout))

    @property
    def global_inuse(self) -> int:
        """IA32_PERF_GLOBAL_INUSE (A.5): eventsel[7:0] != 0, fixed EN bits != 0, bit 63 = any PMI enable."""
        value = 0
        pmi = False
        for i, sel in enumerate(self.eventsel):
            if sel & 0xFF:
                value |= 1 << i
            pmi |= bool(sel & EVENTSEL_INT)
        for i in self.cfg.fixed_indices:
            f = fixed_field(self.fixed_ctrl, i)
            if f & (FIXED_OS | FIXED_USR):
                value |= 1 << (FIXED_BASE + i)
            pmi |= bool(f & FIXED_PMI)
        return value | (INUSE_PMI if pmi else 0)

    @property
    def perf_capabilities(self) -> int:
        return M.PERF_CAP_FW_WRITES if self.cfg.full_width_writes else 0

    # --- MSR decoding ---------------------------------------------------------------------

    def decode(self, msr: int | str) -> tuple[str, int] | None:
        """(kind, index) of an MSR this PMU has, or None when it does not exist here (#GP)."""
        addr = M.resolve_msr(msr)
        cfg = self.cfg
        if addr == M.X2APIC_LVTPC:
            return ("lvtpc", 0)
        if cfg.is_intel and addr == M.IA32_PERF_CAPABILITIES:
            return ("perfcap", 0) if cfg.pdcm else None
        if cfg.version == 0:
            return None
        n = cfg.num_gp
        if cfg.is_intel:
            if M.IA32_PMC0 <= addr < M.IA32_PMC0 + n:
                return ("pmc", addr - M.IA32_PMC0)
            if M.IA32_PERFEVTSEL0 <= addr < M.IA32_PERFEVTSEL0 + n:
                return ("evtsel", addr - M.IA32_PERFEVTSEL0)
            if cfg.full_width_writes and M.IA32_A_PMC0 <= addr < M.IA32_A_PMC0 + n:
                return ("apmc", addr - M.IA32_A_PMC0)
            if M.IA32_FIXED_CTR0 <= addr < M.IA32_FIXED_CTR0 + INTEL_MAX_FIXED:
                i = addr - M.IA32_FIXED_CTR0
                return ("fixed", i) if cfg.fixed_counter_exists(i) else None
            simple = {
                M.IA32_FIXED_CTR_CTRL: ("fixed_ctrl", 2),
                M.IA32_PERF_GLOBAL_STATUS: ("status", 2),
                M.IA32_PERF_GLOBAL_CTRL: ("ctrl", 2),
                M.IA32_PERF_GLOBAL_OVF_CTRL: ("ovf", 2),
                M.IA32_PERF_GLOBAL_STATUS_SET: ("status_set", 4),
                M.IA32_PERF_GLOBAL_INUSE: ("inuse", 4),
            }.get(addr)
            if simple is not None and cfg.version >= simple[1]:
                return (simple[0], 0)
            return None
        if M.MSR_K7_EVNTSEL0 <= addr < M.MSR_K7_EVNTSEL0 + min(4, n):
            return ("evtsel", addr - M.MSR_K7_EVNTSEL0)
        if M.MSR_K7_PERFCTR0 <= addr < M.MSR_K7_PERFCTR0 + min(4, n):
            return ("pmc", addr - M.MSR_K7_PERFCTR0)
        if cfg.perfctr_core and M.MSR_F15H_PERF_CTL0 <= addr < M.MSR_F15H_PERF_CTL0 + 2 * n:
            off = addr - M.MSR_F15H_PERF_CTL0
            return ("pmc" if off % 2 else "evtsel", off // 2)
        if cfg.version >= 2:
            amd = {
                M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS: "status",
                M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL: "ctrl",
                M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR: "ovf",
                M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET: "status_set",
            }.get(addr)
            if amd is not None:
                return (amd, 0)
        return None

    def exists(self, msr: int | str) -> bool:
        return self.decode(msr) is not None

    def existing_msrs(self) -> tuple[int, ...]:
        """Every MSR this PMU has, in restore order: counters, then controls, status, LVTPC."""
        cfg = self.cfg
        counters: list[int] = []
        controls: list[int] = []
        if cfg.version >= 1:
            if cfg.is_intel:
                counters += [M.IA32_PMC0 + i for i in range(cfg.num_gp)]
                if cfg.full_width_writes:
                    counters += [M.IA32_A_PMC0 + i for i in range(cfg.num_gp)]
                counters += [M.IA32_FIXED_CTR0 + i for i in cfg.fixed_indices]
                controls += [M.IA32_PERFEVTSEL0 + i for i in range(cfg.num_gp)]
                if cfg.pdcm:
                    controls.append(M.IA32_PERF_CAPABILITIES)
                if cfg.version >= 2:
                    controls += [M.IA32_FIXED_CTR_CTRL, M.IA32_PERF_GLOBAL_CTRL, M.IA32_PERF_GLOBAL_STATUS,
                                 M.IA32_PERF_GLOBAL_OVF_CTRL]
                if cfg.version >= 4:
                    controls += [M.IA32_PERF_GLOBAL_STATUS_SET, M.IA32_PERF_GLOBAL_INUSE]
            else:
                k7 = min(4, cfg.num_gp)
                counters += [M.MSR_K7_PERFCTR0 + i for i in range(k7)]
                controls += [M.MSR_K7_EVNTSEL0 + i for i in range(k7)]
                if cfg.perfctr_core:
                    counters += [M.MSR_F15H_PERF_CTL0 + 2 * i + 1 for i in range(cfg.num_gp)]
                    controls += [M.MSR_F15H_PERF_CTL0 + 2 * i for i in range(cfg.num_gp)]
                if cfg.version >= 2:
                    controls += [M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL, M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS,
                                 M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR,
                                 M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET]
        elif cfg.is_intel and cfg.pdcm:
            controls.append(M.IA32_PERF_CAPABILITIES)
        return tuple(counters + controls + [M.X2APIC_LVTPC])

    # --- RDMSR / WRMSR --------------------------------------------------------------------

    def _msr_access(self, msr: int | str, cpl: int, host: bool) -> tuple[str, int] | None:
        """The decoded MSR, or None when the access #GPs: RDMSR/WRMSR are privileged (a guest
        access at CPL > 0 faults; a host access has no CPL) and unknown MSRs fault."""
        _check_cpl(cpl)
        if not host and cpl > 0:
            return None
        return self.decode(msr)

    def _absent_perfcap(self, msr: int | str, host: bool) -> bool:
        """A host access to IA32_PERF_CAPABILITIES on a CPU that does not enumerate it (no PDCM,
        or AMD). Decision: it reads 0 and takes a 0, as KVM answers a VMM that saves and
        restores an advertised feature MSR the vCPU lacks (d75cac366f44); a guest access #GPs."""
        return host and M.resolve_msr(msr) == M.IA32_PERF_CAPABILITIES and not (self.is_intel and self.cfg.pdcm)

    def rdmsr(self, msr: int | str, *, cpl: int = 0, host: bool = False) -> Result:
        """RDMSR (guest: #GP at CPL > 0) or a host-initiated read (KVM_GET_MSRS)."""
        if self._absent_perfcap(msr, host):
            return Result(0, False)
        dec = self._msr_access(msr, cpl, host)
        if dec is None:
            return _FAULT
        kind, i = dec
        value: int
        if kind in ("pmc", "apmc"):
            value = self.counters[i]
        elif kind == "fixed":
            value = self.counters[FIXED_BASE + i]
        elif kind == "evtsel":
            value = self.eventsel[i]
        elif kind == "fixed_ctrl":
            value = self.fixed_ctrl
        elif kind == "status":
            value = self.global_status
        elif kind == "ctrl":
            value = self.global_ctrl
        elif kind == "inuse":
            value = self.global_inuse
        elif kind == "perfcap":
            value = self.perf_capabilities
        elif kind == "lvtpc":
            value = self.lvtpc
        else:  # ovf / status_set: write-only in effect, read as 0
            value = 0
        return Result(value, False)

    def wrmsr(self, msr: int | str, value: int, *, cpl: int = 0, host: bool = False) -> Result:
        """WRMSR (guest: #GP at CPL > 0) or a host-initiated write (KVM_SET_MSRS).

        Host writes differ only where the spec says so: no sign extension of legacy counter
        writes, GLOBAL_STATUS writable; read-only enumeration MSRs (PERF_CAPABILITIES,
        GLOBAL_INUSE) accept their current value only.
        """
        _check_u64(value, f"WRMSR {M.msr_name(M.resolve_msr(msr))} value")
        if self._absent_perfcap(msr, host):
            return _OK if value == 0 else _FAULT
        dec = self._msr_access(msr, cpl, host)
        if dec is None:
            return _FAULT
        kind, i = dec
        ok = self._write_intel(kind, i, value, host) if self.is_intel else self._write_amd(kind, i, value, host)
        return _OK if ok else _FAULT

    def _write_intel(self, kind: str, i: int, value: int, host: bool) -> bool:
        cfg = self.cfg
        if kind == "pmc":
            if host:
                if value & ~cfg.gp_mask:
                    return False
                self.counters[i] = value
            else:  # A.6: EAX sign-extended from bit 31, then truncated to the width; EDX ignored
                low = value & 0xFFFF_FFFF
                ext = low | (U64 ^ 0xFFFF_FFFF) if low >> 31 else low
                self.counters[i] = ext & cfg.gp_mask
            return True
        if kind == "apmc":
            if value & ~cfg.gp_mask:
                return False
            self.counters[i] = value
            return True
        if kind == "fixed":
            if value & ~cfg.fixed_mask:
                return False
            self.counters[FIXED_BASE + i] = value
            return True
        if kind == "evtsel":
            if value & INTEL_EVENTSEL_RESERVED:
                return False
            self.eventsel[i] = value
            return True
        if kind == "fixed_ctrl":
            if value & ~self.fixed_ctrl_writable:
                return False
            self.fixed_ctrl = value
            return True
        if kind == "ctrl":
            if value & ~cfg.global_ctrl_valid_bits:
                return False
            self.global_ctrl = value
            return True
        if kind == "status":
            if not host or value & ~self.status_bits:
                return False
            self.global_status = value
            return True
        if kind == "ovf":
            if value & ~self.status_bits:
                return False
            self.global_status &= ~value
            return True
        if kind == "status_set":
            if value & ~self.status_bits:
                return False
            self.global_status |= value
            return True
        if kind == "inuse":
            return host and value == self.global_inuse
        if kind == "perfcap":
            return self._write_perf_capabilities(value, host)
        return self._write_lvtpc(value)

    def _write_perf_capabilities(self, value: int, host: bool) -> bool:
        """IA32_PERF_CAPABILITIES is enumeration: the guest cannot write it; a host write sets
        the bits the model enumerates (FW_WRITES) before the CPU first ran, and afterwards
        may only repeat the current value (the CPU model is fixed once it runs)."""
        if not host or value & ~M.PERF_CAP_FW_WRITES:
            return False
        if value == self.perf_capabilities:
            return True
        if self.ran:
            return False
        self.cfg = replace(self.cfg, full_width_writes=bool(value))
        return True

    def _write_amd(self, kind: str, i: int, value: int, host: bool) -> bool:
        cfg = self.cfg
        if kind == "pmc":
            self.counters[i] = value & cfg.gp_mask
        elif kind == "evtsel":
            self.eventsel[i] = value & ~AMD_EVENTSEL_RESERVED
        elif kind == "ctrl":
            self.global_ctrl = value & cfg.global_ctrl_valid_bits
        elif kind == "status":
            if host:
                self.global_status = value & self.status_bits
        elif kind == "ovf":
            self.global_status &= ~value
        elif kind == "status_set":
            self.global_status |= value & self.status_bits
        else:
            return self._write_lvtpc(value)
        return True

    def _write_lvtpc(self, value: int) -> bool:
        """x2APIC LVTPC: vector, delivery mode and mask writable; other bits #GP (both vendors)."""
        if value & ~LVTPC_WRITABLE:
            return False
        self.lvtpc = value
        return True

    # --- RDPMC ------------------------------------------------------------------------------

    def rdpmc(self, ecx: int, *, cpl: int = 0, pce: bool = True) -> Result:
        """RDPMC with ECX = `ecx` at `cpl` with CR4.PCE = `pce` (A.10)."""
        if isinstance(ecx, bool) or not isinstance(ecx, int) or not 0 <= ecx <= 0xFFFF_FFFF:
            raise ValueRangeError(f"RDPMC ECX must be a 32-bit value, not {ecx!r}")
        _check_cpl(cpl)
        cfg = self.cfg
        if cfg.version == 0 or (cpl > 0 and not pce):
            return _FAULT
        if cfg.is_intel:
            kind, idx = ecx >> 16, ecx & 0xFFFF
            if kind == 0 and idx < cfg.num_gp:
                return Result(self.counters[idx], False)
            if kind == RDPMC_TYPE_FIXED and cfg.fixed_counter_exists(idx):
                return Result(self.counters[FIXED_BASE + idx], False)
            return _FAULT
        if ecx < cfg.num_gp:
            return Result(self.counters[ecx], False)
        return _FAULT

    # --- the filter gate and the counting predicate ----------------------------------------

    def set_filter(self, flt: EventFilter | None) -> None:
        """Install (or with None remove) the event filter gate (kvm-vpmu.md §2.14, invariant I2)."""
        self.filter = flt

    def counts(self, pmc: int, cpl: int) -> bool:
        """Whether PMC `pmc` counts its event at `cpl` right now (A.5 counting condition)."""
        cfg = self.cfg
        if pmc not in self.counters:
            return False
        if pmc < FIXED_BASE:
            sel = self.eventsel[pmc]
            if not sel & EVENTSEL_ENABLE:
                return False
            if cfg.version >= 2 and not self.global_ctrl >> pmc & 1:
                return False
            if not cpl_matches(bool(sel & EVENTSEL_OS), bool(sel & EVENTSEL_USR), cpl):
                return False
            return pmc_allowed(self.filter, pmc, sel)
        f = fixed_field(self.fixed_ctrl, pmc - FIXED_BASE)
        if not cpl_matches(bool(f & FIXED_OS), bool(f & FIXED_USR), cpl):
            return False
        if not self.global_ctrl >> pmc & 1:
            return False
        return pmc_allowed(self.filter, pmc, 0)

    def event_of(self, pmc: int) -> int:
        """The event a PMC counts: select + umask (AMD: + 35:32); fixed i -> FIXED_EVENTS[i]."""
        if pmc >= FIXED_BASE:
            return FIXED_EVENTS.get(pmc - FIXED_BASE, -1)
        return self.eventsel[pmc] & event_mask(self.cfg.vendor)

    def kind_of(self, pmc: int) -> EventKind | None:
        """Which modelled event a PMC counts (vpmu.events), or None: a GP eventsel whose
        select + umask is no modelled event counts nothing here."""
        if pmc >= FIXED_BASE:
            return FIXED_KINDS[pmc - FIXED_BASE]
        return event_kind(self.cfg.vendor, self.event_of(pmc))

    def condition_bits(self, pmc: int) -> int:
        """The eventsel bits that turn counting into a per-cycle condition (CMASK, INV, EDGE);
        fixed counters have none."""
        return self.eventsel[pmc] if pmc < FIXED_BASE else 0

    def pmi_enabled(self, pmc: int) -> bool:
        if pmc >= FIXED_BASE:
            return bool(fixed_field(self.fixed_ctrl, pmc - FIXED_BASE) & FIXED_PMI)
        return bool(self.eventsel[pmc] & EVENTSEL_INT)

    def retirement_counters(self, cpl: int) -> tuple[list[int], list[int]]:
        """(PMCs counting every retired instruction, PMCs counting retired branches) at `cpl`.

        A counter is driven by retirement only for a plain event (no CMASK, no EDGE; INV alone
        is ignored): with CMASK or EDGE it counts a per-cycle condition, per step
        (`count_step`).
        """
        insns: list[int] = []
        branches: list[int] = []
        for pmc in self.cfg.pmc_indices:
            kind = self.kind_of(pmc)
            if kind is None or per_step(kind, self.condition_bits(pmc)) or not self.counts(pmc, cpl):
                continue
            (insns if kind == "instructions" else branches).append(pmc)
        return insns, branches

    # --- counting -------------------------------------------------------------------------

    def retire(self, n: int, branches: int = 0, cpl: int = 0) -> None:
        """Retire `n` instructions at `cpl`, the first `branches` of them branches.

        Exact and O(number of wraps): the counters advance arithmetically from one wrap point
        to the next; each wrap is recorded at its instruction, and the PMI it requests is
        delivered (or dropped) before the next instruction, in order.
        """
        _check_count(n, "instruction count")
        _check_count(branches, "branch count")
        _check_cpl(cpl)
        if branches > n:
            raise ValueRangeError(f"{branches} branches among only {n} instructions")
        if n == 0:
            return
        insns, brs = self.retirement_counters(cpl)
        start = self.insn
        order = {p: k for k, p in enumerate(self.cfg.pmc_indices)}
        heap: list[tuple[int, int, int, int]] = []  # (offset, order, pmc, limit)
        ends: dict[int, int] = {}
        for pmc, limit in [(p, n) for p in insns] + [(p, branches) for p in brs]:
            period = self.cfg.mask_of(pmc) + 1
            first = period - self.counters[pmc]
            ends[pmc] = limit
            if first <= limit:
                heapq.heappush(heap, (first, order[pmc], pmc, limit))
        while heap:
            offset = heap[0][0]
            group: list[int] = []
            while heap and heap[0][0] == offset:
                _, k, pmc, limit = heapq.heappop(heap)
                group.append(pmc)
                nxt = offset + self.cfg.mask_of(pmc) + 1
                if nxt <= limit:
                    heapq.heappush(heap, (nxt, k, pmc, limit))
            self._overflow(group, start + offset)
        for pmc, limit in ends.items():
            self.counters[pmc] = (self.counters[pmc] + limit) & self.cfg.mask_of(pmc)
        self.insn = start + n

    def retire_one(self, branch: bool = False, cpl: int = 0) -> None:
        """Retire one instruction (a branch if `branch`)."""
        self.retire(1, 1 if branch else 0, cpl)

    def feed(self, event: int, n: int, cpl: int = 0) -> None:
        """`n` occurrences of `event` (select + umask; AMD + bits 35:32) at `cpl`, now.

        Every counting PMC whose event equals `event` advances by n, whatever its CMASK/EDGE
        (fixed 1 is fed by 0x003C, fixed 2 by 0x0300, fixed 3 by 0x0400); all its wraps happen
        at this boundary (after `insn` instructions) and their PMI requests coalesce into one.
        """
        _check_u64(event, "event")
        _check_count(n, "event count")
        _check_cpl(cpl)
        if n:
            self._advance_at_boundary([(pmc, n) for pmc in self.cfg.pmc_indices
                                       if self.counts(pmc, cpl) and self.event_of(pmc) == event])

    def count_step(self, totals: Mapping[EventKind, int], cycles: int | None, cpl: int = 0) -> None:
        """The per-step events of a native run at `cpl`, now (docs/reference.md "Counting"):
        every counting PMC whose event is not a retirement event, or whose eventsel counts a
        CMASK/EDGE condition, advances by `vpmu.events.step_count` of its event's total."""
        _check_cpl(cpl)
        incs: list[tuple[int, int]] = []
        for pmc in self.cfg.pmc_indices:
            kind = self.kind_of(pmc)
            bits = self.condition_bits(pmc)
            if kind is None or not per_step(kind, bits) or not self.counts(pmc, cpl):
                continue
            n = step_count(_check_count(totals.get(kind, 0), f"{kind} count"), bits, cycles)
            if n:
                incs.append((pmc, n))
        self._advance_at_boundary(incs)

    def _advance_at_boundary(self, incs: list[tuple[int, int]]) -> None:
        """Advance each (pmc, n) at the current boundary: every wrap is recorded at `insn`, and
        their PMI requests coalesce into one PMI."""
        wrapped: list[tuple[int, int]] = []
        for pmc, n in incs:
            period = self.cfg.mask_of(pmc) + 1
            total = self.counters[pmc] + n
            self.counters[pmc] = total % period
            if total >= period:
                wrapped.append((pmc, total // period))
        if not wrapped:
            return
        requested: list[int] = []
        for pmc, times in wrapped:
            for _ in range(times):
                self._wrap(pmc, self.insn)
            if self.pmi_enabled(pmc):
                requested.append(pmc)
        if requested:
            self._deliver(self.insn, tuple(requested))

    def _wrap(self, pmc: int, insn: int) -> None:
        self.wraps.append(Wrap(pmc, insn))
        self.log.append(Note("overflow", f"{counter_name(pmc)} wraps at insn {insn}"))
        if self.has_status:
            self.global_status |= 1 << pmc

    def _overflow(self, group: list[int], insn: int) -> None:
        """The PMCs in `group` wrapped at instruction `insn` (already in pmc order)."""
        requested: list[int] = []
        for pmc in group:
            self._wrap(pmc, insn)
            if self.pmi_enabled(pmc):
                requested.append(pmc)
        if requested:
            self._deliver(insn, tuple(requested))

    def _deliver(self, insn: int, pmcs: tuple[int, ...]) -> None:
        """Deliver one PMI through the LVTPC after `insn` instructions (A.8)."""
        if self.lvtpc & M.LVTPC_MASKED:
            self.pmis.append(Pmi(insn, False, pmcs))
            self.log.append(Note("pmi", f"PMI dropped: LVTPC masked (before insn {insn + 1})"))
            return
        self.pmis.append(Pmi(insn, True, pmcs))
        self.log.append(Note("pmi", f"PMI delivered before insn {insn + 1}"))
        if self.is_intel:
            self.lvtpc |= M.LVTPC_MASKED
            self.log.append(Note("pmi", "LVTPC masked by PMI delivery"))


__all__ = [
    "AMD_EVENTSEL_RESERVED",
    "ArchPmu",
    "FIXED_FIELD_WRITABLE",
    "INTEL_EVENTSEL_RESERVED",
    "LVTPC_WRITABLE",
    "Pmi",
    "Wrap",
]
