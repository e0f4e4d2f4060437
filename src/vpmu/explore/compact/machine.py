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
from functools import cached_property

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
from vpmu.errors import VpmuError
from vpmu.events import ENCODINGS, EVENTSEL_ENABLE
from vpmu.lapic import LINUX_GUEST_LVTPC
from vpmu.pmc_map import counter_msr, eventsel_msr, rdpmc_ecx, status_clear_msr, status_msr
from vpmu.reference import ReferenceMachine
from vpmu.world import World

from .kstep import Complete, Incr, Pause, Read, Write, step_row
from .layout import (
    AFTER,
    BEFORE,
    COUNT,
    GLOBALS,
    MAX_PMIS,
    MAX_SIGS,
    NONE,
    O_FULL,
    O_KPMI,
    O_KSIG,
    O_NKPMI,
    O_NKSIG,
    O_NRES,
    O_NRPMI,
    O_NRSIG,
    O_RES,
    O_RPMI,
    O_RSIG,
    O_T,
    OBS_LEN,
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
    REF,
    REQ_NMI,
    REQ_PMI,
    REQ_PMU,
    SCRATCH_LEN,
    SOURCES,
    STRIDE,
    C,
    E,
    Letter,
    P,
    Result_,
    Signal_,
    StepObs,
    params_len,
)

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

    def params(self) -> list[int]:
        """The configuration's constants as the int row the step reads (layout: P_*)."""
        era = self.era
        order = [{"pmu": REQ_PMU, "pmi": REQ_PMI, "nmi": REQ_NMI}[name] for name in era.request_order]
        assert len(order) <= 3, order
        prm = [0] * params_len(self.n)
        prm[P_N], prm[P_MASK], prm[P_SKID] = self.n, self.mask, self.skid
        prm[P_ALL_IN_USE], prm[P_UNUSED] = self.all_in_use, self.unused
        prm[P_IRQ_WORK] = int(era.pmi_via_irq_work)
        prm[P_SNAPSHOT] = int(era.snapshot_reprogram_bitmap)
        prm[P_AUTO_MASK] = int(era.auto_mask_lvtpc(self.cfg.vendor))
        prm[P_MASK_WRITES] = int(era.mask_counter_writes)
        prm[P_ORDER:P_ORDER + len(order)] = order
        for j in range(self.n):
            prm[P_IDX + P_STRIDE * j] = self.idx[j]
            prm[P_HW + P_STRIDE * j] = int(self.hw_avail[j])
        return prm

    @cached_property
    def _prm(self) -> tuple[int, ...]:
        return tuple(self.params())

    @cached_property
    def _rows(self) -> tuple[list[int], list[int]]:
        """The scratch and observation rows `step` reuses (`step_row` resets what it reads)."""
        return [0] * SCRATCH_LEN, [0] * OBS_LEN

    @cached_property
    def _hooks(self) -> tuple[Incr, Pause, Read, Write, Complete]:
        f = self.fast
        return (f.incr, f.pause, f.read, f.write, f.complete)

    def step(self, state: tuple[int, ...], letter: Letter) -> tuple[tuple[int, ...], StepObs]:
        """One letter on both machines (World.step, ReferenceMachine.step): the next state
        and the step's compact observation (`kstep.step_row` on lists)."""
        s = list(state)
        x, obs = self._rows
        step_row(s, letter, self._prm, x, obs, *self._hooks)
        return tuple(s), observation(obs)

    def shows_at_most(self, letter: Letter) -> tuple[int, int, int, int]:
        """Upper bounds of what one step of `letter` shows, from any state: reference signals,
        reference PMIs, KVM signals, KVM PMIs (results: at most one). A counter lands at most
        the host PMI it holds and one per two instructions of a native run (perf arms at least
        2); each reprogram signals at most twice and follows a landing or a request; a masked
        LVTPC (auto-masked, unmasked by at most one letter) delivers at most two PMIs."""
        n, op = self.n, letter[0]
        native = letter[1] if op == OP_NATIVE else 0
        landed = 1 + -(-native // 2)
        if op == OP_NATIVE:
            insns, reprograms = native, landed  # only a landing requests a reprogram in a native run
        else:
            outside = op in (OP_HOSTPMI, OP_SETFILTER, OP_CLEARFILTER, OP_SAVERESTORE)  # no instruction, one entry
            insns = 0 if outside else letter[1] if op == OP_EMULATE else letter[1] + letter[2] if op == OP_BATCH else 1
            enters = 1 if outside else 1 + letter[1] if op == OP_EMULATE else 2
            reprograms = min(enters, landed + insns + 1)
        writes = n if op == OP_SAVERESTORE else 1 if op == OP_WRCTR else 0
        rsigs = n * -(-insns // (self.mask + 1))
        deliveries = 2 if self.era.auto_mask_lvtpc(self.cfg.vendor) else n * (landed + reprograms)
        return rsigs, min(rsigs, 2), n * (landed + 2 * reprograms) + writes, deliveries

    def row_holds(self, letter: Letter) -> bool:
        """Whether the reference's sections of the observation row hold every step of
        `letter` (its wraps: exact). KVM's sound bound counts a landing per two instructions
        of a native run (perf's minimum period), far above what a design shows; a step past
        the row is left to `step`, which refuses it (ObservationFull)."""
        rsigs, rpmis, _, _ = self.shows_at_most(letter)
        return rsigs <= MAX_SIGS and rpmis <= MAX_PMIS

    def counters(self, state: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The guest-visible values of the counters in use: reference, KVM."""
        ref, kvm = [], []
        for j in range(self.n):
            b = GLOBALS + STRIDE * j
            live = state[b + COUNT] if not state[b + PAUSED] else 0
            ref.append(state[b + REF])
            kvm.append(self.fast.read((state[b + C], state[b + P], state[b + E]), live, self.mask))
        return tuple(ref), tuple(kvm)


#: Why the kernel cannot go on from a step that showed more than an observation row holds.
OBSERVATION_FULL_WHY = (f"a step showed more results, PMIs or signals than the compact kernel's observation row "
                        f"holds ({MAX_SIGS} signals and {MAX_PMIS} PMIs a machine)")
OBSERVATION_FULL = f"{OBSERVATION_FULL_WHY}; rerun with --engine object"


class ObservationFull(VpmuError):
    """A step showed more than the observation row holds (layout: MAX_RES, MAX_PMIS, MAX_SIGS):
    the kernel cannot go on; the object engine can."""


def observation(obs: Sequence[int]) -> StepObs:
    """The compact observation (StepObs) of an observation row."""
    if obs[O_FULL]:
        raise ObservationFull(OBSERVATION_FULL)
    nres, nrsig, nksig = obs[O_NRES], obs[O_NRSIG], obs[O_NKSIG]
    rres: tuple[Result_, ...] = ()
    kres: tuple[Result_, ...] = ()
    if nres:
        rres = tuple((None if r == NONE else r, False) for r in obs[O_RES:O_RES + 2 * nres:2])
        kres = tuple((None if k == NONE else k, False) for k in obs[O_RES + 1:O_RES + 2 * nres:2])
    return (obs[O_T], rres, kres, tuple(obs[O_RPMI:O_RPMI + obs[O_NRPMI]]), tuple(obs[O_KPMI:O_KPMI + obs[O_NKPMI]]),
            _signals(obs, O_RSIG, nrsig) if nrsig else (), _signals(obs, O_KSIG, nksig) if nksig else ())


def _signals(obs: Sequence[int], at: int, n: int) -> tuple[Signal_, ...]:
    return tuple((obs[i], obs[i + 1], SOURCES[obs[i + 2]]) for i in range(at, at + 3 * n, 3))


def _point(host_pmi: str) -> int:
    return AFTER if host_pmi == "after-handler" else BEFORE


def _plain(item: object) -> bool:
    """An emulated instruction the kernel covers: a plain non-branch instruction at CPL 0."""
    return isinstance(item, Insn) and not item.branch and not item.name and item.cpl == 0
