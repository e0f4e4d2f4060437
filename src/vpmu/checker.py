"""The differential oracle: compare the reference's and KVM's observations of one run.

Pure: `compare(cfg, ref_obs, kvm_obs, options)` looks only at the two observation lists (the
actions are inside them) and returns `Divergence`s in a stable order. docs/checker.md
describes every kind, the visibility rule and each tolerance option.

How each comparison works:

* Counter values (end of every step, and every RDPMC/RDMSR of a counter inside a step) and other
  read results -> `wrong-value`. A mismatch that persists is reported once, when it starts.
* GLOBAL_STATUS overflow bits are compared at every observation point (each RDMSR of the
  status MSR inside a step, then the end of the step). A bit the reference shows and KVM does
  not opens a gap; if KVM's bit appears while the reference's is still set the gap is a
  `late-overflow`, otherwise (never, or only after the guest cleared it) a `lost-overflow`.
  A bit KVM shows and the reference does not is a `spurious-overflow`.
* PMIs (instruction numbers) are matched in order: within `pmi_skid` instructions is on time,
  later is `late-pmi`; unmatched ones are `missing-pmi` / `extra-pmi`.
* Faults of each value-returning access -> `unexpected-fault` / `missing-fault`.
* Internal: KVM's overflow signals (sources hw/emulated) are matched to the reference's
  wraps per PMC; a signal with no wrap left to match (e.g. a second one for the same wrap) is
  an internal `spurious-overflow`, a wrap without a signal an internal `lost-overflow` (each
  only when no guest-visible divergence already reports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vpmu import msrs as M
from vpmu.actions import (
    Batch,
    Emulate,
    HostRdmsr,
    HostWrmsr,
    Native,
    Rdmsr,
    Rdpmc,
    SetFilter,
    Wrmsr,
)
from vpmu.config import FIXED_BASE, PmuConfig
from vpmu.divergence import KINDS, Divergence, Kind, Visibility
from vpmu.errors import VpmuError
from vpmu.pmc_map import counter_name, pmc_of_msr, pmc_of_rdpmc, status_msr
from vpmu.timeline import Timeline
from vpmu.tolerances import CheckerOptions
from vpmu.trace import Observation, Signal


def legacy_msr_missing(cfg: PmuConfig, msr: int) -> bool:
    """One of the P6/K7 MSRs KVM's x86.c ignores when invalid (spec §2.2), naming a counter or
    event select this PMU does not have."""
    if msr not in M.LEGACY_PMU_MSRS:
        return False
    if cfg.version == 0:
        return True
    own, other = ((M.IA32_PMC0, M.IA32_PERFEVTSEL0), (M.MSR_K7_PERFCTR0, M.MSR_K7_EVNTSEL0))
    if not cfg.is_intel:
        own, other = other, own
    if any(0 <= msr - base < 4 for base in other):
        return True
    return not any(0 <= msr - base < cfg.num_gp for base in own)


def is_pmu_msr(msr: int) -> bool:
    return M.msr_name(msr) != f"{msr:#x}"


# --- result sources -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Access:
    """What produced one Result: a guest or host MSR read/write, an RDPMC or a filter ioctl."""

    what: str  # "rdmsr" | "wrmsr" | "rdpmc" | "host_rdmsr" | "host_wrmsr" | "set_filter"
    msr: int = 0
    index: int = 0  # position among the action's items (for insn estimates)


def _accesses(action: Any) -> list[_Access]:
    items: tuple[Any, ...] = action.items if isinstance(action, Emulate | Batch) else (action,)
    out: list[_Access] = []
    for i, item in enumerate(items):
        if isinstance(item, Rdmsr):
            out.append(_Access("rdmsr", item.msr, i))
        elif isinstance(item, Wrmsr):
            out.append(_Access("wrmsr", item.msr, i))
        elif isinstance(item, Rdpmc):
            out.append(_Access("rdpmc", item.ecx, i))
        elif isinstance(item, HostRdmsr):
            out.append(_Access("host_rdmsr", item.msr, i))
        elif isinstance(item, HostWrmsr):
            out.append(_Access("host_wrmsr", item.msr, i))
        elif isinstance(item, SetFilter):
            out.append(_Access("set_filter", 0, i))
    return out


def _describe(acc: _Access) -> str:
    if acc.what == "rdpmc":
        return f"RDPMC {acc.msr:#x}"
    if acc.what == "set_filter":
        return "KVM_SET_PMU_EVENT_FILTER"
    name = {"rdmsr": "RDMSR", "wrmsr": "WRMSR", "host_rdmsr": "KVM_GET_MSRS",
            "host_wrmsr": "KVM_SET_MSRS"}[acc.what]
    return f"{name} {M.msr_name(acc.msr)}"


# --- the comparison -----------------------------------------------------------------------


@dataclass(slots=True)
class _Gap:
    """An open status-bit difference for one PMC."""

    missing: bool  # True: reference shows the bit, KVM does not
    step: int
    insn: int
    mid: bool


class _Checker:
    def __init__(self, cfg: PmuConfig, ref: Sequence[Observation], kvm: Sequence[Observation],
                 opts: CheckerOptions, open_end: bool = False) -> None:
        self.cfg, self.ref, self.kvm, self.opts = cfg, ref, kvm, opts
        self.open_end = open_end
        self.out: list[Divergence] = []
        self.open_values: dict[str, tuple[int, bool]] = {}  # key -> (step, tolerated)
        self.pmis_so_far = [0, 0]  # PMIs delivered so far: reference, KVM
        self.r14_steps: dict[int, int] = {}  # pmc -> step of a tolerated R14 missing fault
        self.timeline = Timeline(cfg, ref, kvm)
        self.wraps = self.timeline.wraps  # pmc -> [(insn, step)]
        self.kvm_sigs = self.timeline.kvm_sigs  # pmc -> [(signal, step)]
        # every PMI delivered, as (instructions retired before it, step)
        self.ref_pmis = [(n, o.step) for o in ref for n in o.pmis]
        self.kvm_pmis = [(n, o.step) for o in kvm for n in o.pmis]

    # -- helpers

    def add(self, kind: str, step: int, counter: str | None, expected: int | str | None,
            observed: int | str | None, message: str, *, relaxation: str | None = None,
            visibility: str = "guest") -> None:
        self.out.append(Divergence(Kind(kind), Visibility(visibility), relaxation is not None, step, counter,
                                   expected, observed, message, relaxation))

    def insn_before(self, step: int) -> int:
        return self.ref[step - 1].insn if step > 0 else 0

    def wrap_before(self, pmc: int, step: int, insn: int | None = None) -> tuple[int, int] | None:
        """The latest reference wrap of `pmc` at or before `step` (and `insn`)."""
        return self.timeline.wrap_before(pmc, step, insn)

    def native_step(self, step: int) -> Native | None:
        a = self.ref[step].action
        return a if isinstance(a, Native) else None

    def held_landing(self, step: int) -> int:
        """The first step after `step` that lands a held host PMI (`keeps_host_pmi_in_flight`
        is false: not a held run, a host perf switch or a faulting CPL > 0 MSR access)."""
        return self.timeline.landing_after(step)

    def kvm_signal(self, pmc: int, lo: int, hi: int) -> Signal | None:
        found = self.kvm_signal_step(pmc, lo, hi)
        return found[0] if found else None

    def kvm_signal_step(self, pmc: int, lo: int, hi: int) -> tuple[Signal, int] | None:
        """KVM's first overflow signal (hw/emulated) of `pmc` in steps lo..hi, with its step."""
        return self.timeline.signal_in(pmc, lo, hi)

    def lateness_relaxation(self, pmc: int | None, wrap: tuple[int, int] | None, seen_step: int,
                            seen_insn: int | None) -> str | None:
        """Which option (if any) tolerates an overflow of `pmc` (reference wrap `wrap`) that
        KVM makes visible in step `seen_step` (at instruction `seen_insn` if known)."""
        if pmc is None or wrap is None:
            return None
        w_insn, w_step = wrap
        sig = self.kvm_signal(pmc, w_step, seen_step)
        native = self.native_step(w_step)
        o = self.opts
        if o.r1_vm_entry and seen_step == w_step and native is None:
            return "R1"
        if o.r1_vm_entry and seen_step == w_step and sig is not None and sig.source == "emulated":
            return "R1"
        if native is not None:
            if o.held_pmi_skid and native.hold_pmi and seen_step <= self.held_landing(w_step):
                return "held-pmi"
            late_insn = sig.insn if sig is not None else seen_insn
            event = self.next_event(pmc, w_insn, w_step)
            due = event if event is not None else (w_insn + 1 if not self.open_end else None)
            if o.r3_min_period and late_insn is not None and (due is None or late_insn <= due):
                return "R3"
            if o.r3_min_period and o.held_pmi_skid and event is not None:
                # R3 moves the hardware overflow to the next event; if that event retires in a
                # held run, its host PMI lands with that run's skid
                nxt = self.step_of_insn(event, w_step)
                held = self.native_step(nxt) if nxt is not None else None
                if held is not None and held.hold_pmi and seen_step <= self.held_landing(nxt or 0):
                    return "R3"
        return None

    def next_event(self, pmc: int, w_insn: int, w_step: int) -> int | None:
        """The instruction at which the reference counts the first event of `pmc` after its
        wrap at `w_insn` in native step `w_step` (None: not within the trace): R3 delays a
        hardware overflow by one event of the counter's own kind, not one instruction. A native
        run counts its first d instructions (branches retire first, docs/scenario-format.md),
        d being the events the reference counted in that step; any other step that changes
        the counter is taken to count at its first instruction."""
        pos = self.cfg.pmc_indices.index(pmc)
        mask = self.cfg.mask_of(pmc)
        t: int | None = w_step
        while t is not None and t < len(self.ref):
            before = self.ref[t - 1].counters[pos] if t > 0 else 0
            counted = (self.ref[t].counters[pos] - before) & mask
            start = self.insn_before(t)
            if isinstance(self.ref[t].action, Native):
                if counted and start + counted > w_insn:
                    return max(w_insn + 1, start + 1)
            elif counted and t > w_step:
                return start + 1
            t = self.timeline.counting_from(pos, t + 1)  # steps that count nothing cannot answer
        return None

    def step_of_insn(self, insn: int, from_step: int) -> int | None:
        """The step (from `from_step` on) in which instruction `insn` retires."""
        return self.timeline.step_of_insn(insn, from_step)

    def still_due(self, pmc: int | None, wrap: tuple[int, int] | None) -> bool:
        """Open-ended traces only: could KVM still make this wrap visible in time, at the very
        next step or instruction? Then it is not judged yet (the trace may go on)."""
        if not self.open_end or not self.ref:
            return False
        next_insn = self.ref[-1].insn + 1
        return self.lateness_relaxation(pmc, wrap, len(self.ref), next_insn) is not None

    def loss_relaxation(self, pmc: int, from_step: int) -> str | None:
        """Which option (if any) tolerates losing an overflow of `pmc` from `from_step` on,
        read from KVM's signals: `ignored` (R7), `min-period` (R3), `disallowed` (R11)."""
        o = self.opts
        sources = ("ignored",) * o.r7_ignored_overflow + ("min-period",) * o.r3_min_period
        first = self.timeline.first_signal(pmc, from_step, sources) if sources else None
        if first is not None:
            return "R7" if first.source == "ignored" else "R3"
        if o.r11_disallowed_overflow and self.timeline.first_signal(pmc, from_step, ("disallowed",)) is not None:
            return "R11"
        return None

    # -- values and faults

    def value_mismatch(self, key: str, step: int, counter: str | None, exp: int | None,
                       got: int | None, what: str, pmc: int | None) -> None:
        if key in self.open_values:
            return
        rel = None
        if pmc is not None and self.r14_steps.get(pmc) == step:
            rel = "R14"
        self.open_values[key] = (step, rel is not None)
        exp_s = "none" if exp is None else f"{exp:#x}"
        got_s = "none" if got is None else f"{got:#x}"
        self.add("wrong-value", step, counter, exp, got,
                 f"{what}: reference {exp_s}, KVM {got_s}", relaxation=rel)

    def results(self, step: int, r: Observation, k: Observation,
                points: list[tuple[int, int, int]]) -> None:
        acc = _accesses(r.action)
        if len(acc) != len(r.results):
            acc = [_Access("?", 0, i) for i in range(len(r.results))]
        base = self.insn_before(step)
        for a, rr, kr in zip(acc, r.results, k.results, strict=False):
            if rr.fault != kr.fault:
                if rr.fault:
                    rel = None
                    pmc = pmc_of_msr(self.cfg, a.msr) if a.what == "wrmsr" else None
                    if self.opts.r14_truncation and a.what == "wrmsr" and (
                        (self.cfg.is_intel and pmc is not None and pmc >= FIXED_BASE)
                        or (not self.cfg.is_intel and is_pmu_msr(a.msr))
                    ):
                        rel = "R14"
                        if pmc is not None:
                            self.r14_steps[pmc] = step
                    elif self.opts.legacy_msrs_ignored and a.what in ("wrmsr", "rdmsr", "host_wrmsr", "host_rdmsr") \
                            and legacy_msr_missing(self.cfg, a.msr):
                        rel = "legacy-msrs"
                    self.add("missing-fault", step, counter_name(pmc) if pmc is not None else None,
                             "#GP", "no fault", f"{_describe(a)} should #GP; KVM completed it",
                             relaxation=rel)
                else:
                    self.add("unexpected-fault", step, None, "no fault", "#GP",
                             f"{_describe(a)} #GPs under KVM but not on the reference")
                continue
            if rr.fault or rr.value == kr.value:
                if a.what in ("rdmsr", "host_rdmsr") and a.msr == status_msr(self.cfg) and not rr.fault:
                    points.append((base + a.index, rr.value or 0, kr.value or 0))
                continue
            if a.what in ("rdmsr", "host_rdmsr") and a.msr == status_msr(self.cfg):
                points.append((base + a.index, rr.value or 0, kr.value or 0))
                other = ((rr.value or 0) ^ (kr.value or 0)) & ~self.cfg.global_ctrl_valid_bits
                if other:
                    self.add("wrong-value", step, None, rr.value, kr.value,
                             f"{_describe(a)} reads non-overflow bits {other:#x} differently")
                continue
            pmc = None
            if a.what == "rdpmc":
                pmc = pmc_of_rdpmc(self.cfg, a.msr)
            elif a.what in ("rdmsr", "host_rdmsr"):
                pmc = pmc_of_msr(self.cfg, a.msr)
            if pmc is not None and pmc in self.cfg.pmc_indices:
                self.value_mismatch(counter_name(pmc), step, counter_name(pmc), rr.value, kr.value,
                                    f"{_describe(a)} reads {counter_name(pmc)}", pmc)
            else:
                self.value_mismatch(f"read:{a.what}:{a.msr:#x}", step, None, rr.value, kr.value,
                                    f"{_describe(a)} returns a different value", None)

    def end_values(self, step: int, r: Observation, k: Observation) -> None:
        for idx, rv, kv in zip(self.cfg.pmc_indices, r.counters, k.counters, strict=False):
            key = counter_name(idx)
            if rv == kv:
                self.open_values.pop(key, None)
            else:
                self.value_mismatch(key, step, key, rv, kv, f"{key} after the action", idx)
        self.pmis_so_far[0] += len(r.pmis)
        self.pmis_so_far[1] += len(k.pmis)
        lv_mask = ~0 if self.pmis_so_far[0] == self.pmis_so_far[1] else ~M.LVTPC_MASKED
        if (r.lvtpc ^ k.lvtpc) & lv_mask == 0:
            self.open_values.pop("lvtpc", None)
        elif (r.lvtpc ^ k.lvtpc == M.LVTPC_MASKED and k.pmis and self.writes_lvtpc(r.action)
              and (rel := self.late_pmi_relaxation(step, k.pmis[0]))):
            # KVM's late PMI masked the LVTPC after the guest's own write unmasked it
            if "lvtpc" not in self.open_values:
                self.open_values["lvtpc"] = (step, True)
                self.add("wrong-value", step, None, r.lvtpc, k.lvtpc,
                         f"LVTPC after the action: reference {r.lvtpc:#x}, KVM {k.lvtpc:#x} (KVM's late PMI "
                         "masked it after the guest's write)", relaxation=rel)
        else:
            self.value_mismatch("lvtpc", step, None, r.lvtpc, k.lvtpc, "LVTPC after the action", None)
        # a read-back that matches again closes read keys too
        for key in [k_ for k_ in self.open_values if k_.startswith("read:")]:
            if self.open_values[key][0] != step:
                self.open_values.pop(key)

    # -- status bits

    def status(self, points_by_step: list[list[tuple[int, int, int, bool]]]) -> None:
        for pmc in self.cfg.pmc_indices:
            bit = 1 << pmc
            gap: _Gap | None = None
            for step, points in enumerate(points_by_step):
                for insn, rs, ks, mid in points:
                    r_on, k_on = bool(rs & bit), bool(ks & bit)
                    if r_on == k_on:
                        if gap is not None:
                            self.close_gap(pmc, gap, step, insn, resolved_by_kvm=r_on)
                            gap = None
                        continue
                    if gap is not None and gap.missing == r_on:
                        continue
                    if gap is not None:
                        self.close_gap(pmc, gap, step, insn, resolved_by_kvm=False)
                    gap = _Gap(r_on, step, insn, mid)
            if gap is not None:
                self.close_gap(pmc, gap, None, None, resolved_by_kvm=False)

    def close_gap(self, pmc: int, gap: _Gap, step: int | None, insn: int | None,
                  resolved_by_kvm: bool) -> None:
        name = counter_name(pmc)
        where = "inside the action" if gap.mid else "after the action"
        if not gap.missing:
            wrap = self.wrap_before(pmc, gap.step)
            first = self.kvm_signal_step(pmc, wrap[1], gap.step) if wrap else None
            rel = self.lateness_relaxation(pmc, wrap, gap.step, first[0].insn) if wrap and first and (
                first[1] == gap.step) else None
            if wrap and rel:  # the tolerated late overflow of a wrap whose bit the guest cleared
                self.add("spurious-overflow", gap.step, name, 0, 1,
                         f"GLOBAL_STATUS.{name} set under KVM at step {gap.step} by the late overflow of the "
                         f"wrap at insn {wrap[0]}, after the guest cleared its bit", relaxation=rel)
                return
            self.add("spurious-overflow", gap.step, name, 0, 1,
                     f"GLOBAL_STATUS.{name} set under KVM {where} without a wrap on the reference")
            return
        wrap = self.wrap_before(pmc, gap.step)
        if resolved_by_kvm and step is not None:
            rel = self.lateness_relaxation(pmc, wrap, step, None)
            later = self.wrap_before(pmc, step)
            if rel is None and wrap is not None and later is not None and later[0] > wrap[0]:
                # the bit KVM shows belongs to a later wrap: the first one was lost, not late
                rel = self.loss_relaxation(pmc, wrap[1])
                self.add("lost-overflow", gap.step, name, 1, 0,
                         f"GLOBAL_STATUS.{name} for the wrap at insn {wrap[0]} never appears under KVM "
                         f"(the bit seen at step {step} is for the later wrap at insn {later[0]})",
                         relaxation=rel)
                return
            wrap_txt = f"wrap at insn {wrap[0]}" if wrap else "wrap"
            if step == gap.step:
                text = (f"GLOBAL_STATUS.{name} for the {wrap_txt} still reads 0 inside the action and "
                        "appears only at its end (the next VM-entry)")
            else:
                text = (f"GLOBAL_STATUS.{name} for the {wrap_txt} appears only at step {step} "
                        f"(reference: {where} at step {gap.step})")
            self.add("late-overflow", gap.step, name, f"status by insn {wrap[0] if wrap else gap.insn}",
                     f"status at step {step}", text, relaxation=rel)
            return
        if step is None and self.still_due(pmc, wrap):
            return
        if step is not None and wrap is not None:
            # the guest cleared the bit on the reference; KVM sets it in that step (a late host PMI
            # landing at the exit) or later (R3's next event of the counter's own kind)
            late = self.kvm_signal_step(pmc, step, len(self.kvm) - 1)
            rel = self.lateness_relaxation(pmc, wrap, late[1], late[0].insn) if late is not None else None
            if late is not None and rel is not None:
                self.add("late-overflow", gap.step, name, f"status by insn {wrap[0]}", f"status at step {late[1]}",
                         f"GLOBAL_STATUS.{name} for the wrap at insn {wrap[0]} is set under KVM only in step "
                         f"{late[1]}, after the guest's write at step {step} cleared it", relaxation=rel)
                return
            if late is None and self.still_due(pmc, wrap):
                return
        rel = self.loss_relaxation(pmc, wrap[1] if wrap else gap.step)
        wrap_txt = f"the wrap at insn {wrap[0]}" if wrap else "a wrap"
        self.add("lost-overflow", gap.step, name, 1, 0,
                 f"GLOBAL_STATUS.{name} for {wrap_txt} never appears under KVM", relaxation=rel)

    # -- PMIs

    def pmis(self) -> None:
        ref, kvm = self.ref_pmis, self.kvm_pmis
        i = j = 0
        skid = self.opts.pmi_skid
        while i < len(ref) or j < len(kvm):
            if i == len(ref):
                self.extra_pmi(*kvm[j])
                j += 1
                continue
            if j == len(kvm):
                self.missing_pmi(*ref[i])
                i += 1
                continue
            (rn, rs), (kn, ks) = ref[i], kvm[j]
            if kn < rn:
                self.extra_pmi(kn, ks)
                j += 1
            elif kn <= rn + skid:
                i += 1
                j += 1
            elif i + 1 < len(ref) and kn >= ref[i + 1][0]:
                self.missing_pmi(rn, rs)
                i += 1
            else:
                pmc = self.pmi_counter(rn, rs)
                wrap = self.wrap_before(pmc, rs, rn) if pmc is not None else None
                rel = self.lateness_relaxation(pmc, wrap, ks, kn)
                later = self.wrap_before(pmc, ks, kn) if pmc is not None else None
                if rel is None and pmc is not None and wrap and later and later[0] > wrap[0]:
                    self.superseded_pmi(pmc, wrap, later, rs, ks, rn, kn)
                    i += 1
                    j += 1
                    continue
                self.add("late-pmi", rs, counter_name(pmc) if pmc is not None else None, rn, kn,
                         f"PMI due before insn {rn + 1} arrives before insn {kn + 1} "
                         f"({kn - rn} instruction{'s' if kn - rn != 1 else ''} late, step {ks})", relaxation=rel)
                i += 1
                j += 1

    def superseded_pmi(self, pmc: int, wrap: tuple[int, int], later: tuple[int, int], rs: int, ks: int,
                       rn: int, kn: int) -> None:
        """KVM's PMI belongs to a later wrap than the reference's: the first PMI is missing, and
        the second is one the reference blocked (its LVTPC was masked by the first PMI)."""
        name = counter_name(pmc)
        rel = self.loss_relaxation(pmc, wrap[1])
        self.add("missing-pmi", rs, name, rn, None,
                 f"the PMI for the wrap at insn {wrap[0]} never comes under KVM (the PMI before insn "
                 f"{kn + 1} is for the later wrap at insn {later[0]})", relaxation=rel)
        self.add("extra-pmi", ks, name, None, kn,
                 f"KVM delivers a PMI for the wrap at insn {later[0]}, which the reference blocked: its "
                 "LVTPC was masked by the earlier PMI that KVM never delivered", relaxation=rel)

    def pmi_counter(self, insn: int, step: int) -> int | None:
        best: tuple[int, int] | None = None
        for pmc in sorted(self.wraps):
            wrap = self.wrap_before(pmc, step, insn)
            if wrap is not None and (best is None or wrap[0] > best[0]):
                best = (wrap[0], pmc)
        return best[1] if best else None

    def missing_pmi(self, n: int, step: int) -> None:
        pmc = self.pmi_counter(n, step)
        if pmc is not None and self.still_due(pmc, self.wrap_before(pmc, step, n)):
            return
        name = counter_name(pmc) if pmc is not None else None
        rel = self.loss_relaxation(pmc, step) if pmc is not None else None
        self.add("missing-pmi", step, name, n, None,
                 f"the reference delivers a PMI before insn {n + 1}; KVM never does", relaxation=rel)

    def extra_pmi(self, n: int, step: int) -> None:
        sigs = [s for s in self.kvm[step].signals if s.source in ("hw", "emulated")]
        name = counter_name(sigs[-1].pmc) if sigs else None
        if sigs:
            sig = sigs[-1]
            wrap = self.wrap_before(sig.pmc, step, sig.insn)
            rel = self.lateness_relaxation(sig.pmc, wrap, step, sig.insn) if wrap else None
            if wrap is not None and rel is not None and self.lvtpc_before(wrap[1]) & M.LVTPC_MASKED:
                self.add("extra-pmi", step, name, None, n,
                         f"KVM delivers a PMI for the wrap at insn {wrap[0]}, which the reference blocked "
                         "(LVTPC masked at the wrap): KVM's late overflow arrives after the guest unmasked it",
                         relaxation=rel)
                return
        self.add("extra-pmi", step, name, None, n,
                 f"KVM delivers a PMI before insn {n + 1} that the reference does not")

    def late_pmi_relaxation(self, step: int, kvm_insn: int) -> str | None:
        """If KVM's PMI in `step` (before insn `kvm_insn` + 1) is a tolerated late delivery of
        the reference's next PMI, the relaxation that tolerates it."""
        behind = self.pmis_so_far[1] - len(self.kvm[step].pmis)
        if behind >= self.pmis_so_far[0]:
            return None
        rn, rs = self.ref_pmis[behind]
        if kvm_insn <= rn + self.opts.pmi_skid:
            return None  # on time: not a late PMI
        pmc = self.pmi_counter(rn, rs)
        wrap = self.wrap_before(pmc, rs, rn) if pmc is not None else None
        return self.lateness_relaxation(pmc, wrap, step, kvm_insn)

    @staticmethod
    def writes_lvtpc(action: Any) -> bool:
        return any(a.what == "wrmsr" and a.msr == M.X2APIC_LVTPC for a in _accesses(action))

    def lvtpc_before(self, step: int) -> int:
        """The reference's LVTPC when `step` began."""
        return self.ref[step - 1].lvtpc if step > 0 else self.ref[0].lvtpc

    # -- internal signals

    def signals(self) -> None:
        guest = {(d.kind, d.counter) for d in self.out}
        guest_steps = {(d.kind, d.step) for d in self.out}
        for pmc in sorted(set(self.wraps) | set(self.kvm_sigs)):
            name = counter_name(pmc)
            wraps = list(self.wraps.get(pmc, []))
            used = [False] * len(wraps)
            nxt = 0  # signals match wraps in order: the used ones are always wraps[:nxt]
            last_matched: int | None = None
            for sig, step in self.kvm_sigs.get(pmc, []):
                if sig.source == "min-period":
                    # perf swallowed this wrap (R3): it is accounted for, as a loss
                    found = nxt if nxt < len(wraps) and wraps[nxt][0] <= sig.insn else None
                    if found is not None:
                        used[found] = True
                        nxt += 1
                        if ("lost-overflow", name) not in guest and ("missing-pmi", name) not in guest:
                            self.add("lost-overflow", wraps[found][1], name, "wrap signal", "no signal",
                                     f"perf never reports the wrap of {name} at insn {wraps[found][0]}: its "
                                     "period elapsed before the 2 events perf arms at least (R3)",
                                     relaxation="R3" if self.opts.r3_min_period else None,
                                     visibility="internal")
                    continue
                if sig.source not in ("hw", "emulated"):
                    continue
                found = nxt if nxt < len(wraps) and (wraps[nxt][0] <= sig.insn or wraps[nxt][1] <= step) else None
                if found is not None:
                    used[found] = True
                    nxt += 1
                    last_matched = wraps[found][0]
                    continue
                if ("spurious-overflow", step) in guest_steps or ("extra-pmi", step) in guest_steps:
                    continue
                dup = f" (a second signal for the wrap at insn {last_matched})" if last_matched is not None else ""
                self.add("spurious-overflow", step, name, "no signal", f"{sig.source} signal",
                         f"KVM signals an overflow of {name} ({sig.source}) at insn {sig.insn} "
                         f"with no wrap left to match{dup}",
                         relaxation="R2" if self.opts.r2_duplicate_signal and dup else None,
                         visibility="internal")
            for x, (w_insn, w_step) in enumerate(wraps):
                if used[x] or ("lost-overflow", name) in guest or ("missing-pmi", name) in guest:
                    continue
                if self.still_due(pmc, (w_insn, w_step)):
                    continue
                rel = self.loss_relaxation(pmc, w_step)
                self.add("lost-overflow", w_step, name, "wrap signal", "no signal",
                         f"the wrap of {name} at insn {w_insn} produced no KVM overflow signal",
                         relaxation=rel, visibility="internal")

    def run(self) -> list[Divergence]:
        points_by_step: list[list[tuple[int, int, int, bool]]] = []
        for step, (r, k) in enumerate(zip(self.ref, self.kvm, strict=False)):
            mid: list[tuple[int, int, int]] = []
            self.results(step, r, k, mid)
            self.end_values(step, r, k)
            pts = [(n, rs, ks, True) for n, rs, ks in mid]
            pts.append((r.insn, r.global_status, k.global_status, False))
            points_by_step.append(pts)
        self.status(points_by_step)
        self.pmis()
        self.signals()
        order = {k: i for i, k in enumerate(KINDS)}
        return sorted(self.out, key=lambda d: (d.step, d.visibility != "guest", order[d.kind],
                                               d.counter or ""))


def compare(cfg: PmuConfig, ref_obs: Sequence[Observation], kvm_obs: Sequence[Observation],
            options: CheckerOptions | None = None, *, open_end: bool = False) -> list[Divergence]:
    """Every divergence between the reference's and KVM's observations of the same actions.

    open_end: the trace is a prefix that may go on (the explorer's paths). An overflow or PMI
    that KVM could still deliver within the allowed point at the next step is then not judged
    yet; a scenario's trace is final, so there the end of the trace is the deadline.
    """
    if len(ref_obs) != len(kvm_obs):
        raise VpmuError(f"observation lists differ in length ({len(ref_obs)} vs {len(kvm_obs)})")
    return _Checker(cfg, ref_obs, kvm_obs, options or CheckerOptions(), open_end).run()




def check_work(cfg: PmuConfig, ref_obs: Sequence[Observation], kvm_obs: Sequence[Observation],
               options: CheckerOptions | None = None) -> int:
    """The index entries `compare` examines for these observations (`Timeline.work`): what the
    linearity test and benchmark read (docs/reliability.md)."""
    checker = _Checker(cfg, ref_obs, kvm_obs, options or CheckerOptions())
    checker.run()
    return checker.timeline.work
