"""Both machines of an explored configuration as one flat tuple of ints, and a pure step.

The compact kernel's model (docs/performance.md "The compact kernel"): for the counters in
use, the reference's and KVM's state as ints — per counter KVM's design fields (counter,
prev_counter, emulated_counter), the event select's enable bit, the host perf event (sample
period, count, enabled, period_left, armed), the paused flag, and the reference's value; then
both machines' GLOBAL_STATUS and LVTPC mask bits. Everything else the object models hold is
constant between steps in the covered configurations (`encode` checks each such fact and
refuses a state that breaks one): one perf event per counter with the guest's config, no
request, reprogram bit, queued NMI or in-flight host PMI left over from a step.

`Kernel.step(state, letter)` mirrors `vpmu.world.World.step` and
`vpmu.reference.ReferenceMachine.step` for the covered letters (each helper names the object
method it follows); the object models stay the oracle: tests/test_compact.py compares the
two on every transition of bounded spaces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vpmu import msrs
from vpmu.actions import (
    Action,
    Batch,
    ClearFilter,
    Cpuid,
    Emulate,
    HostPmi,
    Insn,
    Native,
    Rdmsr,
    Rdpmc,
    SaveRestore,
    SetFilter,
    Wrmsr,
)
from vpmu.config import FIXED_BASE, PmuConfig
from vpmu.designs import FastForm
from vpmu.eras import Era
from vpmu.events import ENCODINGS, EVENTSEL_ENABLE
from vpmu.host import max_period
from vpmu.lapic import LINUX_GUEST_LVTPC
from vpmu.pmc_map import counter_msr, eventsel_msr, rdpmc_ecx, status_clear_msr, status_msr
from vpmu.reference import ReferenceMachine
from vpmu.world import World

#: The KVM_SET_PMU_EVENT_FILTER the covered alphabet installs: deny the counted event (and the
#: fixed counters).
DENY = SetFilter("deny", (ENCODINGS["intel"]["instructions"],), fixed_counter_bitmap=0b111)

#: Global slots: KVM's GLOBAL_STATUS and LVTPC mask bit, the reference's GLOBAL_STATUS and
#: LVTPC mask bit, the deny filter installed (both machines), KVM's pmc_in_use bitmap, which
#: PMCs not in use are marked paused (a reprogram of one does that), and the age of
#: an in-flight host PMI (World.pmi_age).
K_STATUS, K_MASKED, R_STATUS, R_MASKED, FILTER, IN_USE, UNUSED_PAUSED, AGE = range(8)
GLOBALS = 8
#: Per-counter slots (offsets from the counter's base): KVM's design fields, the event
#: select's enable bit (both machines), the perf event (sample period, count, enabled,
#: period_left, armed, overflow pending), KVM's paused flag, the reference's value.
C, P, E, EN, PERIOD, COUNT, ENABLED, LEFT, ARMED, PENDING, PAUSED, REF = range(12)
STRIDE = 12

# Letter opcodes (`Kernel.letter`).
OP_NATIVE, OP_EXIT, OP_HOSTPMI, OP_BATCH, OP_WRCTR, OP_RDPMC, OP_RDSTATUS, OP_CLEAR, OP_LVTPC, OP_TOGGLE, \
    OP_EMULATE, OP_SETFILTER, OP_CLEARFILTER, OP_SAVERESTORE = range(14)
#: Where an exit's in-flight host PMI lands: before or after KVM's handler.
BEFORE, AFTER = 0, 1

REQ_PMU, REQ_PMI, REQ_NMI, REQ_EVENT = 1, 2, 4, 8
_REQ_BIT = {"pmu": REQ_PMU, "pmi": REQ_PMI, "nmi": REQ_NMI}

#: A step's observation, compact: (instructions retired, reference results, KVM results,
#: reference PMIs, KVM PMIs, reference signals, KVM signals); PMIs and signals carry the
#: instructions retired in the step before them, results are (value or None, fault).
Result_ = tuple[int | None, bool]
Signal_ = tuple[int, int, str]
StepObs = tuple[int, tuple[Result_, ...], tuple[Result_, ...], tuple[int, ...], tuple[int, ...],
                tuple[Signal_, ...], tuple[Signal_, ...]]
Letter = tuple[int, ...]


@dataclass(frozen=True)
class Kernel:
    """The step function for one configuration: `n` counters in use (PMC indices `idx`, GP
    first, then fixed; all of width mask `mask`) counting instructions at every CPL, on `era`
    with a design's fast form `fast`; `skid` bounds a held host PMI (WorldOptions.skid);
    `all_in_use` and `unused` are the index bits of every valid PMC and of those not in use.

    What the set-up programmed, per counter (KvmPmc fields, read from the object models after
    the set-up prefix): `sel_on` its eventsel (a GP counter's with the enable bit: the toggle
    letters clear and set it), `current` its current_config, `config` its perf event's config;
    `fixed_ctrl` is FIXED_CTR_CTRL."""

    cfg: PmuConfig
    era: Era
    fast: FastForm
    n: int
    mask: int
    hw_avail: tuple[bool, ...]
    sel_on: tuple[int, ...]
    skid: int
    all_in_use: int
    unused: int
    idx: tuple[int, ...]
    current: tuple[int, ...]
    config: tuple[int, ...]
    fixed_ctrl: int

    @property
    def gp(self) -> int:
        """GP counters in use (the first `gp` slots)."""
        return sum(1 for i in self.idx if i < FIXED_BASE)

    # --- letters -----------------------------------------------------------------------

    def letter(self, action: Action) -> Letter | None:
        """The opcode of a covered action (None: the kernel does not cover it)."""
        cfg = self.cfg
        match action:
            case Native() if (action.cpl == 0 and action.count > 0
                              and not any(v for e, v in action.totals().items() if e != "instructions")):
                return (OP_NATIVE, action.count, 1 if action.hold_pmi else 0)
            case Cpuid() if action.cpl == 0:
                return (OP_EXIT, _point(action.host_pmi))
            case HostPmi():
                return (OP_HOSTPMI,)
            case Emulate() if action.items and all(_plain(i) for i in action.items):
                return (OP_EMULATE, len(action.items))
            case Batch() if action.items and all(_plain(i) for i in action.items):
                return (OP_BATCH, len(action.items), 0)
            case Batch() if (len(action.items) > 1 and all(_plain(i) for i in action.items[:-1])
                             and action.items[-1] == Rdmsr(status_msr(cfg))):
                return (OP_BATCH, len(action.items) - 1, 1)
            case Rdmsr() if action.cpl == 0 and action.msr == status_msr(cfg):
                return (OP_RDSTATUS, _point(action.host_pmi))
            case Rdpmc() if action.cpl == 0 and action.ecx in [rdpmc_ecx(i) for i in self.idx]:
                return (OP_RDPMC, _point(action.host_pmi), [rdpmc_ecx(i) for i in self.idx].index(action.ecx))
            case Wrmsr() if action.cpl == 0:
                return self._wrmsr_letter(action)
            case SetFilter() if action == DENY:
                return (OP_SETFILTER,)
            case ClearFilter():
                return (OP_CLEARFILTER,)
            case SaveRestore():
                return (OP_SAVERESTORE,)
        return None

    def _wrmsr_letter(self, action: Wrmsr) -> Letter | None:
        cfg, v, at = self.cfg, action.value, _point(action.host_pmi)
        for j, i in enumerate(self.idx):
            if action.msr == counter_msr(cfg, i) and v <= self.mask and (
                    cfg.full_width_writes or i >= FIXED_BASE or v < 1 << 31):
                return (OP_WRCTR, at, j, v)
            if i < FIXED_BASE and action.msr == eventsel_msr(cfg, i) and v | EVENTSEL_ENABLE == self.sel_on[j]:
                return (OP_TOGGLE, at, j, 1 if v & EVENTSEL_ENABLE else 0)
        if action.msr == status_clear_msr(cfg) and not v & ~sum(1 << i for i in self.idx):
            return (OP_CLEAR, at, v)
        if action.msr == msrs.X2APIC_LVTPC and v == LINUX_GUEST_LVTPC:
            return (OP_LVTPC, at)
        return None

    # --- the state -----------------------------------------------------------------------

    def encode(self, ref: ReferenceMachine, world: World) -> tuple[int, ...] | None:
        """Both object machines as a compact state, or None when the state holds anything the
        compact form does not (then the kernel cannot continue from it)."""
        k, pmu, lapic, a = world.kvm, world.kvm.pmu, world.lapic, ref.pmu
        enable = sum(1 << i for i in self.idx)
        deny = DENY.to_filter(self.cfg.vendor)
        if (k.requests or pmu.reprogram_pmi or pmu.need_cleanup or pmu.fixed_ctr_ctrl != self.fixed_ctrl
                or pmu.global_ctrl != enable or k.filter not in (None, deny) or a.filter != k.filter
                or world.host.fail or world.halted or lapic.nmi_queued or lapic.nmi_pending or lapic.irr
                or lapic.lvtpc & ~msrs.LVTPC_MASKED != LINUX_GUEST_LVTPC or not lapic.in_kernel
                or pmu.event_count != self.n or a.global_ctrl != enable or a.fixed_ctrl != self.fixed_ctrl
                or a.lvtpc & ~msrs.LVTPC_MASKED != LINUX_GUEST_LVTPC):
            return None
        unused = [pmc for pmc in k.valid_pmcs() if pmc.idx not in self.idx]
        for pmc in unused:
            if (pmc.counter or pmc.prev_counter or pmc.emulated_counter or pmc.perf_event is not None
                    or pmc.extra or (pmc.idx < FIXED_BASE and pmc.eventsel)):
                return None
        if any(a.counters[i] for i in a.counters if i not in self.idx) or any(a.eventsel[self.gp:]):
            return None
        out = [pmu.global_status, 1 if lapic.lvtpc & msrs.LVTPC_MASKED else 0,
               a.global_status, 1 if a.lvtpc & msrs.LVTPC_MASKED else 0, 0 if k.filter is None else 1,
               pmu.pmc_in_use, sum(1 << pmc.idx for pmc in unused if pmc.is_paused), world.pmi_age]
        for j, i in enumerate(self.idx):
            c = k.pmc(i)
            ev = c.perf_event if c is not None else None
            gp = i < FIXED_BASE
            if (c is None or ev is None or c.extra or not c.intr or c.eventsel_hw
                    or (c.eventsel | EVENTSEL_ENABLE if gp else c.eventsel) != self.sel_on[j]
                    or c.current_config != self.current[j] or ev.config != self.config[j]
                    or ev.exclude_user or ev.exclude_kernel or (gp and a.eventsel[i] != c.eventsel)):
                return None
            out += [c.counter, c.prev_counter, c.emulated_counter, 1 if not gp or c.eventsel & EVENTSEL_ENABLE else 0,
                    ev.sample_period, ev.count, int(ev.enabled), ev.period_left, ev.armed, int(ev.overflow_pending),
                    int(c.is_paused), a.counters[i]]
        return tuple(out)

    # --- the step -------------------------------------------------------------------------

    def step(self, state: tuple[int, ...], letter: Letter) -> tuple[tuple[int, ...], StepObs]:
        """One letter on both machines (World.step, ReferenceMachine.step): the next state
        and the step's compact observation."""
        s = list(state)
        st = _Step(self, s)
        op = letter[0]
        if op == OP_HOSTPMI:  # World._host_pmi (the vCPU is never halted here)
            st.land(True)
            st.enter()
        elif op in (OP_SETFILTER, OP_CLEARFILTER, OP_SAVERESTORE):
            st.userspace(op)
        else:
            st.bound_skid()
            if op == OP_NATIVE:
                st.native(letter[1], letter[2])
                st.ref_retire(letter[1])
                st.t += letter[1]
            elif op == OP_EMULATE:
                for _ in range(letter[1]):
                    st.exit_handler(BEFORE, st.retire_both)
                    st.enter()
            elif op == OP_BATCH:
                st.exit_handler(BEFORE, lambda: st.batch(letter[1], letter[2]))
                st.enter()
            elif op == OP_EXIT:
                st.exit_handler(letter[1], st.retire_both)
                st.enter()
            else:
                st.exit_handler(letter[1], lambda: st.msr(letter))
                st.enter()
        if not st.in_flight():
            s[AGE] = 0
        obs = (st.t, tuple(st.rres), tuple(st.kres), tuple(st.rpmis), tuple(st.kpmis), tuple(st.rsigs),
               tuple(st.ksigs))
        return tuple(s), obs

    def counters(self, state: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The guest-visible values of the counters in use: reference, KVM."""
        ref, kvm = [], []
        for j in range(self.n):
            b = GLOBALS + STRIDE * j
            live = state[b + COUNT] if not state[b + PAUSED] else 0
            ref.append(state[b + REF])
            kvm.append(self.fast.read((state[b + C], state[b + P], state[b + E]), live, self.mask))
        return tuple(ref), tuple(kvm)


def _point(host_pmi: str) -> int:
    return AFTER if host_pmi == "after-handler" else BEFORE


def _plain(item: object) -> bool:
    """An emulated instruction the kernel covers: a plain non-branch instruction at CPL 0."""
    return isinstance(item, Insn) and not item.branch and not item.name and item.cpl == 0


#: The reprogram bit that stands for every PMC not in use (a filter change marks them all).
_OTHERS = 1 << 62


class _Step:
    """The mutable work of one `Kernel.step` (the state list and what the step shows)."""

    __slots__ = ("k", "s", "t", "req", "nmi_queued", "nmi_pending", "rres", "kres", "rpmis", "kpmis",
                 "rsigs", "ksigs", "reprogram")

    def __init__(self, k: Kernel, s: list[int]) -> None:
        self.k, self.s = k, s
        self.t = 0
        self.req = self.nmi_queued = self.nmi_pending = self.reprogram = 0
        self.rres: list[Result_] = []
        self.kres: list[Result_] = []
        self.rpmis: list[int] = []
        self.kpmis: list[int] = []
        self.rsigs: list[Signal_] = []
        self.ksigs: list[Signal_] = []

    # -- KVM: perf event (vpmu.host.PerfEvent)

    def set_period(self, b: int) -> None:
        """PerfEvent._set_period (x86_perf_event_set_period)."""
        s = self.s
        period, left = s[b + PERIOD], s[b + LEFT]
        if left <= -period:
            left = period
        elif left <= 0:
            left += period
        s[b + LEFT] = left
        s[b + ARMED] = min(max(left, 2), _MAX_PERIOD)

    def note_silent(self, j: int, b: int) -> None:
        """KvmVcpu._note_silent_period: a period elapsed under perf's minimum of 2."""
        s = self.s
        if s[b + ENABLED] and s[b + PERIOD] > 0 and not s[b + PENDING] and s[b + LEFT] <= 0:
            self.ksigs.append((self.k.idx[j], self.t, "min-period"))

    def sample_period(self, value: int) -> int:
        """KvmVcpu.get_sample_period."""
        period = (-value) & self.k.mask
        return period if period else self.k.mask + 1

    def live(self, b: int) -> int:
        return self.s[b + COUNT] if not self.s[b + PAUSED] else 0

    def fields(self, b: int) -> tuple[int, int, int]:
        s = self.s
        return (s[b + C], s[b + P], s[b + E])

    def put(self, b: int, f: tuple[int, int, int]) -> None:
        s = self.s
        s[b + C], s[b + P], s[b + E] = f

    def in_flight(self) -> bool:
        """World.pmi_in_flight."""
        s = self.s
        return any(s[GLOBALS + STRIDE * j + PENDING] for j in range(self.k.n))

    # -- KVM: pmu.c

    def read(self, b: int) -> int:
        """KvmVcpu.pmc_read_counter via the design's fast form."""
        return self.k.fast.read(self.fields(b), self.live(b), self.k.mask)

    def write_counter(self, j: int, value: int) -> None:
        """KvmVcpu.pmc_write_counter: the design's write, then pmc_update_sample_period."""
        k, s, b = self.k, self.s, GLOBALS + STRIDE * j
        self.put(b, k.fast.write(self.fields(b), value, self.live(b), k.mask, k.era.mask_counter_writes))
        if s[b + PAUSED] or s[b + PERIOD] == 0:
            return
        self.note_silent(j, b)
        s[b + PERIOD] = self.sample_period(s[b + C])
        s[b + LEFT] = s[b + PENDING] = 0
        if s[b + ENABLED]:
            self.set_period(b)

    def request_reprogram(self, j: int) -> None:
        """kvm_pmu_request_counter_reprogram."""
        self.reprogram |= 1 << j
        self.req |= REQ_PMU

    def overflow_inner(self, j: int, in_pmi: bool, in_nmi: bool) -> None:
        """KvmVcpu.kvm_perf_overflow_inner (__kvm_perf_overflow)."""
        self.s[K_STATUS] |= 1 << self.k.idx[j]
        self.ksigs.append((self.k.idx[j], self.t, "hw" if in_pmi else "emulated"))
        if self.k.era.pmi_via_irq_work and in_pmi and not in_nmi:
            self.deliver_pmi()
        else:
            self.req |= REQ_PMI

    def perf_overflow(self, j: int, in_nmi: bool) -> None:
        """KvmVcpu.kvm_perf_overflow."""
        if self.reprogram >> j & 1:
            self.ksigs.append((self.k.idx[j], self.t, "ignored"))
            return
        self.reprogram |= 1 << j
        self.overflow_inner(j, True, in_nmi)
        self.req |= REQ_PMU

    def allowed(self, j: int, b: int) -> bool:
        """KvmVcpu.pmc_event_is_allowed for a counter in use."""
        return bool(self.s[b + EN] and self.k.hw_avail[j] and not self.s[FILTER])

    def reprogram_counter(self, j: int) -> None:
        """KvmVcpu.reprogram_counter (the perf event exists and keeps its config)."""
        k, s, b = self.k, self.s, GLOBALS + STRIDE * j
        live = 0
        if not s[b + PAUSED]:  # perf_pause
            self.note_silent(j, b)
            live = s[b + COUNT]
            s[b + ENABLED] = s[b + ARMED] = s[b + COUNT] = s[b + PENDING] = 0
        f, wrapped = k.fast.pause(self.fields(b), live, k.mask)
        self.put(b, f)
        s[b + PAUSED] = 1
        if not self.allowed(j, b):
            if wrapped:
                self.ksigs.append((self.k.idx[j], self.t, "disallowed"))
            self.complete(j, b)
            return
        if wrapped:
            self.overflow_inner(j, False, False)
        # pmc_resume_counter: perf_event_period, then perf_event_enable
        s[b + PERIOD] = self.sample_period(s[b + C])
        s[b + LEFT] = 0
        s[b + ENABLED] = 1
        self.set_period(b)
        s[b + PAUSED] = 0
        self.complete(j, b)

    def complete(self, j: int, b: int) -> None:
        """KvmVcpu.reprogram_complete."""
        if not self.k.era.snapshot_reprogram_bitmap:
            self.reprogram &= ~(1 << j)
        self.put(b, self.k.fast.complete(self.fields(b)))

    def handle_event(self) -> None:
        """KvmVcpu.kvm_pmu_handle_event; the PMCs not in use (reprogrammed only by a filter
        change) have no perf event: reprogramming one just marks it paused."""
        k = self.k
        if k.era.snapshot_reprogram_bitmap:
            todo = self.reprogram
            self.reprogram = 0
        else:
            todo = self.reprogram
        for j in range(k.n):
            if todo >> j & 1 and (k.era.snapshot_reprogram_bitmap or self.reprogram >> j & 1):
                self.reprogram_counter(j)
        if todo & _OTHERS:
            self.reprogram &= ~_OTHERS
            self.s[UNUSED_PAUSED] = k.unused

    def deliver_pmi(self) -> None:
        """KvmVcpu.kvm_pmu_deliver_pmi -> Lapic.local_deliver_lvtpc (NMI mode)."""
        s = self.s
        if s[K_MASKED]:
            return
        self.nmi_queued += 1
        if self.k.era.auto_mask_lvtpc(self.k.cfg.vendor):
            s[K_MASKED] = 1
        self.req |= REQ_NMI

    def enter(self) -> None:
        """World.vcpu_enter_guest: requests in the era's order, then NMI injection."""
        if not self.req:
            return
        order = [_REQ_BIT[name] for name in self.k.era.request_order]
        for _ in range(8):
            for bit in order:
                if not self.req & bit:
                    continue
                self.req &= ~bit
                if bit == REQ_PMU:
                    self.handle_event()
                elif bit == REQ_PMI:
                    self.deliver_pmi()
                else:
                    total = self.nmi_pending + self.nmi_queued
                    self.nmi_queued = 0
                    self.nmi_pending = min(total, 2)
                    if self.nmi_pending:
                        self.req |= REQ_EVENT
            if self.req & REQ_EVENT:
                self.req &= ~REQ_EVENT
                self.kpmis.extend([self.t] * self.nmi_pending)
                self.nmi_pending = 0
            if not self.req:
                return

    # -- host PMIs (World.land_host_pmi, _nmi_exit, _bound_skid, _exit_handler)

    def land(self, in_nmi: bool) -> None:
        """World.land_host_pmi: each pending event re-arms, then kvm_perf_overflow."""
        s = self.s
        if not self.in_flight():
            return
        landed = False
        for j in range(self.k.n):
            b = GLOBALS + STRIDE * j
            if s[b + PENDING]:
                s[b + PENDING] = 0
                self.set_period(b)
                self.perf_overflow(j, in_nmi)
                landed = True
        if landed:
            s[AGE] = 0

    def nmi_exit(self) -> None:
        """World._nmi_exit."""
        self.land(True)
        self.enter()

    def bound_skid(self) -> None:
        """World._bound_skid: a guest step starts while a host PMI is in flight."""
        if not self.in_flight():
            return
        if self.s[AGE] >= self.k.skid:
            self.nmi_exit()
        else:
            self.s[AGE] += 1

    def exit_handler(self, point: int, handler: Callable[[], None]) -> None:
        """World._exit_handler: the in-flight host PMI lands before or after the handler."""
        if point == BEFORE:
            self.land(False)
        handler()
        if point == AFTER:
            self.land(False)

    # -- guest instructions

    def kvm_retire(self) -> None:
        """World.kvm_skip_emulated_instruction: kvm_pmu_trigger_event(instructions)."""
        k = self.k
        for j in range(k.n):
            b = GLOBALS + STRIDE * j
            if self.allowed(j, b):
                self.put(b, k.fast.incr(self.fields(b), k.mask))
                self.request_reprogram(j)

    def native(self, count: int, hold: int) -> None:
        """World._native for a run of instructions: perf counts up to each interrupt; a real
        overflow lands at once as an NMI VM-exit, or with `hold` stays in flight (bounded by
        the counter's next wrap, World._wrap_bound)."""
        k, s = self.k, self.s
        if not hold and self.in_flight():
            self.nmi_exit()
        pos = 0
        t0 = self.t
        while pos < count:
            step = count - pos
            if hold:
                bound = None
                for j in range(k.n):
                    b = GLOBALS + STRIDE * j
                    if s[b + PENDING] and s[b + ENABLED]:
                        left = k.mask + 1 - (self.read(b) & k.mask)
                        off = 0 if left <= 1 else left - 1
                        bound = off if bound is None else min(bound, off)
                if bound == 0:
                    self.nmi_exit()
                    continue
                if bound is not None:
                    step = min(step, bound)
            sources = [GLOBALS + STRIDE * j for j in range(k.n) if s[GLOBALS + STRIDE * j + ENABLED]]
            for b in sources:
                if not s[b + PENDING] and 0 < s[b + ARMED] < step:
                    step = s[b + ARMED]
            hit = False
            for b in sources:  # PerfEvent.advance
                s[b + COUNT] += step
                s[b + LEFT] -= step
                if s[b + PENDING] or s[b + ARMED] == 0:
                    continue
                s[b + ARMED] -= step
                if s[b + ARMED] > 0:
                    continue
                if s[b + LEFT] <= 0:
                    s[b + PENDING] = 1
                    s[b + ARMED] = 0
                    hit = True
                else:
                    self.set_period(b)
            pos += step
            self.t = t0 + pos
            if hit and not hold:
                self.nmi_exit()
        self.t = t0

    def batch(self, count: int, read_status: int) -> None:
        """World.handle_invalid_guest_state's loop: `count` instructions, then maybe RDMSR
        GLOBAL_STATUS, all in one exit."""
        for _ in range(count):
            self.retire_both()
        if read_status:
            self.rres.append((self.s[R_STATUS], False))
            self.kres.append((self.s[K_STATUS], False))
            self.retire_both()

    def msr(self, letter: Letter) -> None:
        """The intercepted WRMSR/RDMSR/RDPMC's effect on both machines (kvm_set_msr_common /
        kvm_get_msr_common / kvm_pmu_rdpmc; ArchPmu.wrmsr / rdmsr / rdpmc), then retirement."""
        s, op = self.s, letter[0]
        if op == OP_WRCTR:
            j, v = letter[2], letter[3]
            self.write_counter(j, v)
            s[GLOBALS + STRIDE * j + REF] = v
            self.rres.append((None, False))
            self.kres.append((None, False))
        elif op == OP_RDPMC:
            b = GLOBALS + STRIDE * letter[2]
            self.rres.append((s[b + REF], False))
            self.kres.append((self.read(b), False))
        elif op == OP_RDSTATUS:
            self.rres.append((s[R_STATUS], False))
            self.kres.append((s[K_STATUS], False))
        elif op == OP_CLEAR:
            s[R_STATUS] &= ~letter[2]
            s[K_STATUS] &= ~letter[2]
            self.rres.append((None, False))
            self.kres.append((None, False))
        elif op == OP_LVTPC:
            s[R_MASKED] = s[K_MASKED] = 0
            self.rres.append((None, False))
            self.kres.append((None, False))
        else:  # OP_TOGGLE: intel_pmu_set_msr's event select write
            j, en = letter[2], letter[3]
            b = GLOBALS + STRIDE * j
            if s[b + EN] != en:
                s[b + EN] = en
                self.request_reprogram(j)
            self.rres.append((None, False))
            self.kres.append((None, False))
        self.retire_both()

    def userspace(self, op: int) -> None:
        """World._set_filter / _clear_filter / _save_restore: the kick out of KVM_RUN lands an
        in-flight host PMI, the ioctl, then re-entry (the reference: ReferenceMachine)."""
        s = self.s
        self.land(False)
        if op == OP_SAVERESTORE:
            # KVM_GET_MSRS then KVM_SET_MSRS of the same values: each counter is rewritten with
            # what it reads (pmc_write_counter), every PMC is marked in use
            values = [self.read(GLOBALS + STRIDE * j) & self.k.mask for j in range(self.k.n)]
            for j, v in enumerate(values):
                self.write_counter(j, v)
            s[IN_USE] |= self.k.all_in_use
        else:
            if op == OP_SETFILTER:
                self.rres.append((None, False))
                self.kres.append((None, False))
            s[FILTER] = 1 if op == OP_SETFILTER else 0
            self.reprogram |= _OTHERS | ((1 << self.k.n) - 1)
            self.req |= REQ_PMU
        self.enter()

    # -- the reference (vpmu.arch.ArchPmu.retire)

    def ref_retire(self, count: int) -> None:
        """ArchPmu.retire of `count` instructions at CPL 0: every wrap at its instruction, one
        PMI per group of counters wrapping on the same instruction (masked LVTPC: dropped)."""
        k, s = self.k, self.s
        if s[FILTER]:
            return
        if count == 1:  # the common case: one intercepted or emulated instruction
            wrapped = False
            for j in range(k.n):
                b = GLOBALS + STRIDE * j
                if s[b + EN]:
                    if s[b + REF] == k.mask:
                        s[b + REF] = 0
                        self.rsigs.append((k.idx[j], self.t + 1, "wrap"))
                        s[R_STATUS] |= 1 << k.idx[j]
                        wrapped = True
                    else:
                        s[b + REF] += 1
            if wrapped and not s[R_MASKED]:
                self.rpmis.append(self.t + 1)
                s[R_MASKED] = 1
            return
        period = k.mask + 1
        wraps: list[tuple[int, int]] = []
        for j in range(k.n):
            b = GLOBALS + STRIDE * j
            if not s[b + EN]:
                continue
            first = period - s[b + REF]
            wraps.extend((off, j) for off in range(first, count + 1, period))
            s[b + REF] = (s[b + REF] + count) & k.mask
        wraps.sort()
        last = -1
        for off, j in wraps:
            self.rsigs.append((k.idx[j], self.t + off, "wrap"))
            s[R_STATUS] |= 1 << k.idx[j]
            if off != last:
                last = off
                if not s[R_MASKED]:
                    self.rpmis.append(self.t + off)
                    s[R_MASKED] = 1

    def retire_both(self) -> None:
        """One intercepted or emulated instruction retires on both machines (its effect done)."""
        self.ref_retire(1)
        self.t += 1
        self.kvm_retire()


#: perf's max_period for the host's 48-bit counters.
_MAX_PERIOD = max_period()
