"""The work of one `Kernel.step` as functions over rows of ints: both machines advanced on
the state row `s`, with the step's scratch in `x`, the configuration's constants in `prm`
and what the step shows written into the observation row `obs` (layouts: .layout).

The same functions run as plain Python on lists (`Kernel.step`) and, compiled by numba, on
int64 arrays (`compiled_step`): no classes, closures, containers or strings inside, so that
the pure-Python kernel and the compiled one are one code. The design's fast form
(`vpmu.designs.FastForm`) comes in as the callables `incr`, `pause`, `read`, `write` and
`complete` (bound methods in Python, first-class compiled functions under numba).

Each function names the object-model method it mirrors (`vpmu.world.World`,
`vpmu.kvm.KvmVcpu`, `vpmu.host.PerfEvent`, `vpmu.arch.ArchPmu`); tests/test_compact.py holds
the Python step equal to the object models on every transition of bounded spaces, and
tests/test_compact_jit.py the compiled step equal to the Python one.

Compiled, the rows are int64: a value >= 2**63 in Python (a pre-6.6 unmasked counter write
keeps `counter & U64`) is that value - 2**64 in the compiled row, the same 64 bits
(`kjit.int64_row`). The fast forms' 64-bit constants are compiled as their int64 two's
complement, so `x & U64` is `x` there.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence, Sequence

from vpmu.designs import Fields
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
    MAX_PMIS,
    MAX_RES,
    MAX_SIGS,
    NONE,
    O_FULL,
    O_NKPMI,
    O_NKSIG,
    O_NRES,
    O_NRPMI,
    O_NRSIG,
    O_RES,
    O_T,
    OP_BATCH,
    OP_CLEAR,
    OP_CLEARFILTER,
    OP_EMULATE,
    OP_EXIT,
    OP_HOSTPMI,
    OP_LVTPC,
    OP_NATIVE,
    OP_RDPMC,
    OP_RDSTATUS,
    OP_SAVERESTORE,
    OP_SETFILTER,
    OP_WRCTR,
    P_ALL_IN_USE,
    P_AUTO_MASK,
    P_HW,
    P_IDX,
    P_IRQ_WORK,
    P_MASK,
    P_MASK_WRITES,
    P_N,
    P_ORDER,
    P_SKID,
    P_SNAPSHOT,
    P_STRIDE,
    P_UNUSED,
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
    SOURCES,
    STRIDE,
    UNUSED_PAUSED,
    X_NMI_PENDING,
    X_NMI_QUEUED,
    X_REPROGRAM,
    X_REQ,
    X_T,
    C,
    E,
    P,
)

#: A row of ints: a list in Python, an int64 array compiled.
Row = MutableSequence[int]
ConstRow = Sequence[int]
#: The fast form's callables (`FastForm.incr`, .pause, .read, .write, .complete).
Incr = Callable[[Fields, int], Fields]
Pause = Callable[[Fields, int, int], tuple[Fields, bool]]
Read = Callable[[Fields, int, int], int]
Write = Callable[[Fields, int, int, int, bool], Fields]
Complete = Callable[[Fields], Fields]

#: Signal sources, as indexes into SOURCES.
SRC_WRAP, SRC_HW, SRC_EMULATED, SRC_IGNORED, SRC_MIN_PERIOD, SRC_DISALLOWED = range(6)
assert SOURCES == ("wrap", "hw", "emulated", "ignored", "min-period", "disallowed")

#: The reprogram bit that stands for every PMC not in use (a filter change marks them all).
OTHERS = 1 << 62
#: perf's max_period for the host's 48-bit counters.
MAX_PERIOD = max_period()


# -- the observation row


def add_result(obs: Row, ref: int, kvm: int) -> None:
    """One result on both machines (NONE: a write's "no value"; results never fault here)."""
    n = obs[O_NRES]
    if n == MAX_RES:
        obs[O_FULL] = 1
        return
    obs[O_RES + 2 * n] = ref
    obs[O_RES + 2 * n + 1] = kvm
    obs[O_NRES] = n + 1


def add_pmi(obs: Row, at: int, t: int) -> None:
    """A PMI at `t` instructions into the step, in the section whose count is at `at`."""
    n = obs[at]
    if n == MAX_PMIS:
        obs[O_FULL] = 1
        return
    obs[at + 1 + n] = t
    obs[at] = n + 1


def add_signal(obs: Row, at: int, pmc: int, t: int, source: int) -> None:
    """A signal of PMC `pmc` at `t`, from SOURCES[source], in the section counted at `at`."""
    n = obs[at]
    if n == MAX_SIGS:
        obs[O_FULL] = 1
        return
    i = at + 1 + 3 * n
    obs[i] = pmc
    obs[i + 1] = t
    obs[i + 2] = source
    obs[at] = n + 1


# -- KVM: perf event (vpmu.host.PerfEvent)


def set_period(s: Row, b: int) -> None:
    """PerfEvent._set_period (x86_perf_event_set_period)."""
    period = s[b + PERIOD]
    left = s[b + LEFT]
    if left <= -period:
        left = period
    elif left <= 0:
        left += period
    s[b + LEFT] = left
    s[b + ARMED] = min(max(left, 2), MAX_PERIOD)


def note_silent(s: Row, x: Row, obs: Row, prm: ConstRow, j: int, b: int) -> None:
    """KvmVcpu._note_silent_period: a period elapsed under perf's minimum of 2."""
    if s[b + ENABLED] != 0 and s[b + PERIOD] > 0 and s[b + PENDING] == 0 and s[b + LEFT] <= 0:
        add_signal(obs, O_NKSIG, prm[P_IDX + P_STRIDE * j], x[X_T], SRC_MIN_PERIOD)


def sample_period(prm: ConstRow, value: int) -> int:
    """KvmVcpu.get_sample_period."""
    mask = prm[P_MASK]
    period = (-value) & mask
    return period if period != 0 else mask + 1


def live(s: ConstRow, b: int) -> int:
    """The perf event's count while it runs (0 when paused)."""
    return s[b + COUNT] if s[b + PAUSED] == 0 else 0


def fields(s: ConstRow, b: int) -> Fields:
    """The design's fields of the counter at `b`."""
    return (s[b + C], s[b + P], s[b + E])


def put(s: Row, b: int, f: Fields) -> None:
    """Store the design's fields of the counter at `b`."""
    s[b + C] = f[0]
    s[b + P] = f[1]
    s[b + E] = f[2]


def in_flight(s: ConstRow, prm: ConstRow) -> bool:
    """World.pmi_in_flight."""
    for j in range(prm[P_N]):  # noqa: SIM110 - a loop numba compiles
        if s[GLOBALS + STRIDE * j + PENDING] != 0:
            return True
    return False


# -- KVM: pmu.c


def pmc_read(s: ConstRow, prm: ConstRow, b: int, read: Read) -> int:
    """KvmVcpu.pmc_read_counter via the design's fast form."""
    return read(fields(s, b), live(s, b), prm[P_MASK])


def write_counter(s: Row, x: Row, obs: Row, prm: ConstRow, j: int, value: int, write: Write) -> None:
    """KvmVcpu.pmc_write_counter: the design's write, then pmc_update_sample_period."""
    b = GLOBALS + STRIDE * j
    put(s, b, write(fields(s, b), value, live(s, b), prm[P_MASK], prm[P_MASK_WRITES] != 0))
    if s[b + PAUSED] != 0 or s[b + PERIOD] == 0:
        return
    note_silent(s, x, obs, prm, j, b)
    s[b + PERIOD] = sample_period(prm, s[b + C])
    s[b + LEFT] = 0
    s[b + PENDING] = 0
    if s[b + ENABLED] != 0:
        set_period(s, b)


def request_reprogram(x: Row, j: int) -> None:
    """kvm_pmu_request_counter_reprogram."""
    x[X_REPROGRAM] |= 1 << j
    x[X_REQ] |= REQ_PMU


def overflow_inner(s: Row, x: Row, obs: Row, prm: ConstRow, j: int, in_pmi: bool, in_nmi: bool) -> None:
    """KvmVcpu.kvm_perf_overflow_inner (__kvm_perf_overflow)."""
    idx = prm[P_IDX + P_STRIDE * j]
    s[K_STATUS] |= 1 << idx
    add_signal(obs, O_NKSIG, idx, x[X_T], SRC_HW if in_pmi else SRC_EMULATED)
    if prm[P_IRQ_WORK] != 0 and in_pmi and not in_nmi:
        deliver_pmi(s, x, prm)
    else:
        x[X_REQ] |= REQ_PMI


def perf_overflow(s: Row, x: Row, obs: Row, prm: ConstRow, j: int, in_nmi: bool) -> None:
    """KvmVcpu.kvm_perf_overflow."""
    if x[X_REPROGRAM] >> j & 1:
        add_signal(obs, O_NKSIG, prm[P_IDX + P_STRIDE * j], x[X_T], SRC_IGNORED)
        return
    x[X_REPROGRAM] |= 1 << j
    overflow_inner(s, x, obs, prm, j, True, in_nmi)
    x[X_REQ] |= REQ_PMU


def allowed(s: ConstRow, prm: ConstRow, j: int, b: int) -> bool:
    """KvmVcpu.pmc_event_is_allowed for a counter in use."""
    return s[b + EN] != 0 and prm[P_HW + P_STRIDE * j] != 0 and s[FILTER] == 0


def reprogram_counter(s: Row, x: Row, obs: Row, prm: ConstRow, j: int, pause: Pause, complete: Complete) -> None:
    """KvmVcpu.reprogram_counter (the perf event exists and keeps its config)."""
    b = GLOBALS + STRIDE * j
    count = 0
    if s[b + PAUSED] == 0:  # perf_pause
        note_silent(s, x, obs, prm, j, b)
        count = s[b + COUNT]
        s[b + ENABLED] = 0
        s[b + ARMED] = 0
        s[b + COUNT] = 0
        s[b + PENDING] = 0
    f, wrapped = pause(fields(s, b), count, prm[P_MASK])
    put(s, b, f)
    s[b + PAUSED] = 1
    if not allowed(s, prm, j, b):
        if wrapped:
            add_signal(obs, O_NKSIG, prm[P_IDX + P_STRIDE * j], x[X_T], SRC_DISALLOWED)
        reprogram_complete(s, x, prm, j, b, complete)
        return
    if wrapped:
        overflow_inner(s, x, obs, prm, j, False, False)
    # pmc_resume_counter: perf_event_period, then perf_event_enable
    s[b + PERIOD] = sample_period(prm, s[b + C])
    s[b + LEFT] = 0
    s[b + ENABLED] = 1
    set_period(s, b)
    s[b + PAUSED] = 0
    reprogram_complete(s, x, prm, j, b, complete)


def reprogram_complete(s: Row, x: Row, prm: ConstRow, j: int, b: int, complete: Complete) -> None:
    """KvmVcpu.reprogram_complete."""
    if prm[P_SNAPSHOT] == 0:
        x[X_REPROGRAM] &= ~(1 << j)
    put(s, b, complete(fields(s, b)))


def handle_event(s: Row, x: Row, obs: Row, prm: ConstRow, pause: Pause, complete: Complete) -> None:
    """KvmVcpu.kvm_pmu_handle_event; the PMCs not in use (reprogrammed only by a filter
    change) have no perf event: reprogramming one just marks it paused."""
    snapshot = prm[P_SNAPSHOT] != 0
    todo = x[X_REPROGRAM]
    if snapshot:
        x[X_REPROGRAM] = 0
    for j in range(prm[P_N]):
        if todo >> j & 1 and (snapshot or x[X_REPROGRAM] >> j & 1):
            reprogram_counter(s, x, obs, prm, j, pause, complete)
    if todo & OTHERS:
        x[X_REPROGRAM] &= ~OTHERS
        s[UNUSED_PAUSED] = prm[P_UNUSED]


def deliver_pmi(s: Row, x: Row, prm: ConstRow) -> None:
    """KvmVcpu.kvm_pmu_deliver_pmi -> Lapic.local_deliver_lvtpc (NMI mode)."""
    if s[K_MASKED] != 0:
        return
    x[X_NMI_QUEUED] += 1
    if prm[P_AUTO_MASK] != 0:
        s[K_MASKED] = 1
    x[X_REQ] |= REQ_NMI


def enter(s: Row, x: Row, obs: Row, prm: ConstRow, pause: Pause, complete: Complete) -> None:
    """World.vcpu_enter_guest: requests in the era's order, then NMI injection."""
    if x[X_REQ] == 0:
        return
    for _ in range(8):
        for i in range(3):
            bit = prm[P_ORDER + i]
            if x[X_REQ] & bit == 0:
                continue
            x[X_REQ] &= ~bit
            if bit == REQ_PMU:
                handle_event(s, x, obs, prm, pause, complete)
            elif bit == REQ_PMI:
                deliver_pmi(s, x, prm)
            else:
                total = x[X_NMI_PENDING] + x[X_NMI_QUEUED]
                x[X_NMI_QUEUED] = 0
                x[X_NMI_PENDING] = min(total, 2)
                if x[X_NMI_PENDING] != 0:
                    x[X_REQ] |= REQ_EVENT
        if x[X_REQ] & REQ_EVENT:
            x[X_REQ] &= ~REQ_EVENT
            for _ in range(x[X_NMI_PENDING]):
                add_pmi(obs, O_NKPMI, x[X_T])
            x[X_NMI_PENDING] = 0
        if x[X_REQ] == 0:
            return


# -- host PMIs (World.land_host_pmi, _nmi_exit, _bound_skid, _exit_handler)


def land(s: Row, x: Row, obs: Row, prm: ConstRow, in_nmi: bool) -> None:
    """World.land_host_pmi: each pending event re-arms, then kvm_perf_overflow."""
    if not in_flight(s, prm):
        return
    landed = False
    for j in range(prm[P_N]):
        b = GLOBALS + STRIDE * j
        if s[b + PENDING] != 0:
            s[b + PENDING] = 0
            set_period(s, b)
            perf_overflow(s, x, obs, prm, j, in_nmi)
            landed = True
    if landed:
        s[AGE] = 0


def nmi_exit(s: Row, x: Row, obs: Row, prm: ConstRow, pause: Pause, complete: Complete) -> None:
    """World._nmi_exit."""
    land(s, x, obs, prm, True)
    enter(s, x, obs, prm, pause, complete)


def bound_skid(s: Row, x: Row, obs: Row, prm: ConstRow, pause: Pause, complete: Complete) -> None:
    """World._bound_skid: a guest step starts while a host PMI is in flight."""
    if not in_flight(s, prm):
        return
    if s[AGE] >= prm[P_SKID]:
        nmi_exit(s, x, obs, prm, pause, complete)
    else:
        s[AGE] += 1


def exit_handler(s: Row, x: Row, obs: Row, prm: ConstRow, letter: ConstRow, point: int, incr: Incr, read: Read,
                 write: Write) -> None:
    """World._exit_handler: the in-flight host PMI lands before or after the handler (the
    letter's: one emulated instruction, a batch or an intercepted MSR/RDPMC access)."""
    if point == BEFORE:
        land(s, x, obs, prm, False)
    op = letter[0]
    if op in (OP_EXIT, OP_EMULATE):
        retire_both(s, x, obs, prm, incr)
    elif op == OP_BATCH:
        batch(s, x, obs, prm, letter[1], letter[2], incr)
    else:
        msr(s, x, obs, prm, letter, incr, read, write)
    if point == AFTER:
        land(s, x, obs, prm, False)


# -- guest instructions


def kvm_retire(s: Row, x: Row, prm: ConstRow, incr: Incr) -> None:
    """World.kvm_skip_emulated_instruction: kvm_pmu_trigger_event(instructions)."""
    for j in range(prm[P_N]):
        b = GLOBALS + STRIDE * j
        if allowed(s, prm, j, b):
            put(s, b, incr(fields(s, b), prm[P_MASK]))
            request_reprogram(x, j)


def native(s: Row, x: Row, obs: Row, prm: ConstRow, count: int, hold: int, read: Read, pause: Pause,
           complete: Complete) -> None:
    """World._native for a run of instructions: perf counts up to each interrupt; a real
    overflow lands at once as an NMI VM-exit, or with `hold` stays in flight (bounded by
    the counter's next wrap, World._wrap_bound)."""
    n, mask = prm[P_N], prm[P_MASK]
    if hold == 0 and in_flight(s, prm):
        nmi_exit(s, x, obs, prm, pause, complete)
    pos = 0
    t0 = x[X_T]
    while pos < count:
        step = count - pos
        if hold != 0:
            bound = -1  # none
            for j in range(n):
                b = GLOBALS + STRIDE * j
                if s[b + PENDING] != 0 and s[b + ENABLED] != 0:
                    left = mask + 1 - (pmc_read(s, prm, b, read) & mask)
                    off = 0 if left <= 1 else left - 1
                    bound = off if bound < 0 else min(bound, off)
            if bound == 0:
                nmi_exit(s, x, obs, prm, pause, complete)
                continue
            if bound > 0:
                step = min(step, bound)
        for j in range(n):  # the sources: enabled events (advancing them enables none)
            b = GLOBALS + STRIDE * j
            if s[b + ENABLED] != 0 and s[b + PENDING] == 0 and 0 < s[b + ARMED] < step:
                step = s[b + ARMED]
        hit = False
        for j in range(n):  # PerfEvent.advance
            b = GLOBALS + STRIDE * j
            if s[b + ENABLED] == 0:
                continue
            s[b + COUNT] += step
            s[b + LEFT] -= step
            if s[b + PENDING] != 0 or s[b + ARMED] == 0:
                continue
            s[b + ARMED] -= step
            if s[b + ARMED] > 0:
                continue
            if s[b + LEFT] <= 0:
                s[b + PENDING] = 1
                s[b + ARMED] = 0
                hit = True
            else:
                set_period(s, b)
        pos += step
        x[X_T] = t0 + pos
        if hit and hold == 0:
            nmi_exit(s, x, obs, prm, pause, complete)
    x[X_T] = t0


def batch(s: Row, x: Row, obs: Row, prm: ConstRow, count: int, read_status: int, incr: Incr) -> None:
    """World.handle_invalid_guest_state's loop: `count` instructions, then maybe RDMSR
    GLOBAL_STATUS, all in one exit."""
    for _ in range(count):
        retire_both(s, x, obs, prm, incr)
    if read_status != 0:
        add_result(obs, s[R_STATUS], s[K_STATUS])
        retire_both(s, x, obs, prm, incr)


def msr(s: Row, x: Row, obs: Row, prm: ConstRow, letter: ConstRow, incr: Incr, read: Read, write: Write) -> None:
    """The intercepted WRMSR/RDMSR/RDPMC's effect on both machines (kvm_set_msr_common /
    kvm_get_msr_common / kvm_pmu_rdpmc; ArchPmu.wrmsr / rdmsr / rdpmc), then retirement."""
    op = letter[0]
    if op == OP_WRCTR:
        j, v = letter[2], letter[3]
        write_counter(s, x, obs, prm, j, v, write)
        s[GLOBALS + STRIDE * j + REF] = v
        add_result(obs, NONE, NONE)
    elif op == OP_RDPMC:
        b = GLOBALS + STRIDE * letter[2]
        add_result(obs, s[b + REF], pmc_read(s, prm, b, read))
    elif op == OP_RDSTATUS:
        add_result(obs, s[R_STATUS], s[K_STATUS])
    elif op == OP_CLEAR:
        s[R_STATUS] &= ~letter[2]
        s[K_STATUS] &= ~letter[2]
        add_result(obs, NONE, NONE)
    elif op == OP_LVTPC:
        s[R_MASKED] = 0
        s[K_MASKED] = 0
        add_result(obs, NONE, NONE)
    else:  # OP_TOGGLE: intel_pmu_set_msr's event select write
        j, en = letter[2], letter[3]
        b = GLOBALS + STRIDE * j
        if s[b + EN] != en:
            s[b + EN] = en
            request_reprogram(x, j)
        add_result(obs, NONE, NONE)
    retire_both(s, x, obs, prm, incr)


def userspace(s: Row, x: Row, obs: Row, prm: ConstRow, op: int, read: Read, write: Write, pause: Pause,
              complete: Complete) -> None:
    """World._set_filter / _clear_filter / _save_restore: the kick out of KVM_RUN lands an
    in-flight host PMI, the ioctl, then re-entry (the reference: ReferenceMachine)."""
    land(s, x, obs, prm, False)
    if op == OP_SAVERESTORE:
        # KVM_GET_MSRS then KVM_SET_MSRS of the same values: each counter is rewritten with
        # what it reads (pmc_write_counter; a write touches only its own counter, so reading
        # each just before its write reads what KVM_GET_MSRS did), every PMC is marked in use
        for j in range(prm[P_N]):
            write_counter(s, x, obs, prm, j, pmc_read(s, prm, GLOBALS + STRIDE * j, read) & prm[P_MASK], write)
        s[IN_USE] |= prm[P_ALL_IN_USE]
    else:
        if op == OP_SETFILTER:
            add_result(obs, NONE, NONE)
        s[FILTER] = 1 if op == OP_SETFILTER else 0
        x[X_REPROGRAM] |= OTHERS | ((1 << prm[P_N]) - 1)
        x[X_REQ] |= REQ_PMU
    enter(s, x, obs, prm, pause, complete)


# -- the reference (vpmu.arch.ArchPmu.retire)


def ref_retire(s: Row, x: Row, obs: Row, prm: ConstRow, count: int) -> None:
    """ArchPmu.retire of `count` instructions at CPL 0: every wrap at its instruction, one
    PMI per group of counters wrapping on the same instruction (masked LVTPC: dropped)."""
    if s[FILTER] != 0:
        return
    n, mask = prm[P_N], prm[P_MASK]
    t = x[X_T]
    if count == 1:  # the common case: one intercepted or emulated instruction
        wrapped = False
        for j in range(n):
            b = GLOBALS + STRIDE * j
            if s[b + EN] != 0:
                if s[b + REF] == mask:
                    s[b + REF] = 0
                    idx = prm[P_IDX + P_STRIDE * j]
                    add_signal(obs, O_NRSIG, idx, t + 1, SRC_WRAP)
                    s[R_STATUS] |= 1 << idx
                    wrapped = True
                else:
                    s[b + REF] += 1
        if wrapped and s[R_MASKED] == 0:
            add_pmi(obs, O_NRPMI, t + 1)
            s[R_MASKED] = 1
        return
    # counter j wraps at offsets first_j, first_j + period, ... (first_j = period - value):
    # walk them in (offset, j) order, each distinct offset once
    period = mask + 1
    at = 1
    while True:
        off = -1
        for j in range(n):
            b = GLOBALS + STRIDE * j
            if s[b + EN] != 0:
                nxt = next_wrap(period - s[b + REF], period, at)
                if off < 0 or nxt < off:
                    off = nxt
        if off < 0 or off > count:
            break
        for j in range(n):
            b = GLOBALS + STRIDE * j
            if s[b + EN] != 0 and next_wrap(period - s[b + REF], period, at) == off:
                idx = prm[P_IDX + P_STRIDE * j]
                add_signal(obs, O_NRSIG, idx, t + off, SRC_WRAP)
                s[R_STATUS] |= 1 << idx
        if s[R_MASKED] == 0:
            add_pmi(obs, O_NRPMI, t + off)
            s[R_MASKED] = 1
        at = off + 1
    for j in range(n):
        b = GLOBALS + STRIDE * j
        if s[b + EN] != 0:
            s[b + REF] = (s[b + REF] + count) & mask


def next_wrap(first: int, period: int, at: int) -> int:
    """The first of first, first + period, ... at or after `at`."""
    if at <= first:
        return first
    return first + (at - first + period - 1) // period * period


def retire_both(s: Row, x: Row, obs: Row, prm: ConstRow, incr: Incr) -> None:
    """One intercepted or emulated instruction retires on both machines (its effect done)."""
    ref_retire(s, x, obs, prm, 1)
    x[X_T] += 1
    kvm_retire(s, x, prm, incr)


# -- the step


def step_row(s: Row, letter: ConstRow, prm: ConstRow, x: Row, obs: Row, incr: Incr, pause: Pause, read: Read,
             write: Write, complete: Complete) -> None:
    """One letter on both machines (World.step, ReferenceMachine.step): `s` becomes the next
    state; `obs` gets the step's observation (its counts, O_T and O_FULL are reset here; the
    slots past a section's count keep what they held). `x` is scratch (SCRATCH_LEN ints)."""
    for i in range(len(x)):
        x[i] = 0
    obs[O_T] = obs[O_NRES] = obs[O_NRPMI] = obs[O_NKPMI] = obs[O_NRSIG] = obs[O_NKSIG] = obs[O_FULL] = 0
    op = letter[0]
    if op == OP_HOSTPMI:  # World._host_pmi (the vCPU is never halted here)
        land(s, x, obs, prm, True)
        enter(s, x, obs, prm, pause, complete)
    elif op in (OP_SETFILTER, OP_CLEARFILTER, OP_SAVERESTORE):
        userspace(s, x, obs, prm, op, read, write, pause, complete)
    else:
        bound_skid(s, x, obs, prm, pause, complete)
        if op == OP_NATIVE:
            native(s, x, obs, prm, letter[1], letter[2], read, pause, complete)
            ref_retire(s, x, obs, prm, letter[1])
            x[X_T] += letter[1]
        elif op == OP_EMULATE:
            for _ in range(letter[1]):
                exit_handler(s, x, obs, prm, letter, BEFORE, incr, read, write)
                enter(s, x, obs, prm, pause, complete)
        elif op == OP_BATCH:
            exit_handler(s, x, obs, prm, letter, BEFORE, incr, read, write)
            enter(s, x, obs, prm, pause, complete)
        else:  # OP_EXIT and the MSR/RDPMC letters: one exit, the host PMI before or after
            exit_handler(s, x, obs, prm, letter, letter[1], incr, read, write)
            enter(s, x, obs, prm, pause, complete)
    if not in_flight(s, prm):
        s[AGE] = 0
    obs[O_T] = x[X_T]


#: The step's functions (vpmu.explore.compact.kjit compiles them together).
STEP_FUNCTIONS = (add_result, add_pmi, add_signal, set_period, note_silent, sample_period, live, fields, put,
                  in_flight, pmc_read, write_counter, request_reprogram, overflow_inner, perf_overflow, allowed,
                  reprogram_counter, reprogram_complete, handle_event, deliver_pmi, enter, land, nmi_exit,
                  bound_skid, exit_handler, kvm_retire, native, batch, msr, userspace, ref_retire, next_wrap,
                  retire_both, step_row)
