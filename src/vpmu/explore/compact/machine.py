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

from collections.abc import Sequence
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
from vpmu.lapic import LINUX_GUEST_LVTPC
from vpmu.pmc_map import counter_msr, eventsel_msr, rdpmc_ecx, status_clear_msr, status_msr
from vpmu.reference import ReferenceMachine
from vpmu.world import World

from .layout import (
    AFTER,
    AGE,
    BEFORE,
    COUNT,
    GLOBALS,
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
    OP_TOGGLE,
    OP_WRCTR,
    PAUSED,
    REF,
    STRIDE,
    C,
    E,
    Letter,
    P,
    StepObs,
)
from .step import Work

#: The KVM_SET_PMU_EVENT_FILTER the covered alphabet installs: deny the counted event (and the
#: fixed counters).
DENY = SetFilter("deny", (ENCODINGS["intel"]["instructions"],), fixed_counter_bitmap=0b111)

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
        st = Work(self, s)
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
