"""Checker unit tests with hand-built observations: every divergence kind, visibility,
tolerance options and the report-once rule."""

from __future__ import annotations

import re

import pytest

from vpmu import msrs as M
from vpmu.actions import Batch, Cpuid, HostWrmsr, Insn, Native, Rdmsr, Rdpmc, Wrmsr
from vpmu.checker import compare
from vpmu.config import preset
from vpmu.divergence import (
    KINDS,
    Divergence,
    Kind,
    Visibility,
    divergence_label,
    failed,
    parse_divergence_label,
    summary,
)
from vpmu.errors import VpmuError
from vpmu.tolerances import CheckerOptions, options_from_mapping, parse_option
from vpmu.trace import Observation, Result, Signal

CFG = preset("intel-v2")  # gp0-3, fixed0-2
Z = (0, 0, 0, 0, 0, 0, 0)
LV = 0x400


def ctr(gp0: int, fixed1: int = 0) -> tuple[int, ...]:
    return (gp0, 0, 0, 0, 0, fixed1, 0)


def ob(step: int, action: object, insn: int, *, counters: tuple[int, ...] = Z, status: int = 0,
       pmis: tuple[int, ...] = (), signals: tuple[Signal, ...] = (), results: tuple[Result, ...] = (),
       lvtpc: int = LV) -> Observation:
    return Observation(step, action, insn, results, counters, status, lvtpc, pmis, signals)  # type: ignore[arg-type]


def kinds(divs: list[Divergence]) -> list[tuple[str, str, bool]]:
    return [(d.kind, d.visibility, d.tolerated) for d in divs]


SETUP = HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFFE)


def test_identical_runs_have_no_divergence() -> None:
    obs = [ob(0, SETUP, 0, counters=ctr(0xFFFF_FFFF_FFFE)), ob(1, Native(1), 1, counters=ctr(0xFFFF_FFFF_FFFF))]
    assert compare(CFG, obs, obs) == []
    assert summary([]) == "ok" and not failed([])


def test_wrong_value_reported_once_while_it_persists() -> None:
    ref = [ob(i, Native(1), i + 1, counters=ctr(i + 1)) for i in range(4)]
    kvm = [ob(i, Native(1), i + 1, counters=ctr(i + (0 if i in (1, 2) else 1))) for i in range(4)]
    kvm.append(ob(4, Native(1), 5, counters=ctr(9)))
    ref.append(ob(4, Native(1), 5, counters=ctr(5)))
    divs = compare(CFG, ref, kvm)
    assert [(d.kind, d.step, d.counter, d.expected, d.observed) for d in divs] == [
        ("wrong-value", 1, "gp0", 2, 1), ("wrong-value", 4, "gp0", 5, 9)]
    assert summary(divs) == "FAIL wrong-value"


def test_wrong_value_of_a_read_names_the_counter() -> None:
    a = Rdpmc(0x40000001)  # fixed1
    ref = [ob(0, a, 1, results=(Result(7),))]
    kvm = [ob(0, a, 1, results=(Result(6),))]
    (d,) = compare(CFG, ref, kvm)
    assert (d.kind, d.counter, d.expected, d.observed) == ("wrong-value", "fixed1", 7, 6)


def test_lost_overflow_guest_and_missing_pmi() -> None:
    b = Batch((Insn(), Insn(), Insn()))
    ref = [ob(0, b, 3, counters=ctr(1), status=1, pmis=(2,), signals=(Signal(0, 2, "wrap"),))]
    kvm = [ob(0, b, 3, counters=ctr(1), status=0)]
    divs = compare(CFG, ref, kvm)
    assert kinds(divs) == [("lost-overflow", "guest", False), ("missing-pmi", "guest", False)]
    assert divs[0].counter == "gp0" and divs[0].step == 0


def test_lost_overflow_when_the_guest_clears_before_kvm_shows_it() -> None:
    ref = [ob(0, Native(1), 1, status=1, signals=(Signal(0, 1, "wrap"),)),
           ob(1, Wrmsr(M.IA32_PERF_GLOBAL_OVF_CTRL, 1), 2, status=0, results=(Result(None),))]
    kvm = [ob(0, Native(1), 1, status=0, signals=(Signal(0, 1, "hw"),)),
           ob(1, Wrmsr(M.IA32_PERF_GLOBAL_OVF_CTRL, 1), 2, status=0, results=(Result(None),))]
    assert kinds(compare(CFG, ref, kvm)) == [("lost-overflow", "guest", False)]


