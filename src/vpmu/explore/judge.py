"""Running and judging one explored sequence: the search's view of both machines.

A `Node` is a search state: both machines (typed against the `vpmu.trace.Machine`
protocol: step, clone, state_key) after a path, with their observations. The `Judge` runs
a path, or extends a node by one action, and reports the untolerated divergences of the
open-ended trace; it skips the checker on a step that cannot have changed the verdict.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from vpmu.actions import Action
from vpmu.assumptions import assumptions_of
from vpmu.checker import compare
from vpmu.config import PmuConfig
from vpmu.divergence import Divergence
from vpmu.reference import ReferenceMachine
from vpmu.run import start_machines
from vpmu.tolerances import CheckerOptions
from vpmu.trace import Machine, Observation
from vpmu.world import World, WorldOptions

from .space import EventMap, setup_prefix


@dataclass(frozen=True, slots=True)
class Target:
    """What is explored: the CPU, the KVM era and design, and the checker options.
    Picklable, so that worker processes can rebuild machines from it. `explore()` narrows
    the CPU's counters to the bounds' width."""

    cfg: PmuConfig
    era: str
    design: str | None = None
    checker_options: CheckerOptions = field(default_factory=CheckerOptions)
    world: WorldOptions = field(default_factory=WorldOptions)

    def machines(self) -> tuple[ReferenceMachine, World]:
        """Fresh machines that start from the same LVTPC (the World's default)."""
        return start_machines(self.cfg, self.era, self.design, self.world)


@dataclass(frozen=True, slots=True)
class Finding:
    """An untolerated divergence found by `counters`' set-up (counting `events`) followed by
    `suffix`; `counter` is the divergence's counter (`gp0`, or None)."""

    cfg: PmuConfig
    kind: str
    visibility: str
    counters: tuple[int, ...]
    suffix: tuple[Action, ...]
    step: int
    detail: str = ""
    counter: str | None = None
    events: EventMap = ()

    @classmethod
    def of(cls, cfg: PmuConfig, counters: tuple[int, ...], suffix: tuple[Action, ...],
           divergence: Divergence, events: EventMap = ()) -> Finding:
        return cls(cfg, divergence.kind, divergence.visibility, counters, suffix, divergence.step,
                   divergence.message, divergence.counter, events)

    @property
    def record_key(self) -> Hashable:
        """What a search counts as one kind of finding: its kind and visibility (a search keeps
        a few candidates per coarse cause within it, `vpmu.explore.causes.Candidates`)."""
        return (self.kind, self.visibility)

    @property
    def actions(self) -> tuple[Action, ...]:
        """The whole replayable sequence: set-up prefix, then the explored steps."""
        return setup_prefix(self.cfg, self.counters, self.events) + self.suffix

    @property
    def assumptions(self) -> tuple[str, ...]:
        """The host-timing assumptions its explored steps rest on (`vpmu.assumptions`)."""
        return assumptions_of(self.suffix)


def _quiet(r: Observation, k: Observation) -> bool:
    """Both machines show the same thing and neither overflowed: nothing new to judge."""
    return (not r.signals and not k.signals and not r.pmis and not k.pmis
            and r.counters == k.counters and r.global_status == k.global_status
            and r.lvtpc == k.lvtpc and r.results == k.results)


def _balanced(ref_obs: Sequence[Observation], kvm_obs: Sequence[Observation]) -> bool:
    """No obligation is open at the end: same status, as many PMIs, and every reference wrap
    matched by one KVM overflow signal per counter."""
    if not ref_obs:
        return True
    if ref_obs[-1].global_status != kvm_obs[-1].global_status:
        return False
    if sum(len(o.pmis) for o in ref_obs) != sum(len(o.pmis) for o in kvm_obs):
        return False
    wraps: dict[int, int] = {}
    for o in ref_obs:
        for s in o.signals:
            wraps[s.pmc] = wraps.get(s.pmc, 0) + 1
    for o in kvm_obs:
        for s in o.signals:
            if s.source in ("hw", "emulated"):
                wraps[s.pmc] = wraps.get(s.pmc, 0) - 1
    return not any(wraps.values())


@dataclass(slots=True)
class Node:
    """A search state: both machines after `path`, their observations, and whether every
    overflow obligation is settled (then a quiet next step needs no judging)."""

    path: tuple[Action, ...]
    ref: Machine
    kvm: Machine
    ref_obs: list[Observation]
    kvm_obs: list[Observation]
    balanced: bool = True

    def key(self) -> tuple[Hashable, Hashable]:
        return (self.kvm.state_key(), self.ref.state_key())

    def copy(self) -> Node:
        """An independent node in the same state (both machines cloned)."""
        return Node(self.path, self.ref.clone(), self.kvm.clone(), list(self.ref_obs), list(self.kvm_obs),
                    self.balanced)


class Judge:
    """Untolerated divergences of an open-ended trace (the search may extend it)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.cfg = target.cfg
        self.options = target.checker_options

    def __call__(self, ref_obs: Sequence[Observation], kvm_obs: Sequence[Observation]) -> list[Divergence]:
        divs = compare(self.cfg, ref_obs, kvm_obs, self.options, open_end=True)
        return [d for d in divs if not d.tolerated]

    def root(self, path: Sequence[Action]) -> tuple[Node, list[Divergence]]:
        """Run `path` from fresh machines."""
        ref, kvm = self.target.machines()
        ro = [ref.step(a) for a in path]
        ko = [kvm.step(a) for a in path]
        divs = self(ro, ko)
        return Node(tuple(path), ref, kvm, ro, ko, _balanced(ro, ko)), divs

    def advance(self, node: Node, action: Action, copy: bool = True) -> tuple[Node, list[Divergence]]:
        """One step from `node` (cloned unless `copy` is False); judge only when needed."""
        ref, kvm = (node.ref.clone(), node.kvm.clone()) if copy else (node.ref, node.kvm)
        r, k = ref.step(action), kvm.step(action)
        ro, ko = node.ref_obs + [r], node.kvm_obs + [k]
        child = Node(node.path + (action,), ref, kvm, ro, ko)
        if node.balanced and _quiet(r, k):
            return child, []
        child.balanced = _balanced(ro, ko)
        return child, self(ro, ko)
