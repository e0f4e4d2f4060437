"""What a run shows: one `Observation` per action, from either model.

The reference and the KVM world produce the same record shape so that the checker is a pure
comparison. Guest-visible fields come first; `signals` and `log` are model-internal (the
guest cannot see them, but they explain a divergence, e.g. two overflow signals that
coalesced into one PMI).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self

from vpmu.actions import Action, action_to_dict

SignalSource = Literal["wrap", "hw", "emulated", "ignored", "min-period", "disallowed"]
NoteKind = Literal["request", "service", "entry-cancelled", "pmi", "overflow", "perf", "reprogram", "vcpu",
                   "host", "access"]


@dataclass(frozen=True, slots=True)
class Result:
    """Outcome of one instruction or host access that returns something."""

    value: int | None = None
    fault: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "fault": self.fault}


@dataclass(frozen=True, slots=True)
class Signal:
    """One overflow signal for PMC `pmc` after `insn` guest instructions had retired.

    source: "wrap" — the reference counter carried out of its width;
            "hw" — KVM's perf overflow callback reported it (`__kvm_perf_overflow(in_pmi)`);
            "emulated" — KVM's emulated-overflow detection reported it;
            "ignored" — `kvm_perf_overflow` dropped a hardware overflow (reprogram bit set);
            "min-period" — perf was paused after its period elapsed but before the hardware,
                armed for at least 2 events (R3), interrupted: that overflow is never reported;
            "disallowed" — `reprogram_counter` dropped an emulated overflow because the PMC was
                no longer allowed (R11).
    Only "wrap", "hw" and "emulated" report an overflow; the others record why one was lost.
    """

    pmc: int
    insn: int
    source: SignalSource

    def to_dict(self) -> dict[str, Any]:
        return {"pmc": self.pmc, "insn": self.insn, "source": self.source}


@dataclass(frozen=True, slots=True)
class Note:
    """One model-internal event of a step, typed so that reports and tests never parse its text.

    kind: "request" / "service" — a KVM request made / processed (`subject` names it, e.g.
              "KVM_REQ_PMI");
          "entry-cancelled" — a VM-entry cancelled because a request is pending;
          "pmi" — a PMI delivered, dropped, injected or waking the vCPU; a host PMI raised or landing;
          "overflow" — an overflow reaching GLOBAL_STATUS, or lost, dropped or ignored on the way;
          "perf" — the perf event life cycle (create, pause, resume, release, period);
          "reprogram" — KVM reprogramming a PMC;
          "vcpu" — VM-exits, halts and wake-ups;
          "host" — userspace and host actions (ioctls, save/restore, host switches);
          "access" — an MSR or RDPMC access and its outcome.
    text: one short line for people (the JSON `log`); its wording is not a contract.
    """

    kind: NoteKind
    text: str
    subject: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class DesignState:
    """The counter-tracking design's fields of one PMC (`struct kvm_pmc`): what a patch author
    needs to see to understand a divergence. `extra` is a user design's own state."""

    pmc: int
    counter: int
    emulated_counter: int
    prev_counter: int
    extra: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"counter": self.counter, "emulated_counter": self.emulated_counter,
                "prev_counter": self.prev_counter, "extra": dict(self.extra)}


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything observable after one action.

    step:     index of the action in the run (0-based).
    insn:     guest instructions retired so far, after the action.
    results:  one Result per value-returning instruction/access in the action, in order.
    counters: guest-visible value of every PMC after the action, in `PmuConfig.pmc_indices`
              order (read without side effects).
    global_status: GLOBAL_STATUS after the action (0 where the PMU has none).
    lvtpc:    the LVTPC register after the action.
    pmis:     for each PMI delivered to the guest during the action, the number of guest
              instructions retired before it arrived.
    signals:  overflow signals (model-internal; see Signal).
    log:      model-internal events in order (see Note); JSON shows each one's text.
    design:   KVM only: the design's fields of each PMC in use after the action (DesignState).
    """

    step: int
    action: Action
    insn: int
    results: tuple[Result, ...] = ()
    counters: tuple[int, ...] = ()
    global_status: int = 0
    lvtpc: int = 0
    pmis: tuple[int, ...] = ()
    signals: tuple[Signal, ...] = ()
    log: tuple[Note, ...] = ()
    design: tuple[DesignState, ...] = ()

    def to_dict(self, pmc_indices: tuple[int, ...]) -> dict[str, Any]:
        return {
            "step": self.step,
            "action": action_to_dict(self.action),
            "insn": self.insn,
            "results": [r.to_dict() for r in self.results],
            "counters": {str(i): v for i, v in zip(pmc_indices, self.counters, strict=True)},
            "global_status": self.global_status,
            "lvtpc": self.lvtpc,
            "pmis": list(self.pmis),
            "signals": [s.to_dict() for s in self.signals],
            "log": [n.text for n in self.log],
        }


class Machine(Protocol):
    """Anything that runs guest actions: the reference (`vpmu.reference`) or KVM (`vpmu.world`).

    `clone` and `state_key` are the explorer's seam (`vpmu.explore`): a search state is
    copied to try each next action, and two states with equal keys have the same future.
    """

    def step(self, action: Action) -> Observation: ...

    def clone(self) -> Self:
        """An independent copy in the same state."""
        ...

    def state_key(self) -> Hashable:
        """Everything that affects the future (not the instruction count or step number)."""
        ...


def run_all(machine: Machine, actions: list[Action] | tuple[Action, ...]) -> list[Observation]:
    return [machine.step(a) for a in actions]