def test_internal_duplicate_signal_is_spurious_overflow() -> None:
    n = Native(100, hold_pmi=True)
    ref = [ob(0, n, 100, status=1, pmis=(100,), signals=(Signal(0, 100, "wrap"),)),
           ob(1, Cpuid(), 101, status=1, counters=ctr(1))]
    kvm = [ob(0, n, 100, status=1, pmis=(100,)),
           ob(1, Cpuid(), 101, status=1, counters=ctr(1),
              signals=(Signal(0, 101, "hw"), Signal(0, 101, "emulated")))]
    divs = compare(CFG, ref, kvm)
    assert kinds(divs) == [("spurious-overflow", "internal", False)]
    assert "second signal" in divs[0].message
    assert summary(divs) == "FAIL spurious-overflow (internal)"
    tolerant = compare(CFG, ref, kvm, CheckerOptions(r2_duplicate_signal=True))
    assert kinds(tolerant) == [("spurious-overflow", "internal", True)]


def test_internal_lost_overflow_without_guest_effect() -> None:
    # status already set from an earlier wrap: the second wrap's loss is only visible internally
    ref = [ob(0, Native(1), 1, status=1, signals=(Signal(0, 1, "wrap"),)),
           ob(1, Native(1), 2, status=1, signals=(Signal(0, 2, "wrap"),))]
    kvm = [ob(0, Native(1), 1, status=1, signals=(Signal(0, 1, "hw"),)), ob(1, Native(1), 2, status=1)]
    assert kinds(compare(CFG, ref, kvm)) == [("lost-overflow", "internal", False)]


def test_spurious_overflow_guest() -> None:
    ref = [ob(0, Native(5), 5, counters=ctr(5))]
    kvm = [ob(0, Native(5), 5, counters=ctr(5), status=1, signals=(Signal(0, 5, "emulated"),))]
    divs = compare(CFG, ref, kvm)
    assert kinds(divs) == [("spurious-overflow", "guest", False)]


def test_late_overflow_inside_batch_is_r1_tolerated() -> None:
    b = Batch((Insn(), Insn(), Rdmsr(M.IA32_PERF_GLOBAL_STATUS)))
    ref = [ob(0, b, 3, counters=ctr(1), status=1, pmis=(2,), signals=(Signal(0, 2, "wrap"),),
              results=(Result(1),))]
    kvm = [ob(0, b, 3, counters=ctr(1), status=1, pmis=(3,), signals=(Signal(0, 3, "emulated"),),
              results=(Result(0),))]
    divs = compare(CFG, ref, kvm)
    assert kinds(divs) == [("late-overflow", "guest", True), ("late-pmi", "guest", True)]
    assert {d.relaxation for d in divs} == {"R1"}
    assert summary(divs) == "ok (2 tolerated)"
    strict = compare(CFG, ref, kvm, CheckerOptions(r1_vm_entry=False))
    assert kinds(strict) == [("late-overflow", "guest", False), ("late-pmi", "guest", False)]


def test_late_overflow_across_steps_is_not_r1() -> None:
    ref = [ob(0, Cpuid(), 1, status=1, signals=(Signal(0, 1, "wrap"),)), ob(1, Cpuid(), 2, status=1)]
    kvm = [ob(0, Cpuid(), 1, status=0), ob(1, Cpuid(), 2, status=1, signals=(Signal(0, 2, "emulated"),))]
    assert kinds(compare(CFG, ref, kvm)) == [("late-overflow", "guest", False)]


def _late_hw(delay: int) -> tuple[list[Observation], list[Observation]]:
    """A hardware wrap at insn 1 that KVM signals (status and PMI) `delay` instructions late."""
    ref = [ob(0, Native(1), 1, status=1, pmis=(1,), signals=(Signal(0, 1, "wrap"),)),
           ob(1, Native(3), 4, status=1)]
    kvm = [ob(0, Native(1), 1, status=0),
           ob(1, Native(3), 4, status=1, pmis=(1 + delay,), signals=(Signal(0, 1 + delay, "hw"),))]
    return ref, kvm


