"""The compact state's layout: slot offsets, letter opcodes and the shape of a step's
observation (vpmu.explore.compact.machine builds states and letters, .kstep runs them)."""

from __future__ import annotations

#: Global slots: KVM's GLOBAL_STATUS and LVTPC mask bit, the reference's GLOBAL_STATUS and
#: LVTPC mask bit, the deny filter installed (both machines), KVM's pmc_in_use bitmap, which
#: PMCs not in use are marked paused (a reprogram of one does that), and the age of
#: an in-flight host PMI (World.pmi_age).
K_STATUS, K_MASKED, R_STATUS, R_MASKED, FILTER, IN_USE, UNUSED_PAUSED, AGE = range(8)
GLOBALS = 8
#: Per-counter slots (offsets from the counter's base): KVM's design fields, the event
#: select's enable bit (both machines), the perf event (sample period, count, enabled,
#: period_left, armed, overflow pending), KVM's paused flag, the reference's value.
C, P, E, EN, PERIOD, COUNT, ENABLED, LEFT, ARMED, PENDING, PAUSED, REF = range(12)
STRIDE = 12

# Letter opcodes (`Kernel.letter`).
OP_NATIVE, OP_EXIT, OP_HOSTPMI, OP_BATCH, OP_WRCTR, OP_RDPMC, OP_RDSTATUS, OP_CLEAR, OP_LVTPC, OP_TOGGLE, \
    OP_EMULATE, OP_SETFILTER, OP_CLEARFILTER, OP_SAVERESTORE = range(14)
#: Where an exit's in-flight host PMI lands: before or after KVM's handler.
BEFORE, AFTER = 0, 1

#: KVM request bits (vpmu.kvm's REQ_*), as the step keeps them.
REQ_PMU, REQ_PMI, REQ_NMI, REQ_EVENT = 1, 2, 4, 8

#: A step's observation, compact: (instructions retired, reference results, KVM results,
#: reference PMIs, KVM PMIs, reference signals, KVM signals); PMIs and signals carry the
#: instructions retired in the step before them, results are (value or None, fault).
Result_ = tuple[int | None, bool]
Signal_ = tuple[int, int, str]
StepObs = tuple[int, tuple[Result_, ...], tuple[Result_, ...], tuple[int, ...], tuple[int, ...],
                tuple[Signal_, ...], tuple[Signal_, ...]]
Letter = tuple[int, ...]

# The compiled kernel's buffers (vpmu.explore.compact.kstep writes them, .compiled reads them).
#: A letter as a row of LETTER_WIDTH ints: its opcode and operands, zero-padded.
LETTER_WIDTH = 4
#: A step's observation as one row of ints: instructions retired; results as pairs (reference
#: value, KVM value; NONE for a write's "no value"); reference PMIs; KVM PMIs; reference
#: signals; KVM signals (triples: PMC index, instructions retired in the step before it, source
#: as an index into SOURCES). Each section starts with its count. A step that would write more
#: than a section holds sets O_FULL instead (its caller then cannot use the row).
MAX_RES, MAX_PMIS, MAX_SIGS = 8, 16, 32
NONE = -1
O_T, O_NRES, O_RES = 0, 1, 2
O_NRPMI = O_RES + 2 * MAX_RES
O_RPMI = O_NRPMI + 1
O_NKPMI = O_RPMI + MAX_PMIS
O_KPMI = O_NKPMI + 1
O_NRSIG = O_KPMI + MAX_PMIS
O_RSIG = O_NRSIG + 1
O_NKSIG = O_RSIG + 3 * MAX_SIGS
O_KSIG = O_NKSIG + 1
O_FULL = O_KSIG + 3 * MAX_SIGS
OBS_LEN = O_FULL + 1
SOURCES = ("wrap", "hw", "emulated", "ignored", "min-period", "disallowed")

#: The configuration's constants as one row of ints (`Kernel.params()`): counters in use, their
#: width mask, the skid bound, the index bits of every valid PMC and of those not in use; the
#: era's switches (0/1: pmi_via_irq_work, snapshot_reprogram_bitmap, the LVTPC auto-mask for the
#: vendor, mask_counter_writes); the era's request order as up to 3 REQ_* bits (0 pads); then
#: per counter j its PMC index at P_IDX + P_STRIDE * j and hw_avail (0/1) at P_HW + P_STRIDE * j.
P_N, P_MASK, P_SKID, P_ALL_IN_USE, P_UNUSED, P_IRQ_WORK, P_SNAPSHOT, P_AUTO_MASK, P_MASK_WRITES = range(9)
P_ORDER = 9
P_IDX, P_HW = 12, 13
P_STRIDE = 2
#: A step's scratch (`kstep.step_row` zeroes it): instructions retired so far, KVM requests
#: (REQ_*), the reprogram bitmap (bit j: counter j; bit 62: every PMC not in use), NMIs queued
#: and pending at the local APIC.
X_T, X_REQ, X_REPROGRAM, X_NMI_QUEUED, X_NMI_PENDING = range(5)
SCRATCH_LEN = 5


def params_len(n: int) -> int:
    """The length of the parameter row of `n` counters in use."""
    return P_IDX + P_STRIDE * n
