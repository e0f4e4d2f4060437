"""The work of one `Kernel.step`: both machines advanced on the state's list of ints.

Each method names the object-model method it mirrors (`vpmu.world.World`, `vpmu.kvm.KvmVcpu`,
`vpmu.host.PerfEvent`, `vpmu.arch.ArchPmu`); tests/test_compact.py holds them equal on every
transition of bounded spaces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vpmu.host import max_period

from .layout import (
    AFTER,
    AGE,
    ARMED,
    BEFORE,
    COUNT,
    EN,
    ENABLED,
    FILTER,
    GLOBALS,
    IN_USE,
    K_MASKED,
    K_STATUS,
    LEFT,
    OP_CLEAR,
    OP_LVTPC,
    OP_RDPMC,
    OP_RDSTATUS,
    OP_SAVERESTORE,
    OP_SETFILTER,
    OP_WRCTR,
    PAUSED,
    PENDING,
    PERIOD,
    R_MASKED,
    R_STATUS,
    REF,
    REQ_EVENT,
    REQ_NMI,
    REQ_PMI,
    REQ_PMU,
    STRIDE,
    UNUSED_PAUSED,
    C,
    E,
    Letter,
    P,
    Result_,
    Signal_,
)

if TYPE_CHECKING:
    from .machine import Kernel

_REQ_BIT = {"pmu": REQ_PMU, "pmi": REQ_PMI, "nmi": REQ_NMI}


#: The reprogram bit that stands for every PMC not in use (a filter change marks them all).
_OTHERS = 1 << 62


class Work:
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
