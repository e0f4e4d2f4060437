"""Named host-timing assumptions: what a trace asks of real hardware beyond the kernel's code.

Some actions are choices the host makes, not the guest, and some of those choices are only
plausible under a documented hardware behaviour. Each such behaviour has a name (a contract:
`vpmu explore --assume`, JSON `assumptions`), so a finding says what it rests on. The evidence
for each is in docs/kvm-model.md ("Host PMI timing") and docs/facts/kvm-vpmu.md §2.13.

* `pmi-skid` — a host PMI stays in flight while the guest retires further instructions
  (`Native(hold_pmi=True)`). Hardware documents PMI skid.
* `pmi-after-handler` — a PMI still in flight at a VM-exit is delivered after KVM's exit
  handler (`host_pmi: after-handler`). Needs a delivery latency longer than the exit
  handling; Linux perf's AMD driver documents late-arriving PMI NMIs.
* `perf-create-fails` — the host cannot create the perf event backing a counter
  (`PerfFail(True)`), e.g. when host users hold every hardware counter.
* `live-save-restore` — userspace rewrites the PMU MSRs of a vCPU whose counters are running
  (`SaveRestore`: KVM_GET_MSRS + KVM_SET_MSRS without stopping them first), as a VMM restoring
  a snapshot into a running VM does when it does not toggle GLOBAL_CTRL (docs/findings.md F4).
  Not a timing of the hardware but a behaviour of the VMM: a trace that rests on it says so.
"""

from __future__ import annotations

from collections.abc import Iterable

from vpmu import actions as A
from vpmu.errors import VpmuError

#: Assumption name -> one-line meaning (the order is the order names are listed in).
ASSUMPTIONS: dict[str, str] = {
    "pmi-skid": "a host PMI stays in flight while the guest retires further instructions",
    "pmi-after-handler": "a host PMI in flight at a VM-exit lands after KVM's exit handler",
    "perf-create-fails": "the host fails to create the perf event backing a counter",
    "live-save-restore": "userspace rewrites the PMU MSRs of a vCPU whose counters are running",
}

#: What `vpmu check` allows unless told otherwise: PMI skid (every PMU shows it) and perf
#: creation failure, but neither `pmi-after-handler` nor `live-save-restore`. A verdict on a
#: patch rests on what the guest does under timing every host shows; a race that needs a PMI
#: delivery latency longer than KVM's exit handling (docs/kvm-model.md "Host PMI timing") and a
#: VMM rewriting live counters (F4) are opt-in with `--assume`.
CHECK_DEFAULT = ("pmi-skid", "perf-create-fails")


def action_assumptions(action: A.Action | A.EmulatedItem) -> frozenset[str]:
    """The assumptions one action (or emulated item) rests on."""
    out: set[str] = set()
    if isinstance(action, A.Native) and action.hold_pmi:
        out.add("pmi-skid")
    if getattr(action, "host_pmi", "before-handler") == "after-handler":
        out.add("pmi-after-handler")
    if isinstance(action, A.PerfFail) and action.on:
        out.add("perf-create-fails")
    if isinstance(action, A.SaveRestore):
        out.add("live-save-restore")
    if isinstance(action, A.Emulate | A.Batch):
        for item in action.items:
            out |= action_assumptions(item)
    return frozenset(out)


def assumptions_of(actions: Iterable[A.Action]) -> tuple[str, ...]:
    """Every assumption the actions rest on, in `ASSUMPTIONS` order."""
    used: set[str] = set()
    for action in actions:
        used |= action_assumptions(action)
    return tuple(name for name in ASSUMPTIONS if name in used)


def parse_assumptions(text: str) -> tuple[str, ...]:
    """`--assume` text: comma-separated names, `all`, or `none`; unknown names raise."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if words == ["none"]:
        return ()
    if words == ["all"]:
        return tuple(ASSUMPTIONS)
    unknown = [w for w in words if w not in ASSUMPTIONS]
    if unknown or not words:
        raise VpmuError(f"--assume needs names of {', '.join(ASSUMPTIONS)} (or all, none), not {text!r}")
    return tuple(name for name in ASSUMPTIONS if name in words)


__all__ = ["ASSUMPTIONS", "CHECK_DEFAULT", "action_assumptions", "assumptions_of", "parse_assumptions"]