def test_hardware_overflow_one_event_late_is_r3() -> None:
    ref, kvm = _late_hw(1)
    divs = compare(CFG, ref, kvm)
    assert kinds(divs) == [("late-overflow", "guest", True), ("late-pmi", "guest", True)]
    assert {d.relaxation for d in divs} == {"R3"}
    assert failed(compare(CFG, ref, kvm, CheckerOptions(r3_min_period=False)))


def test_r3_tolerates_exactly_one_event() -> None:
    """The R3 window is one event (perf's minimum period 2): two events late is a bug."""
    divs = compare(CFG, *_late_hw(2))
    assert kinds(divs) == [("late-overflow", "guest", False), ("late-pmi", "guest", False)]


def test_held_host_pmi_skid() -> None:
    n = Native(10, hold_pmi=True)
    ref = [ob(0, n, 10, status=1, pmis=(10,), signals=(Signal(0, 10, "wrap"),)), ob(1, Native(5), 15, status=1)]
    kvm = [ob(0, n, 10), ob(1, Native(5), 15, status=1, pmis=(15,), signals=(Signal(0, 15, "hw"),))]
    divs = compare(CFG, ref, kvm)
    assert kinds(divs) == [("late-overflow", "guest", True), ("late-pmi", "guest", True)]
    assert {d.relaxation for d in divs} == {"held-pmi"}
    assert failed(compare(CFG, ref, kvm, CheckerOptions(held_pmi_skid=False)))


def _held_run(kvm_step: int, held: int) -> tuple[list[Observation], list[Observation]]:
    """A wrap at the end of a held run, `held` - 1 more held runs, then plain runs of 5; KVM
    shows the overflow (status, hw signal, PMI) only in step `kvm_step`."""
    acts = [Native(10, hold_pmi=True)] * held + [Native(5)] * 3
    insns = [10 * (i + 1) for i in range(held)] + [10 * held + 5 * (i + 1) for i in range(3)]
    ref = [ob(i, a, n, status=1, pmis=(10,) if i == 0 else (), signals=(Signal(0, 10, "wrap"),) if i == 0 else ())
           for i, (a, n) in enumerate(zip(acts, insns, strict=True))]
    kvm = [ob(i, a, n, status=int(i >= kvm_step), pmis=(n,) if i == kvm_step else (),
              signals=(Signal(0, n, "hw"),) if i == kvm_step else ())
           for i, (a, n) in enumerate(zip(acts, insns, strict=True))]
    return ref, kvm


def test_held_pmi_window_ends_with_the_first_unheld_step() -> None:
    """docs/checker.md: a held wrap may show by the end of the first later step that is not a
    held run; one step later is not tolerated."""
    for held in (1, 2):
        ref, kvm = _held_run(held, held)          # lands in the first unheld step
        divs = compare(CFG, ref, kvm)
        assert kinds(divs) == [("late-overflow", "guest", True), ("late-pmi", "guest", True)]
        assert {d.relaxation for d in divs} == {"held-pmi"}
        ref, kvm = _held_run(held + 1, held)      # one step later
        assert kinds(compare(CFG, ref, kvm)) == [("late-overflow", "guest", False), ("late-pmi", "guest", False)]


def test_pmi_skid_option() -> None:
    ref = [ob(0, Native(3), 3, pmis=(1,), status=1, signals=(Signal(0, 1, "wrap"),))]
    kvm = [ob(0, Native(3), 3, pmis=(3,), status=1, signals=(Signal(0, 3, "hw"),))]
    assert kinds(compare(CFG, ref, kvm, CheckerOptions(r3_min_period=False))) == [("late-pmi", "guest", False)]
    assert compare(CFG, ref, kvm, CheckerOptions(pmi_skid=2)) == []


def test_extra_pmi() -> None:
    ref = [ob(0, Cpuid(), 1, status=1, pmis=(1,), signals=(Signal(0, 1, "wrap"),))]
    kvm = [ob(0, Cpuid(), 1, status=1, pmis=(1, 1), signals=(Signal(0, 1, "hw"), Signal(0, 1, "emulated")))]
    divs = compare(CFG, ref, kvm)
    assert ("extra-pmi", "guest", False) in kinds(divs)
    assert ("spurious-overflow", "internal", False) not in kinds(divs)  # already visible to the guest


