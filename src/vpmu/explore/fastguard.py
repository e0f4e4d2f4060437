"""A run-time guard for a user design's fast form: before the compact kernel searches with it,
step the kernel and the object models side by side and refuse the kernel on the first
difference.

A design's `fast` (vpmu.designs.FastForm) must compute exactly what its object hooks compute;
the built-ins are held to it by tests/test_compact.py, but nothing else checks a user's. One
that disagrees makes the kernel search another design than the one under review, and a
regression the hooks have goes unseen. So wherever a user design (one not in
`vpmu.designs.DESIGNS`) is about to run on the kernel, `guarded_plan` first walks a few
hundred seeded random steps of the configuration's own alphabet on both engines (restarting
from the set-up every few steps, each walk on a few letters, so that rare interleavings come
up) and compares, after every step, the compact state with the encoded object state, the
guest-visible counters (the fast `read`) and the step's observation. The first difference is
one line naming the steps that led to it; the caller then runs the object engine and prints
that line, as for any configuration the kernel does not cover.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from vpmu import msrs
from vpmu.actions import Action, Batch, Cpuid, Emulate, Native, Rdmsr, Rdpmc, Wrmsr
from vpmu.designs import DESIGNS
from vpmu.errors import one_line
from vpmu.pmc_map import counter_name
from vpmu.reference import ReferenceMachine
from vpmu.trace import Observation
from vpmu.world import World

from .compact import Plan, plan
from .compact.layout import StepObs
from .judge import Target
from .space import Bounds

#: Steps the guard walks on both engines: a few hundred object-model steps, ~0.1 s.
GUARD_STEPS = 300

#: The compact state's global slots and per-counter slots, as a difference names them
#: (vpmu.explore.compact.layout's order).
_GLOBAL_SLOTS = ("KVM's GLOBAL_STATUS", "KVM's LVTPC mask bit", "the reference's GLOBAL_STATUS",
                 "the reference's LVTPC mask bit", "the event filter", "pmc_in_use",
                 "the paused PMCs not in use", "the held host PMI's age")
_COUNTER_SLOTS = ("counter", "prev_counter", "emulated_counter", "event select enable", "perf sample_period",
                  "perf count", "perf enabled", "perf period_left", "perf armed", "perf overflow pending",
                  "paused", "reference value")
#: The design's own fields, first in each counter's slots.
_FIELDS = 3


def guarded_plan(target: Target, bounds: Bounds, steps: int = GUARD_STEPS, seed: int = 0) -> Plan | str:
    """`vpmu.explore.compact.plan`, and for a user design (not in DESIGNS) whose fast form
    disagrees with its hooks (`fast_form_disagreement`) that one-line reason instead of the
    plan: the caller runs the object engine and prints it. `target` as `plan` takes it (the
    CPU narrowed to the bounds' width, the world's skid set)."""
    p = plan(target, bounds)
    if isinstance(p, str) or target.design is None or target.design in DESIGNS:
        return p
    return fast_form_disagreement(p, steps, seed) or p


def fast_form_disagreement(p: Plan, steps: int = GUARD_STEPS, seed: int = 0) -> str | None:
    """None when `steps` seeded random steps of `p`'s alphabet give the same compact state,
    guest-visible counters and observation on the kernel as on the object models (the fast
    form and the hooks agree there); else one line naming the first step that differs and
    what differs. Deterministic: the same plan, steps and seed walk the same steps."""
    rng = random.Random(f"fast-form:{seed}")
    length = max(p.bounds.depth, 8)
    actions = p.monitor.letters
    taken = 0
    while taken < steps:
        few = rng.sample(range(len(p.letters)), k=min(len(p.letters), rng.randint(1, 4)))
        ref, world = p.target.machines()
        insn = 0  # guest instructions retired so far (the reference's count)
        for a in p.prefix:
            insn = ref.step(a).insn
            world.step(a)
        state, path = p.root, []
        for _ in range(min(length, steps - taken)):
            li = rng.choice(few)
            path.append(actions[li])
            taken += 1
            try:  # the kernel calls the fast form in its step and for the guest-visible values
                state, obs = p.kernel.step(state, p.letters[li])
                fast = p.shown(state)[1]
            except Exception as e:  # noqa: BLE001 - the user's fast form: any failure is a disagreement
                return _reason(p, path, f"the fast form raised {type(e).__name__}: {one_line(str(e), 120)}")
            r, k = ref.step(actions[li]), world.step(actions[li])
            what = _difference(p, state, obs, fast, ref, world, r, k, insn)
            if what is not None:
                return _reason(p, path, what)
            insn = r.insn
    return None


def _difference(p: Plan, state: tuple[int, ...], obs: StepObs, fast: tuple[int, ...], ref: ReferenceMachine,
                world: World, r: Observation, k: Observation, start: int) -> str | None:
    """What differs after one step between the kernel (`state`, `obs`, the guest-visible
    values `fast`) and the object models (their machines `ref`, `world`, this step's
    observations `r`, `k`; `start` instructions had retired before it), or None."""
    encoded = p.kernel.encode(ref, world)
    if encoded is None:
        return "the hooks leave a state the fast form cannot hold (e.g. a field in pmc.extra)"
    if encoded != state:
        i = next(i for i, (a, b) in enumerate(zip(state, encoded, strict=True)) if a != b)
        return _slot(p, i, state, encoded)
    positions = [p.target.cfg.pmc_indices.index(i) for i in p.counters]
    hooks = tuple(k.counters[n] for n in positions)
    if fast != hooks:
        return f"the guest reads {_named(p, fast)} by the fast form, {_named(p, hooks)} by the hooks"
    objects: StepObs = (r.insn - start, tuple((x.value, x.fault) for x in r.results),
               tuple((x.value, x.fault) for x in k.results), tuple(n - start for n in r.pmis),
               tuple(n - start for n in k.pmis), tuple((s.pmc, s.insn - start, s.source) for s in r.signals),
               tuple((s.pmc, s.insn - start, s.source) for s in k.signals))
    parts = ("instructions retired", "the reference's results", "KVM's results (RDPMC, RDMSR values)",
             "the reference's PMIs", "KVM's PMIs", "the reference's overflow signals", "KVM's overflow signals")
    for name, mine, theirs in zip(parts, obs, objects, strict=True):
        if mine != theirs:
            return f"{name}: {mine} by the fast form, {theirs} by the hooks"
    return None


def _slot(p: Plan, i: int, fast: tuple[int, ...], hooks: tuple[int, ...]) -> str:
    """The state slot `i` that differs, named; a design field shows all three fields."""
    if i < len(_GLOBAL_SLOTS):
        return f"{_GLOBAL_SLOTS[i]} is {fast[i]} by the fast form, {hooks[i]} by the hooks"
    j, off = divmod(i - len(_GLOBAL_SLOTS), len(_COUNTER_SLOTS))
    name = counter_name(p.counters[j])
    base = len(_GLOBAL_SLOTS) + j * len(_COUNTER_SLOTS)
    if off < _FIELDS:
        f, h = fast[base:base + _FIELDS], hooks[base:base + _FIELDS]
        return f"{name} (counter, prev_counter, emulated_counter) is {f} by the fast form, {h} by the hooks"
    return f"{name} {_COUNTER_SLOTS[off]} is {fast[i]} by the fast form, {hooks[i]} by the hooks"


def _named(p: Plan, values: Sequence[int]) -> str:
    return ", ".join(f"{counter_name(c)}={v}" for c, v in zip(p.counters, values, strict=True))


def _reason(p: Plan, path: Sequence[Action], what: str) -> str:
    """The one line the caller prints (`engine: object (...)`)."""
    design = p.target.design
    steps = ", ".join(_describe(a) for a in path)
    return (f"design {design!r}: its fast form disagrees with its hooks after {len(path)} step"
            f"{'' if len(path) == 1 else 's'} past the set-up ({steps}): {what} (docs/designs.md)")


def _describe(a: Action) -> str:
    """A short label of an explored action (the explorer cannot use the report's)."""
    match a:
        case Native():
            return f"native {a.count}" + (" held" if a.hold_pmi else "")
        case Wrmsr():
            return f"WRMSR {msrs.msr_name(a.msr)}={a.value:#x}"
        case Rdmsr():
            return f"RDMSR {msrs.msr_name(a.msr)}"
        case Rdpmc():
            return f"RDPMC {a.ecx:#x}"
        case Batch() | Emulate():
            return f"{a.KIND} of {len(a.items)}"
        case Cpuid() if a.host_pmi == "after-handler":
            return "CPUID (host PMI after handler)"
    return str(a.KIND)
