"""Emulated instructions by name: which ones retire as branches, for KVM's emulator and for the
architecture (docs/kvm-model.md "Emulated instructions by name").

KVM counts "branch instructions retired" for an instruction its emulator completes when the
decoded opcode carries the `IsBranch` flag (x86.c `x86_emulate_instruction`, flag added to the
opcode tables of emulate.c by 018d70ffcfec, v5.17). ENTER and LEAVE carried the flag until
e8f85d7884e0 (v6.18, "Don't treat ENTER and LEAVE as branches, because they aren't"), which
says hardware does not count them; the architecture here follows that. Every other name below
has the same class in KVM and in the architecture.
"""

from __future__ import annotations

from typing import Literal

from vpmu.errors import VpmuError

InsnClass = Literal["branch", "stack", "plain"]

#: Name -> class. "branch": IsBranch in every modelled era and a branch architecturally (Jcc,
#: JMP, CALL, RET, LOOPcc, JCXZ, INT/INT3/INTO, IRET, far transfers, SYSCALL, SYSENTER,
#: SYSEXIT); "stack": ENTER/LEAVE (IsBranch before v6.18, not a branch architecturally);
#: "plain": an instruction without IsBranch.
INSNS: dict[str, InsnClass] = {
    **dict.fromkeys(("jcc", "jmp", "jmp_far", "call", "call_far", "ret", "ret_far", "loop", "loope",
                     "loopne", "jcxz", "int", "int3", "into", "iret", "syscall", "sysenter", "sysexit"),
                    "branch"),
    "enter": "stack",
    "leave": "stack",
    **dict.fromkeys(("nop", "mov", "add", "sub", "and", "or", "xor", "cmp", "test", "inc", "dec", "push",
                     "pop", "lea", "xchg", "cpuid", "rdtsc"), "plain"),
}


def insn_class(name: str) -> InsnClass:
    """The class of instruction `name`; a one-line error names the known ones."""
    try:
        return INSNS[name]
    except KeyError:
        raise VpmuError(f"unknown instruction name {name!r} (known: {', '.join(sorted(INSNS))}; "
                        "rdmsr, wrmsr and rdpmc are items of their own)") from None


def retires_as_branch(name: str, *, enter_leave_are_branches: bool) -> bool:
    """Whether `name` counts as a branch: KVM's emulator with the era's IsBranch table, or the
    architecture (enter_leave_are_branches=False)."""
    cls = insn_class(name)
    return cls == "branch" or (cls == "stack" and enter_leave_are_branches)