def test_r7_ignored_hardware_overflow() -> None:
    ref = [ob(0, Native(1), 1, status=1, signals=(Signal(0, 1, "wrap"),))]
    kvm = [ob(0, Native(1), 1, signals=(Signal(0, 1, "ignored"),))]
    assert kinds(compare(CFG, ref, kvm)) == [("lost-overflow", "guest", False)]
    divs = compare(CFG, ref, kvm, CheckerOptions(r7_ignored_overflow=True))
    assert kinds(divs) == [("lost-overflow", "guest", True)] and divs[0].relaxation == "R7"


def test_r11_disallowed_overflow() -> None:
    ref = [ob(0, Cpuid(), 1, status=1, signals=(Signal(0, 1, "wrap"),))]
    kvm = [ob(0, Cpuid(), 1, signals=(Signal(0, 1, "disallowed"),))]
    assert failed(compare(CFG, ref, kvm))
    divs = compare(CFG, ref, kvm, CheckerOptions(r11_disallowed_overflow=True))
    assert kinds(divs) == [("lost-overflow", "guest", True)] and divs[0].relaxation == "R11"
    other = [ob(0, Cpuid(), 1, signals=(Signal(1, 1, "disallowed"),))]  # another PMC's loss
    assert failed(compare(CFG, ref, other, CheckerOptions(r11_disallowed_overflow=True)))


def test_faults_and_r14() -> None:
    w = Wrmsr(M.IA32_FIXED_CTR0 + 1, 1 << 50)
    ref = [ob(0, w, 0, results=(Result(None, True),))]
    kvm = [ob(0, w, 1, results=(Result(None, False),), counters=ctr(0, fixed1=0))]
    divs = compare(CFG, ref, kvm)
    assert kinds(divs) == [("missing-fault", "guest", True)] and divs[0].relaxation == "R14"
    assert failed(compare(CFG, ref, kvm, CheckerOptions(r14_truncation=False)))
    g = Wrmsr(M.IA32_PERFEVTSEL0, 0)
    ref2 = [ob(0, g, 1, results=(Result(None, False),))]
    kvm2 = [ob(0, g, 0, results=(Result(None, True),))]
    assert kinds(compare(CFG, ref2, kvm2)) == [("unexpected-fault", "guest", False)]
    ref3 = [ob(0, Wrmsr(M.IA32_A_PMC0, 1 << 50), 0, results=(Result(None, True),))]
    kvm3 = [ob(0, Wrmsr(M.IA32_A_PMC0, 1 << 50), 0, results=(Result(None, False),))]
    assert kinds(compare(CFG, ref3, kvm3)) == [("missing-fault", "guest", False)]


def test_lvtpc_mask_follows_pmis() -> None:
    ref = [ob(0, Cpuid(), 1, status=1, pmis=(1,), lvtpc=LV | M.LVTPC_MASKED, signals=(Signal(0, 1, "wrap"),))]
    kvm = [ob(0, Cpuid(), 1, status=1, pmis=(), lvtpc=LV, signals=(Signal(0, 1, "emulated"),))]
    assert kinds(compare(CFG, ref, kvm)) == [("missing-pmi", "guest", False)]  # no extra LVTPC report
    kvm2 = [ob(0, Cpuid(), 1, status=1, pmis=(1,), lvtpc=LV, signals=(Signal(0, 1, "emulated"),))]
    assert [d.kind for d in compare(CFG, ref, kvm2)] == ["wrong-value"]


def test_kinds_serialise_as_their_spelling_and_labels_round_trip() -> None:
    for kind in Kind:
        for vis in Visibility:
            d = Divergence(kind, vis, False, 3, "gp0", 2, 3, "x")
            out = d.to_dict()
            assert type(out["kind"]) is str and out["kind"] == kind.value
            assert type(out["visibility"]) is str and out["visibility"] == vis.value
            assert parse_divergence_label(d.label) == (kind, vis)
    assert divergence_label(Kind.LOST_OVERFLOW, Visibility.INTERNAL) == "lost-overflow (internal)"
    assert parse_divergence_label("lost-overflow (internl)") is None
    assert tuple(k.value for k in Kind) == KINDS


