"""The KVM world: one vCPU running guest actions on the KVM vPMU model (spec kvm-vpmu.md §2.12,
§2.13; x86.c `vcpu_enter_guest`, `kvm_skip_emulated_instruction`, vmx.c
`handle_invalid_guest_state`).

Timeline rules (what the checker engineer needs to know):

* Between actions the vCPU is in guest mode: every exit ends with `vcpu_enter_guest`, which
  processes KVM_REQ_PMU / KVM_REQ_PMI / KVM_REQ_NMI in the era's order, re-looping when a
  request raised during the pass cancels the entry (v6.6 NMI-before-PMU), then injects pending
  NMIs / LVTPC vectors. Each injected PMI is recorded as the number of guest instructions
  retired so far ("a PMI delivered before instruction k+1 is recorded as k").
* `Native`: the design's backing (vpmu.backing: perf events, or for the mediated vPMU the
  guest-owned PMCs themselves) counts the run arithmetically, jumping from one overflow point
  to the next (cost O(overflows)). A real perf overflow raises a pending host PMI. Without
  `hold_pmi` it lands right after the overflowing instruction as an NMI VM-exit (handler
  `kvm_perf_overflow`, then `vcpu_enter_guest`), and the rest of the run continues. With
  `hold_pmi` it stays in flight until a `HostPmi` action or the next VM-exit, where the
  exiting action's `host_pmi` says whether it lands before or after KVM's exit handler.
  Skid is bounded (`WorldOptions.skid`, docs/kvm-model.md "Host PMI timing"): a held PMI
  lands, as an NMI VM-exit, before the (skid+1)-th later guest step executes, and inside a
  held run before its counter would wrap a second time. A perf event counts the modelled
  event its event select + umask names (vpmu.events): instructions and branches per retired
  instruction, the others per step (see below).
* Intercepted WRMSR/RDMSR/RDPMC/CPUID/HLT: KVM's handler takes effect, then
  `kvm_skip_emulated_instruction` retires the instruction (emulated "instructions" event).
  WRMSR/RDMSR at CPL > 0 and RDPMC's privilege #GP (CR4.PCE = 0 at CPL > 0; on AMD every
  RDPMC exception) are raised by hardware before any VM-exit: no exit, nothing retires. With
  `enable_vmware_backdoor` KVM intercepts that #GP and emulates the RDPMC instead.
* A native run's other events (cycles ..., and any CMASK/EDGE condition) are counted per
  step, at its last instruction boundary (vpmu.events.step_count).
* `Emulate`: each item is its own exit followed by request processing (without the
  `force_emulation_prefix` module parameter the prefix is just a #UD: nothing is emulated).
  `Batch`: all items in one `handle_invalid_guest_state` loop with no request processing
  until the loop ends. Emulated branches also count "branch instructions" (a named `Insn`
  per the era's IsBranch table, vpmu.insns). Faulting items do not retire.
* The first guest action is the first KVM_RUN: from then on KVM_SET_CPUID2 (`SetCpuid`) and a
  PERF_CAPABILITIES change are refused as KVM refuses them.
* HLT retires, then the vCPU halts. While halted KVM_REQ_PMU is not processed; KVM_REQ_PMI
  (and a pending NMI/interrupt) wakes it at once; otherwise the next guest action wakes it
  (request processing runs before that action). Userspace actions do not wake it.
* Userspace actions run with the vCPU outside the guest: the kick out of KVM_RUN is a VM-exit,
  so an in-flight host PMI lands first; afterwards a running vCPU re-enters
  (`vcpu_enter_guest`). `PerfFail` is a host switch with no exit.
* Results: one `Result` per Wrmsr/Rdmsr/Rdpmc (also inside Emulate/Batch), HostWrmsr,
  HostRdmsr and SetFilter; writes carry `value=None`. Faults are `fault=True`.
* Guest-owned counters (the mediated design's backing): native counts go straight into
  `pmc.counter`; a wrap sets GLOBAL_STATUS and, with INT/PMI set, raises a real PMI routed to
  KVM_REQ_PMI, handled at once as a VM-exit (hold_pmi is ignored).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from vpmu import actions as A
from vpmu.actions import Action
from vpmu.config import FIXED_BASE, PmuConfig
from vpmu.designs import resolve_design
from vpmu.eras import get_era
from vpmu.errors import DesignError, VpmuError
from vpmu.events import EventKind, event_kind, per_step, step_count
from vpmu.host import HOST_COUNTER_WIDTH, PerfHost
from vpmu.insns import retires_as_branch
from vpmu.kvm import REQ_EVENT, REQ_NMI, REQ_PMI, REQ_PMU, KvmPmc, KvmVcpu
from vpmu.kvm_msr import (
    emulator_check_rdpmc,
    hardware_rdpmc_faults,
    kvm_get_msr_common,
    kvm_pmu_rdpmc,
    kvm_set_msr_common,
    save_restore_msrs,
)
from vpmu.lapic import LINUX_GUEST_LVTPC, Lapic
from vpmu.trace import DesignState, Observation, Result

_REQ_BIT = {"pmu": REQ_PMU, "pmi": REQ_PMI, "nmi": REQ_NMI}
_MAX_ENTRY_PASSES = 8


@dataclass(frozen=True, slots=True)
class WorldOptions:
    """Host-side facts of the world.

    lapic_in_kernel: the local APIC is emulated by KVM (False: userspace APIC, PMIs dropped and
        the x2APIC LVTPC MSR #GPs).
    lvtpc: initial LVTPC. Default: NMI delivery, unmasked (0x400) — what a Linux guest programs
        at boot (`apic_write(APIC_LVTPC, APIC_DM_NMI)`), not the architectural reset value
        (masked).
    perf_fail: perf event creation fails from the start (toggled later by `PerfFail`).
    host_counter_width: width of the host's hardware counters (sets perf's max_period).
    skid: bounded PMI skid, in guest steps: a held host PMI raised in step s stays in flight
        while at most `skid` further guest steps start; the next one lands it first (an NMI
        VM-exit). Not the checker's `pmi_skid` (instructions of allowed PMI lateness).
    force_emulation_prefix: the kvm module parameter that makes KVM emulate an instruction
        behind the forced-emulation prefix (`Emulate`); off, the prefix's UD2 is a #UD.
    enable_vmware_backdoor: the kvm module parameter: KVM intercepts #GP to emulate RDPMC of
        the VMware pseudo-PMCs 0x10000-0x10002 from any CPL.
    pmu_cap_disable: the VM was created with KVM_CAP_PMU_CAPABILITY = KVM_PMU_CAP_DISABLE: no
        vPMU whatever guest CPUID says (kvm->arch.enable_pmu off).
    """

    lapic_in_kernel: bool = True
    lvtpc: int = LINUX_GUEST_LVTPC
    perf_fail: bool = False
    host_counter_width: int = HOST_COUNTER_WIDTH
    skid: int = 1
    force_emulation_prefix: bool = True
    enable_vmware_backdoor: bool = False
    pmu_cap_disable: bool = False


class World:
    """A KVM vCPU with a vPMU of `cfg`, in era `era`, with counter design `design`."""

    def __init__(self, cfg: PmuConfig, era: str = "6.8", design: str | type | None = None,
                 options: WorldOptions | None = None) -> None:
        self.cfg = cfg
        self.era = get_era(era)
        self.options = options or WorldOptions()
        self.design = resolve_design(design, self.era.default_design)
        self.lapic = Lapic(self.options.lapic_in_kernel, self.options.lvtpc)
        self.host = PerfHost(self.options.perf_fail, self.options.host_counter_width)
        self.kvm = KvmVcpu(cfg, self.era, self.design, self.lapic, self.host,
                           enable_pmu=not self.options.pmu_cap_disable)
        self.layout = cfg.pmc_indices   # observations keep the configured counters' order
        self.kvm.kvm_pmu_init()
        self.kvm.log.clear()
        self.insn = 0
        self.halted = False
        self.steps = 0
        self.pmi_age = 0  # guest steps started while the oldest held host PMI was in flight
        self._results: list[Result] = []
        self._pmis: list[int] = []

    # --- explorer support ---------------------------------------------------------------

    def clone(self) -> World:
        c = World.__new__(World)
        c.cfg, c.era, c.options, c.design, c.layout = self.cfg, self.era, self.options, self.design, self.layout
        c.lapic = self.lapic.clone()
        c.host = PerfHost(self.host.fail, self.host.host_width)
        c.kvm = self.kvm.clone(c.lapic, c.host)
        c.insn, c.halted, c.steps, c.pmi_age = self.insn, self.halted, self.steps, self.pmi_age
        c._results, c._pmis = [], []
        return c

    def state_key(self) -> tuple[object, ...]:
        """Everything that affects the future (not the instruction count or step number); the
        held PMI's age bounds its skid, so the late-PMI space of a counter is finite."""
        return (self.kvm.key(), self.lapic.key(), self.host.fail, self.halted, self.pmi_age)

    @property
    def pmi_in_flight(self) -> bool:
        """A host PMI has been raised and not landed yet."""
        return bool(self._pmcs_with_pending())

    # --- observation ------------------------------------------------------------------

    def counters(self) -> tuple[int, ...]:
        """Guest-visible values in the configured counters' order (pmc_read_counter, no side
        effects); counters KVM does not implement (e.g. fixed counter 3) read 0."""
        out = []
        for idx in self.layout:
            pmc = self.kvm.pmc(idx)
            out.append(self.kvm.pmc_read_counter(pmc) if pmc is not None else 0)
        return tuple(out)

    def step(self, action: Action) -> Observation:
        """Run one action; a user design's failure (`DesignError`) is given this step's number."""
        try:
            return self._step(action)
        except DesignError as err:
            if err.step is None:
                err.step = str(self.steps)
            raise

    def _step(self, action: Action) -> Observation:
        self._results, self._pmis = [], []
        self.kvm.log, self.kvm.signals = [], []
        if isinstance(action, A.GUEST_ACTIONS):
            self.kvm.has_run = True
            self._bound_skid()
        match action:
            case A.Native():
                self._native(action)
            case A.Wrmsr() | A.Rdmsr() | A.Rdpmc() | A.Cpuid() | A.Hlt():
                self._intercepted(action)
            case A.Emulate():
                self._emulate(action)
            case A.Batch():
                self.handle_invalid_guest_state(action)
            case A.HostPmi():
                self._host_pmi()
            case A.PerfFail():
                self._perf_fail(action)
            case A.SetFilter():
                self._set_filter(action)
            case A.ClearFilter():
                self._clear_filter()
            case A.SetCpuid():
                self._set_cpuid(action)
            case A.HostWrmsr():
                self._host_wrmsr(action)
            case A.HostRdmsr():
                self._host_rdmsr(action)
            case A.SaveRestore():
                self._save_restore()
            case _:
                raise VpmuError(f"not an action: {action!r}")
        if not self.pmi_in_flight:
            self.pmi_age = 0
        status = self.kvm.pmu.global_status if self.kvm.pmu.version > 1 else 0
        obs = Observation(self.steps, action, self.insn, tuple(self._results), self.counters(),
                          status, self.lapic.lvtpc, tuple(self._pmis),
                          tuple(self.kvm.signals), tuple(self.kvm.log), self.design_state())
        self.steps += 1
        return obs

    def design_state(self) -> tuple[DesignState, ...]:
        """The design's fields of every PMC in use: programmed (event select or fixed control
        enabled, or in the PMU's in-use bitmap) or holding a non-zero field."""
        out = []
        for pmc in self.kvm.valid_pmcs():
            fields = (pmc.counter, pmc.emulated_counter, pmc.prev_counter)
            programmed = self.kvm.pmc_speculative_in_use(pmc) or self.kvm.pmu.pmc_in_use >> pmc.idx & 1
            if programmed or any(fields) or pmc.extra:
                out.append(DesignState(pmc.idx, *fields, tuple(sorted(pmc.extra.items()))))
        return tuple(out)

    # --- x86.c: entering the guest -------------------------------------------------------

    def vcpu_enter_guest(self) -> None:
        """Mirrors the request part of vcpu_enter_guest() (x86.c), spec §2.13."""
        k = self.kvm
        for _ in range(_MAX_ENTRY_PASSES):
            for name in self.era.request_order:
                bit = _REQ_BIT[name]
                if not k.requests & bit:
                    continue
                k.requests &= ~bit
                req = f"KVM_REQ_{name.upper()}"
                k.note("service", f"service {req}", req)
                if bit == REQ_PMU:
                    k.kvm_pmu_handle_event()
                elif bit == REQ_PMI:
                    k.kvm_pmu_deliver_pmi()
                else:
                    dropped = self.lapic.process_nmi()
                    if dropped:
                        k.note("pmi", f"{dropped} NMI(s) dropped: pending limit")
                    if self.lapic.nmi_pending:
                        k.requests |= REQ_EVENT
            if k.requests & REQ_EVENT:
                k.requests &= ~REQ_EVENT
                for what in self.lapic.inject():
                    k.note("pmi", f"PMI injected ({what}) before insn {self.insn + 1}")
                    self._pmis.append(self.insn)
            if k.requests & (REQ_PMU | REQ_PMI | REQ_NMI | REQ_EVENT):
                k.note("entry-cancelled", "entry cancelled: request pending")
                continue
            return

    def _wake_events(self) -> bool:
        """kvm_vcpu_has_events() for the PMU: KVM_REQ_PMI (v6.6+) and pending NMIs/IRQs."""
        return bool(self.kvm.requests & (REQ_PMI | REQ_NMI)) or self.lapic.has_events()

    def _resume(self) -> None:
        """After host/userspace work: a running vCPU re-enters; a halted one only on a wake event."""
        if self.halted:
            if not self._wake_events():
                return
            self.halted = False
            self.kvm.note("pmi", "vCPU woken by a pending PMI")
        self.vcpu_enter_guest()

    def _wake_for_guest(self) -> None:
        if self.halted:
            self.halted = False
            self.kvm.note("vcpu", "vCPU woken")
            self.vcpu_enter_guest()

    # --- host PMI ---------------------------------------------------------------------

    def _pmcs_with_pending(self) -> list[KvmPmc]:
        return [p for p in self.kvm.valid_pmcs() if p.perf_event is not None and p.perf_event.overflow_pending]

    def land_host_pmi(self, nmi_exit: bool) -> None:
        """The host PMI (an NMI) is handled: perf re-arms each overflowed event and calls
        kvm_perf_overflow() for it (x86 PMI handler order: increasing counter index)."""
        pending = self._pmcs_with_pending()
        if not pending:
            return
        k = self.kvm
        k.note("pmi", "host PMI lands" + (" (NMI VM-exit)" if nmi_exit else " (host context)"))
        k.handling_nmi_from_guest = nmi_exit
        for pmc in pending:
            ev = pmc.perf_event
            if ev is not None and ev.land_pmi():
                k.kvm_perf_overflow(pmc)
        k.handling_nmi_from_guest = False
        self.pmi_age = 0

    def _nmi_exit(self) -> None:
        """The in-flight host PMI interrupts the guest: an NMI VM-exit (vmx_vcpu_enter_exit /
        svm_vcpu_run handle it before any exit handler), then vcpu_enter_guest()."""
        self.land_host_pmi(nmi_exit=True)
        self.vcpu_enter_guest()

    def _bound_skid(self) -> None:
        """Bounded skid (`WorldOptions.skid`): a guest step starts while a host PMI is in
        flight; once `skid` guest steps have started since it was raised, it lands before
        this one executes any instruction."""
        if not self.pmi_in_flight:
            return
        if self.pmi_age >= self.options.skid:
            self.kvm.note("pmi", f"held host PMI reaches the skid bound ({self.options.skid} steps)")
            self._nmi_exit()
        else:
            self.pmi_age += 1

    def _wrap_bound(self, pos: int, branches: int) -> int | None:
        """Instructions a held run may still retire before an in-flight host PMI must land: a
        held PMI never spans a second wrap of its counter (real skid is far below one
        counter period, >= 2^31 events). 0: land now; None: no bound."""
        bound: int | None = None
        for pmc in self._pmcs_with_pending():
            ev = pmc.perf_event
            kind = event_kind(self.cfg.vendor, ev.event, fixed=pmc.idx >= FIXED_BASE) if ev is not None else None
            if ev is None or kind is None or per_step(kind, ev.config) or not ev.counts_at(self.kvm.cpl):
                continue
            mask = self.kvm.pmc_bitmask(pmc)
            left = mask + 1 - (self.kvm.pmc_read_counter(pmc) & mask)  # events to the next wrap
            off = 0 if left <= 1 else _offset(kind, left - 1, pos, branches)
            if off is not None and (bound is None or off < bound):
                bound = off
        return bound

    # --- retirement ------------------------------------------------------------------

    def kvm_skip_emulated_instruction(self, branch: bool = False) -> None:
        """Mirrors the PMU part of kvm_skip_emulated_instruction() / x86_emulate_instruction()
        (x86.c), spec §2.12: retire, then count the emulated instruction (and branch)."""
        self.insn += 1
        self.kvm.insn = self.insn
        self.kvm.kvm_pmu_trigger_event("instructions")
        if branch:
            self.kvm.kvm_pmu_trigger_event("branches")

    # --- instruction effects ------------------------------------------------------------

    def _effect(self, item: A.EmulatedItem | A.Cpuid | A.Hlt, emulated: bool = False) -> bool:
        """Run one intercepted/emulated instruction's effect; True if it completed. An RDPMC
        that KVM's emulator runs first passes the emulator's check_rdpmc()."""
        k = self.kvm
        if isinstance(item, A.Wrmsr):
            ok = item.cpl == 0 and kvm_set_msr_common(k, item.msr, item.value, False)
            self._results.append(Result(None, not ok))
            return ok
        if isinstance(item, A.Rdmsr):
            value = kvm_get_msr_common(k, item.msr, False) if item.cpl == 0 else None
            self._results.append(Result(value, value is None))
            return value is not None
        if isinstance(item, A.Rdpmc):
            value = None
            if not emulated or emulator_check_rdpmc(k, item.ecx, item.cpl, item.pce,
                                                    self.options.enable_vmware_backdoor):
                value = kvm_pmu_rdpmc(k, item.ecx, item.cpl, item.pce)
            self._results.append(Result(value, value is None))
            return value is not None
        return True

    def _exit_handler(self, point: A.HostPmiPoint, handler: Callable[[], None]) -> None:
        """A VM-exit's handler with the in-flight host PMI landing before or after it: the
        host NMI is taken in host context, around KVM's exit handler (spec §4.3 item 4)."""
        if point == "before-handler":
            self.land_host_pmi(nmi_exit=False)
        handler()
        if point == "after-handler":
            self.land_host_pmi(nmi_exit=False)

    def _intercepted(self, action: A.Wrmsr | A.Rdmsr | A.Rdpmc | A.Cpuid | A.Hlt) -> None:
        """An intercepted instruction's VM-exit: the exit handler (handle_wrmsr, handle_rdmsr,
        handle_rdpmc, handle_cpuid, handle_halt in vmx.c / x86.c) takes effect and ends in
        kvm_skip_emulated_instruction(); then vcpu_enter_guest() (spec §2.12, §2.13)."""
        self._wake_for_guest()
        cpl = getattr(action, "cpl", 0)
        self.kvm.cpl = cpl
        if isinstance(action, A.Wrmsr | A.Rdmsr) and cpl != 0:
            self._results.append(Result(None, True))  # #GP in hardware, no VM-exit
            return
        if isinstance(action, A.Rdpmc) and hardware_rdpmc_faults(self.kvm, action.ecx, cpl, action.pce):
            if not self.options.enable_vmware_backdoor:
                self._results.append(Result(None, True))  # #GP in hardware, no VM-exit
                return
            # handle_exception(#GP) -> kvm_emulate_instruction(EMULTYPE_VMWARE_GP)
            self.kvm.note("vcpu", "VM-exit: #GP intercepted (VMware backdoor), RDPMC emulated")
            self._exit_handler(action.host_pmi, partial(self._emulate_item, action))
            self.vcpu_enter_guest()
            return
        self.kvm.note("vcpu", f"VM-exit: {action.KIND}")

        def handler() -> None:
            if self._effect(action):
                self.kvm_skip_emulated_instruction()

        self._exit_handler(action.host_pmi, handler)
        if isinstance(action, A.Hlt):
            self.halted = True
            self.kvm.note("vcpu", "vCPU halted")
            self._resume()
            return
        self.vcpu_enter_guest()

    def _emulate_item(self, item: A.EmulatedItem) -> None:
        """x86_emulate_instruction() of one item: its effect, then the emulator's retirement
        (kvm_skip_emulated_instruction semantics, incl. branches retired; spec §2.12)."""
        cpl = item.cpl
        self.kvm.cpl = cpl
        if self._effect(item, emulated=True):
            self.kvm_skip_emulated_instruction(branch=self._is_branch(item))

    def _is_branch(self, item: A.EmulatedItem) -> bool:
        """The opcode's IsBranch flag (emulate.c, via ctxt->is_branch): a named instruction by
        the era's table (vpmu.insns), else the item's own `branch`."""
        if not isinstance(item, A.Insn):
            return False
        if item.name:
            return retires_as_branch(item.name, enter_leave_are_branches=self.era.enter_leave_are_branches)
        return item.branch

    def _emulate(self, action: A.Emulate) -> None:
        """Forced emulation (KVM_FEP): each item is its own #UD VM-exit, handle_ud() ->
        kvm_emulate_instruction(), then vcpu_enter_guest() processes the requests."""
        for item in action.items:
            self._wake_for_guest()
            if not self.options.force_emulation_prefix:
                # handle_ud(): without force_emulation_prefix the prefix is a plain UD2
                self.kvm.note("vcpu", f"VM-exit: #UD (no force_emulation_prefix), {item.KIND} not emulated")
                self._exit_handler(getattr(item, "host_pmi", "before-handler"), partial(self._undefined, item))
                self.vcpu_enter_guest()
                continue
            self.kvm.note("vcpu", f"VM-exit: emulate {item.KIND}")
            self._exit_handler(getattr(item, "host_pmi", "before-handler"), partial(self._emulate_item, item))
            self.vcpu_enter_guest()

    def _undefined(self, item: A.EmulatedItem) -> None:
        """The #UD KVM queues for the guest: the item has no effect and does not retire."""
        if not isinstance(item, A.Insn):
            self._results.append(Result(None, True))

    def handle_invalid_guest_state(self, action: A.Batch) -> None:
        """Mirrors handle_invalid_guest_state() (vmx.c), spec §2.13: all items emulated in one
        exit; KVM_REQ_PMU is not checked inside the loop."""
        self._wake_for_guest()
        self.kvm.note("vcpu", f"VM-exit: invalid guest state, {len(action.items)} emulated")
        point: A.HostPmiPoint = getattr(action.items[0], "host_pmi", "before-handler") if action.items else (
            "before-handler")

        def handler() -> None:
            for item in action.items:
                self._emulate_item(item)

        self._exit_handler(point, handler)
        self.vcpu_enter_guest()

    # --- native execution ------------------------------------------------------------

    def _native(self, action: A.Native) -> None:
        """Native guest execution, advanced arithmetically from one overflow point to the next;
        the design's backing says what counts and whether an overflow exits at once."""
        self._wake_for_guest()
        if not action.hold_pmi and self.pmi_in_flight:
            # a host PMI held by an earlier run's skid interrupts this run before its first insn
            self._nmi_exit()
        k, backing = self.kvm, self.design.backing
        totals = action.totals()
        count, branches = totals["instructions"], totals["branches"]
        k.cpl = action.cpl
        pos = 0
        while pos < count:
            bound = self._wrap_bound(pos, branches)
            if bound == 0:
                self.kvm.note("pmi", "held host PMI lands before its counter wraps again")
                self._nmi_exit()
                continue
            sources = [s for s in backing.native_sources(k) if not per_step(s[0], s[3])]
            step = count - pos if bound is None else min(count - pos, bound)
            for kind, need, _, _ in sources:
                off = _offset(kind, need, pos, branches)
                if off is not None and off < step:
                    step = off
            hit = False
            for kind, _, pmc, _ in sources:
                n = _events(kind, pos, step, branches)
                if n > 0:
                    hit |= backing.count_native(k, pmc, n)
            pos += step
            self.insn += step
            k.insn = self.insn
            if hit and backing.native_pmi_exits(k, action.hold_pmi):
                self._nmi_exit()
        self._native_step_events(action, totals)

    def _native_step_events(self, action: A.Native, totals: dict[EventKind, int]) -> None:
        """The run's per-step events, all at its last instruction boundary: what each counting
        PMC with such an event (or a CMASK/EDGE condition) counts, in pieces no larger than
        what is left until it interrupts; a held PMI of the counter lands before it would
        wrap a second time (as in `_wrap_bound`)."""
        k, backing = self.kvm, self.design.backing
        todo = [(pmc.idx, step_count(totals[kind], config, action.cycles))
                for kind, _, pmc, config in backing.native_sources(k) if per_step(kind, config)]
        for idx, left in todo:
            while left > 0:
                src = next((s for s in backing.native_sources(k) if s[2].idx == idx), None)
                if src is None:
                    break
                _, need, pmc, _ = src
                if need > 0:
                    n = min(left, need)
                else:
                    ev = pmc.perf_event
                    mask = k.pmc_bitmask(pmc)
                    cap = mask - (k.pmc_read_counter(pmc) & mask)  # events before the next wrap
                    if ev is not None and ev.overflow_pending and cap < left:
                        if cap == 0:
                            k.note("pmi", "held host PMI lands before its counter wraps again")
                            self._nmi_exit()
                            if not (pmc.perf_event is not None and pmc.perf_event.overflow_pending):
                                continue
                            cap = left
                        n = cap
                    else:
                        n = left
                left -= n
                if backing.count_native(k, pmc, n) and backing.native_pmi_exits(k, action.hold_pmi):
                    self._nmi_exit()

    # --- host and userspace actions ------------------------------------------------------

    def _host_pmi(self) -> None:
        """The host's choice of when the in-flight PMI lands: an NMI VM-exit (in host context
        if the vCPU is halted), then x86_pmu_handle_irq() -> kvm_perf_overflow()."""
        self.land_host_pmi(nmi_exit=not self.halted)
        self._resume()

    def _perf_fail(self, action: A.PerfFail) -> None:
        """Host choice: perf_event_create_kernel_counter() fails from now on (or not), as when
        the host's counters are taken (spec R3/R4)."""
        self.host.fail = action.on
        self.kvm.note("host", f"perf creation {'fails' if action.on else 'succeeds'} from now on")

    def _kick_to_userspace(self) -> None:
        """A userspace action needs the vCPU out of KVM_RUN: the kick is a VM-exit, so a host
        PMI still in flight lands first (in host context)."""
        self.land_host_pmi(nmi_exit=False)

    def _set_filter(self, action: A.SetFilter) -> None:
        """Userspace KVM_SET_PMU_EVENT_FILTER: the ioctl's validation, then
        kvm_vm_ioctl_set_pmu_event_filter() (pmu.c, spec §2.14)."""
        self._kick_to_userspace()
        try:
            flt = action.to_filter(self.cfg.vendor)
        except VpmuError as err:
            self.kvm.note("host", f"KVM_SET_PMU_EVENT_FILTER failed: {err}")
            self._results.append(Result(None, True))
            self._resume()
            return
        self._results.append(Result(None, False))
        self.kvm.kvm_vm_ioctl_set_pmu_event_filter(flt)
        self._resume()

    def _clear_filter(self) -> None:
        """KVM_SET_PMU_EVENT_FILTER removing the filter (kvm_vm_ioctl_set_pmu_event_filter)."""
        self._kick_to_userspace()
        self.kvm.kvm_vm_ioctl_set_pmu_event_filter(None)
        self._resume()

    def _set_cpuid(self, action: A.SetCpuid) -> None:
        """Userspace KVM_SET_CPUID2: kvm_set_cpuid() (cpuid.c). After the first KVM_RUN only
        identical CPUID is accepted (kvm_cpuid_check_equal, -EINVAL); before it the new CPUID
        takes effect and kvm_vcpu_after_set_cpuid() refreshes the vPMU."""
        self._kick_to_userspace()
        k = self.kvm
        new = action.apply(self.cfg)
        if k.has_run:
            ok = new == self.cfg
            k.note("host", "KVM_SET_CPUID2 after KVM_RUN: " + ("identical, accepted" if ok else "-EINVAL"))
        else:
            ok = True
            self.cfg = k.cfg = new
            k.note("host", "KVM_SET_CPUID2: vPMU refreshed")
            k.kvm_pmu_refresh()
        self._results.append(Result(None, not ok))
        self._resume()

    def _host_wrmsr(self, action: A.HostWrmsr) -> None:
        """KVM_SET_MSRS of one MSR: kvm_set_msr_common() with host_initiated (x86.c)."""
        self._kick_to_userspace()
        ok = kvm_set_msr_common(self.kvm, action.msr, action.value, True)
        self._results.append(Result(None, not ok))
        self._resume()

    def _host_rdmsr(self, action: A.HostRdmsr) -> None:
        """KVM_GET_MSRS of one MSR: kvm_get_msr_common() with host_initiated (x86.c)."""
        self._kick_to_userspace()
        value = kvm_get_msr_common(self.kvm, action.msr, True)
        self._results.append(Result(value, value is None))
        self._resume()

    def _save_restore(self) -> None:
        """A VMM's save/restore: KVM_GET_MSRS of the PMU MSRs KVM_GET_MSR_INDEX_LIST reports,
        then KVM_SET_MSRS of the same values (kvm_get_msr_common / kvm_set_msr_common)."""
        self._kick_to_userspace()
        k = self.kvm
        saved = [(m, kvm_get_msr_common(k, m, True)) for m in save_restore_msrs(k)]
        k.note("host", f"save/restore {len(saved)} MSRs")
        for msr, value in saved:
            if value is not None and not kvm_set_msr_common(k, msr, value, True):
                k.note("host", f"restore of {msr:#x} failed")
        self._resume()


def _events(kind: EventKind, start: int, length: int, branches: int) -> int:
    """Events of `kind` among run instructions start+1 .. start+length (branches come first)."""
    if kind == "instructions":
        return length
    return max(0, min(branches, start + length) - min(branches, start))


def _offset(kind: EventKind, need: int, pos: int, branches: int) -> int | None:
    """Instructions after `pos` until `need` more events of `kind` have happened (None: never)."""
    if need <= 0:
        return None
    if kind == "instructions":
        return need
    done = min(branches, pos)
    if done + need > branches:
        return None
    return done + need - pos


__all__ = ["World", "WorldOptions"]
