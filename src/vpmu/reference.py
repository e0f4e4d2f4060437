"""`ReferenceMachine`: guest actions (vpmu.actions) run on the architectural PMU (vpmu.arch).

One `Observation` per `step(action)`, deterministic. Conventions (docs/reference.md):

* Native -> `retire(count, branches, cpl)` (branches first, actions.py), then its per-step
  events (`count_step`: cycles ..., CMASK/EDGE conditions) at its last boundary.
* Wrmsr / Rdmsr / Rdpmc -> the access, then, unless it faulted, the instruction retires at its
  CPL (it counts itself after its effect); a faulting instruction does not retire.
* Cpuid -> retires 1 at its CPL; Hlt -> retires 1 at CPL 0.
* Emulate / Batch -> each item in order, the same way (Insn retires 1, a branch if `branch`,
  or, named, if the instruction is one: vpmu.insns). The architecture has no VM-exits, so
  both are just instruction sequences here.
* SetCpuid -> before the first guest action the CPU becomes the new one out of RESET (the
  LVTPC stays); afterwards only identical CPUID is accepted. One Result.
* HostPmi, PerfFail -> no architectural effect.
* SetFilter / ClearFilter -> the filter gate; SetFilter returns one Result (fault = the ioctl
  rejected the filter, which then leaves the previous one installed).
* HostWrmsr / HostRdmsr -> host-initiated access, one Result.
* SaveRestore -> read every existing PMU MSR, write each back host-initiated (invisible).
* pmis = instructions retired before each *delivered* PMI; signals = one `Signal(pmc, k, "wrap")`
  per wrap, k = number of the wrapping instruction.
"""

from __future__ import annotations

from vpmu import actions as A
from vpmu.arch import ArchPmu
from vpmu.config import PmuConfig
from vpmu.errors import VpmuError
from vpmu.insns import retires_as_branch
from vpmu.msrs import LVTPC_RESET, msr_name, resolve_msr
from vpmu.trace import Note, Observation, Result, Signal