def test_options_parsing() -> None:
    assert parse_option("pmi-skid=2") == ("pmi_skid", 2)
    assert parse_option("r1_vm_entry=off") == ("r1_vm_entry", False)
    assert parse_option("r3-min-period = Yes") == ("r3_min_period", True)
    assert options_from_mapping({"r7_ignored_overflow": True}).r7_ignored_overflow


@pytest.mark.parametrize(("text", "message"), [
    ("nope", "option 'nope' must be NAME=VALUE"),
    ("r1_vm_entry=maybe", "option r1_vm_entry needs true or false, not 'maybe'"),
    ("pmi_skid=x", "option pmi_skid needs an integer, not 'x'"),
])
def test_a_bad_option_is_one_line_naming_it(text: str, message: str) -> None:
    with pytest.raises(VpmuError, match=f"^{re.escape(message)}$"):
        parse_option(text)


@pytest.mark.parametrize(("mapping", "message"), [
    ({"bogus": 1}, "unknown checker option 'bogus' (known: pmi_skid, r1_vm_entry, "),
    ({"pmi_skid": -1}, "checker option pmi_skid must be an integer >= 0, not -1"),
    ({"pmi_skid": True}, "checker option pmi_skid must be an integer >= 0, not true"),
    ({"r1_vm_entry": 1}, "checker option r1_vm_entry must be true or false, not 1"),
])
def test_a_bad_option_mapping_is_one_line_naming_it(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(VpmuError, match=f"^{re.escape(message)}"):
        options_from_mapping(mapping)


MASKED = LV | M.LVTPC_MASKED
UNMASK = Wrmsr(M.X2APIC_LVTPC, LV)


def fields(divs: list[Divergence]) -> list[tuple[object, ...]]:
    return [(d.kind, d.tolerated, d.relaxation, d.step, d.counter, d.expected, d.observed) for d in divs]


def _superseded(first_kvm_signals: tuple[Signal, ...] = ()) -> tuple[list[Observation], list[Observation]]:
    """Emulated wraps of gp0 at insns 1 and 5; the reference's first PMI masks its LVTPC, so it
    blocks the second; KVM loses the first wrap and delivers a PMI only for the second."""
    ref = [ob(0, Cpuid(), 1, status=1, pmis=(1,), lvtpc=MASKED, signals=(Signal(0, 1, "wrap"),)),
           ob(1, Native(3), 4, status=1, lvtpc=MASKED),
           ob(2, Cpuid(), 5, status=1, lvtpc=MASKED, signals=(Signal(0, 5, "wrap"),))]
    kvm = [ob(0, Cpuid(), 1, signals=first_kvm_signals),
           ob(1, Native(3), 4),
           ob(2, Cpuid(), 5, status=1, pmis=(5,), lvtpc=MASKED, signals=(Signal(0, 5, "emulated"),))]
    return ref, kvm


def test_a_pmi_for_a_later_wrap_is_a_missing_and_an_extra_pmi_not_a_late_one() -> None:
    divs = compare(CFG, *_superseded())
    assert fields(divs) == [("lost-overflow", False, None, 0, "gp0", 1, 0),
                            ("missing-pmi", False, None, 0, "gp0", 1, None),
                            ("extra-pmi", False, None, 2, "gp0", None, 5)]
    assert divs[1].message == ("the PMI for the wrap at insn 1 never comes under KVM (the PMI before insn 6 "
                               "is for the later wrap at insn 5)")
    assert divs[2].message == ("KVM delivers a PMI for the wrap at insn 5, which the reference blocked: its "
                               "LVTPC was masked by the earlier PMI that KVM never delivered")


def test_a_superseded_pmi_is_tolerated_as_the_loss_of_the_first_wrap() -> None:
    """Both halves take the relaxation of the lost first wrap (here R7, read from KVM's
    `ignored` signal at that wrap's step)."""
    ref, kvm = _superseded((Signal(0, 1, "ignored"),))
    assert failed(compare(CFG, ref, kvm))
    divs = compare(CFG, ref, kvm, CheckerOptions(r7_ignored_overflow=True))
    assert [(d.kind, d.relaxation) for d in divs] == [("lost-overflow", "R7"), ("missing-pmi", "R7"),
                                                      ("extra-pmi", "R7")]


def _late_pmi_masks_lvtpc() -> tuple[list[Observation], list[Observation]]:
    """A held wrap at insn 1: the reference's PMI masks the LVTPC at once and the guest then
    unmasks it; KVM's PMI lands one instruction late, after that write, and masks it again."""
    n = Native(1, hold_pmi=True)
    ref = [ob(0, n, 1, status=1, pmis=(1,), lvtpc=MASKED, signals=(Signal(0, 1, "wrap"),)),
           ob(1, UNMASK, 2, status=1, results=(Result(None),))]
    kvm = [ob(0, n, 1),
           ob(1, UNMASK, 2, status=1, pmis=(2,), lvtpc=MASKED, results=(Result(None),), signals=(Signal(0, 2, "hw"),))]
    return ref, kvm


def test_a_late_pmi_that_masks_the_lvtpc_after_the_guest_unmasked_it_takes_the_pmis_relaxation() -> None:
    ref, kvm = _late_pmi_masks_lvtpc()
    divs = compare(CFG, ref, kvm)
    assert fields(divs) == [("late-overflow", True, "held-pmi", 0, "gp0", "status by insn 1", "status at step 1"),
                            ("late-pmi", True, "held-pmi", 0, "gp0", 1, 2),
                            ("wrong-value", True, "held-pmi", 1, None, LV, MASKED)]
    assert divs[2].message == ("LVTPC after the action: reference 0x400, KVM 0x10400 (KVM's late PMI masked it "
                               "after the guest's write)")
    assert [d.relaxation for d in compare(CFG, ref, kvm, CheckerOptions(held_pmi_skid=False))] == ["R3"] * 3


def test_an_lvtpc_masked_by_an_untolerated_or_on_time_pmi_is_a_plain_wrong_value() -> None:
    ref, kvm = _late_pmi_masks_lvtpc()
    strict = compare(CFG, ref, kvm, CheckerOptions(held_pmi_skid=False, r3_min_period=False))
    assert fields(strict)[-1] == ("wrong-value", False, None, 1, None, LV, MASKED)
    assert strict[-1].message == "LVTPC after the action: reference 0x400, KVM 0x10400"
    on_time = compare(CFG, ref, kvm, CheckerOptions(pmi_skid=1))   # the PMI is not late at all
    assert fields(on_time)[-1] == ("wrong-value", False, None, 1, None, LV, MASKED)


def _blocked_second_wrap() -> tuple[list[Observation], list[Observation]]:
    """gp0 wraps at insns 1 and 2; both sides deliver the first PMI, which masks the LVTPC, so
    the reference blocks the second. KVM's hardware overflow for the second comes one event
    late (R3), after the guest unmasked the LVTPC, and is delivered."""
    ref = [ob(0, Native(1), 1, status=1, pmis=(1,), lvtpc=MASKED, signals=(Signal(0, 1, "wrap"),)),
           ob(1, Native(1), 2, status=1, lvtpc=MASKED, signals=(Signal(0, 2, "wrap"),)),
           ob(2, UNMASK, 3, status=1, results=(Result(None),))]
    kvm = [ob(0, Native(1), 1, status=1, pmis=(1,), lvtpc=MASKED, signals=(Signal(0, 1, "hw"),)),
           ob(1, Native(1), 2, status=1, lvtpc=MASKED),
           ob(2, UNMASK, 3, status=1, pmis=(3,), lvtpc=MASKED, results=(Result(None),), signals=(Signal(0, 3, "hw"),))]
    return ref, kvm


def test_a_late_pmi_for_a_wrap_the_reference_blocked_is_a_tolerated_extra_pmi() -> None:
    ref, kvm = _blocked_second_wrap()
    divs = compare(CFG, ref, kvm)
    assert fields(divs) == [("extra-pmi", True, "R3", 2, "gp0", None, 3)]
    assert divs[0].message == ("KVM delivers a PMI for the wrap at insn 2, which the reference blocked (LVTPC "
                               "masked at the wrap): KVM's late overflow arrives after the guest unmasked it")
    strict = compare(CFG, ref, kvm, CheckerOptions(r3_min_period=False))
    assert fields(strict) == [("extra-pmi", False, None, 2, "gp0", None, 3)]
    assert strict[0].message == "KVM delivers a PMI before insn 4 that the reference does not"