class ReferenceMachine:
    """The architectural reference as a `vpmu.trace.Machine`.

    lvtpc: initial LVTPC (default: the architectural reset value 0x10000, masked). Pass the
    KVM world's initial value (a Linux guest's 0x400) to compare runs that never program it.
    """

    def __init__(self, cfg: PmuConfig, *, lvtpc: int = LVTPC_RESET) -> None:
        self.cfg = cfg
        self.pmu = ArchPmu(cfg, lvtpc)
        self.layout = cfg.pmc_indices   # observations keep the configured counters' order
        self.steps = 0
        self._results: list[Result] = []

    # --- explorer support ---------------------------------------------------------------

    def clone(self) -> ReferenceMachine:
        c = ReferenceMachine.__new__(ReferenceMachine)
        c.cfg, c.pmu, c.layout, c.steps, c._results = self.cfg, self.pmu.clone(), self.layout, self.steps, []
        return c

    def state_key(self) -> tuple[object, ...]:
        """Everything that affects the future (not the instruction count or step number)."""
        return self.pmu.key()

    # --- stepping ---------------------------------------------------------------------------

    def step(self, action: A.Action) -> Observation:
        self._results = []
        self.pmu.take()
        if isinstance(action, A.GUEST_ACTIONS):
            self.pmu.ran = True
        self._run(action)
        wraps, pmis, log = self.pmu.take()
        status = self.pmu.global_status if self.cfg.has_global_msrs else 0
        obs = Observation(
            step=self.steps,
            action=action,
            insn=self.pmu.insn,
            results=tuple(self._results),
            counters=self.pmu.counter_values(self.layout),
            global_status=status,
            lvtpc=self.pmu.lvtpc,
            pmis=tuple(p.insn for p in pmis if p.delivered),
            signals=tuple(Signal(w.pmc, w.insn, "wrap") for w in wraps),
            log=tuple(log),
        )
        self.steps += 1
        return obs

    def _run(self, action: A.Action) -> None:
        pmu = self.pmu
        match action:
            case A.Native():
                totals = action.totals()
                pmu.retire(totals["instructions"], totals["branches"], action.cpl)
                pmu.count_step(totals, action.cycles, action.cpl)
            case A.Wrmsr() | A.Rdmsr() | A.Rdpmc():
                self._item(action)
            case A.Cpuid():
                pmu.retire(1, 0, action.cpl)
            case A.Hlt():
                pmu.retire(1, 0, 0)
            case A.Emulate() | A.Batch():
                for item in action.items:
                    self._item(item)
            case A.HostPmi() | A.PerfFail():
                pass
            case A.SetFilter():
                self._set_filter(action)
            case A.ClearFilter():
                pmu.set_filter(None)
                pmu.log.append(Note("host", "filter removed"))
            case A.SetCpuid():
                self._set_cpuid(action)
            case A.HostWrmsr():
                r = pmu.wrmsr(action.msr, action.value, host=True)
                self._note(r, f"host write {msr_name(resolve_msr(action.msr))} = {action.value:#x}")
                self._results.append(r)
            case A.HostRdmsr():
                r = pmu.rdmsr(action.msr, host=True)
                self._note(r, f"host read {msr_name(resolve_msr(action.msr))}")
                self._results.append(r)
            case A.SaveRestore():
                self._save_restore()
            case _:
                raise VpmuError(f"not an action: {action!r}")

    def _set_filter(self, action: A.SetFilter) -> None:
        """The filter gate; a rejected filter leaves the previous one installed."""
        pmu = self.pmu
        try:
            flt = action.to_filter(self.cfg.vendor)
        except VpmuError as err:
            pmu.log.append(Note("host", f"filter rejected: {err}"))
            self._results.append(Result(None, True))
            return
        pmu.set_filter(flt)
        pmu.log.append(Note("host", f"filter installed: {action.action} {len(flt.entries)} entries, "
                                    f"fixed bitmap {action.fixed_counter_bitmap:#x}"))
        self._results.append(Result(None, False))

    def _set_cpuid(self, action: A.SetCpuid) -> None:
        """A new CPU model before the CPU ran (out of RESET, the LVTPC kept); afterwards only
        the same one (one Result)."""
        pmu = self.pmu
        new = action.apply(pmu.cfg)
        if pmu.ran:
            ok = new == pmu.cfg
        else:
            ok = True
            self.pmu = ArchPmu(new, pmu.lvtpc, insn=pmu.insn, filter=pmu.filter)
        self.pmu.log.append(Note("host", "CPUID " + ("set" if ok else "change refused: the CPU has run")))
        self._results.append(Result(None, not ok))

    def _item(self, item: A.EmulatedItem) -> None:
        """One instruction: its effect, then (unless it faulted) its retirement at its CPL."""
        pmu = self.pmu
        if isinstance(item, A.Insn):
            branch = retires_as_branch(item.name, enter_leave_are_branches=False) if item.name else item.branch
            pmu.retire(1, 1 if branch else 0, item.cpl)
            return
        if isinstance(item, A.Wrmsr):
            r = pmu.wrmsr(item.msr, item.value, cpl=item.cpl)
            self._note(r, f"WRMSR {msr_name(resolve_msr(item.msr))} = {item.value:#x}")
        elif isinstance(item, A.Rdmsr):
            r = pmu.rdmsr(item.msr, cpl=item.cpl)
            self._note(r, f"RDMSR {msr_name(resolve_msr(item.msr))}")
        else:
            r = pmu.rdpmc(item.ecx, cpl=item.cpl, pce=item.pce)
            self._note(r, f"RDPMC {item.ecx:#x}")
        self._results.append(r)
        if not r.fault:
            pmu.retire(1, 0, item.cpl)

    def _note(self, r: Result, what: str) -> None:
        if r.fault:
            self.pmu.log.append(Note("access", f"{what}: #GP"))
        elif r.value is not None:
            self.pmu.log.append(Note("access", f"{what} -> {r.value:#x}"))

    def _save_restore(self) -> None:
        pmu = self.pmu
        saved: list[tuple[int, int]] = []
        for msr in pmu.existing_msrs():
            r = pmu.rdmsr(msr, host=True)
            if r.value is not None:
                saved.append((msr, r.value))
        for msr, value in saved:
            if pmu.wrmsr(msr, value, host=True).fault:  # pragma: no cover - would be a model bug
                raise VpmuError(f"reference save/restore: restoring {msr_name(msr)} = {value:#x} faulted")
        pmu.log.append(Note("host", f"save/restore {len(saved)} MSRs"))


__all__ = ["ReferenceMachine"]
