"""PMU MSR addresses and names (spec architecture-and-peers.md A.2, kvm-vpmu.md §1.3).

Names are accepted case-insensitively wherever an MSR is expected; numbers too. Existence
per PMU version is *not* decided here (that is each model's job); this module only maps
names to addresses and back.
"""

from __future__ import annotations

from vpmu.errors import UnknownMsrError, shown

# Intel
IA32_PMC0 = 0x0C1            # legacy counter writes, sign-extended from bit 31
IA32_PERFEVTSEL0 = 0x186
IA32_A_PMC0 = 0x4C1          # full-width alias (PERF_CAPABILITIES bit 13)
IA32_FIXED_CTR0 = 0x309
IA32_PERF_CAPABILITIES = 0x345
IA32_FIXED_CTR_CTRL = 0x38D
IA32_PERF_GLOBAL_STATUS = 0x38E
IA32_PERF_GLOBAL_CTRL = 0x38F
IA32_PERF_GLOBAL_OVF_CTRL = 0x390   # STATUS_RESET from v4
IA32_PERF_GLOBAL_STATUS_SET = 0x391  # v4+
IA32_PERF_GLOBAL_INUSE = 0x392       # v4+
X2APIC_LVTPC = 0x834                 # LAPIC LVT performance-counter entry (x2APIC MSR)

# AMD
MSR_K7_EVNTSEL0 = 0xC001_0000
MSR_K7_PERFCTR0 = 0xC001_0004
MSR_F15H_PERF_CTL0 = 0xC001_0200     # CTLn = 0xC0010200 + 2n, CTRn = CTLn + 1
MSR_AMD64_PERF_CNTR_GLOBAL_STATUS = 0xC000_0300
MSR_AMD64_PERF_CNTR_GLOBAL_CTL = 0xC000_0301
MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR = 0xC000_0302
MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET = 0xC000_0303

#: MSRs KVM's x86.c ignores (writes dropped, reads 0) instead of #GP when the vPMU has no such
#: counter or event select (spec kvm-vpmu.md §2.2): K7 EVNTSEL0-3 / PERFCTR0-3, P6 EVNTSEL0/1,
#: PERFCTR0/1.
LEGACY_PMU_MSRS = frozenset(
    [MSR_K7_EVNTSEL0 + i for i in range(4)] + [MSR_K7_PERFCTR0 + i for i in range(4)]
    + [IA32_PERFEVTSEL0, IA32_PERFEVTSEL0 + 1, IA32_PMC0, IA32_PMC0 + 1]
)

PERF_CAP_FW_WRITES = 1 << 13
#: GLOBAL_STATUS OvfBuf (62) and CondChgd (63): defined on every Intel v2+ PMU (SDM; Linux
#: GLOBAL_STATUS_BUFFER_OVF_BIT, GLOBAL_STATUS_COND_CHG).
GLOBAL_STATUS_OVF_BUF = 1 << 62
GLOBAL_STATUS_COND_CHGD = 1 << 63
LVTPC_MASKED = 1 << 16
LVTPC_DELIVERY_NMI = 0b100 << 8
LVTPC_RESET = LVTPC_MASKED


def _build_names() -> dict[str, int]:
    names: dict[str, int] = {}
    for i in range(8):
        names[f"IA32_PMC{i}"] = IA32_PMC0 + i
        names[f"IA32_PERFEVTSEL{i}"] = IA32_PERFEVTSEL0 + i
        names[f"IA32_A_PMC{i}"] = IA32_A_PMC0 + i
    for i in range(4):
        names[f"IA32_FIXED_CTR{i}"] = IA32_FIXED_CTR0 + i
        names[f"MSR_K7_EVNTSEL{i}"] = MSR_K7_EVNTSEL0 + i
        names[f"MSR_K7_PERFCTR{i}"] = MSR_K7_PERFCTR0 + i
    for n in range(6):
        names[f"MSR_F15H_PERF_CTL{n}"] = MSR_F15H_PERF_CTL0 + 2 * n
        names[f"MSR_F15H_PERF_CTR{n}"] = MSR_F15H_PERF_CTL0 + 2 * n + 1
    names.update(
        IA32_PERF_CAPABILITIES=IA32_PERF_CAPABILITIES,
        IA32_FIXED_CTR_CTRL=IA32_FIXED_CTR_CTRL,
        IA32_PERF_GLOBAL_STATUS=IA32_PERF_GLOBAL_STATUS,
        IA32_PERF_GLOBAL_CTRL=IA32_PERF_GLOBAL_CTRL,
        IA32_PERF_GLOBAL_OVF_CTRL=IA32_PERF_GLOBAL_OVF_CTRL,
        IA32_PERF_GLOBAL_STATUS_SET=IA32_PERF_GLOBAL_STATUS_SET,
        IA32_PERF_GLOBAL_INUSE=IA32_PERF_GLOBAL_INUSE,
        X2APIC_LVTPC=X2APIC_LVTPC,
        MSR_AMD64_PERF_CNTR_GLOBAL_STATUS=MSR_AMD64_PERF_CNTR_GLOBAL_STATUS,
        MSR_AMD64_PERF_CNTR_GLOBAL_CTL=MSR_AMD64_PERF_CNTR_GLOBAL_CTL,
        MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR=MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR,
        MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET=MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET,
    )
    return names


#: Canonical name -> address. Canonical names are what traces and reports print.
CANONICAL: dict[str, int] = _build_names()

#: Extra spellings accepted on input (Linux msr-index.h names, SDM v4 names).
ALIASES: dict[str, int] = {
    "IA32_PERF_GLOBAL_STATUS_RESET": IA32_PERF_GLOBAL_OVF_CTRL,
    "MSR_CORE_PERF_GLOBAL_STATUS": IA32_PERF_GLOBAL_STATUS,
    "MSR_CORE_PERF_GLOBAL_CTRL": IA32_PERF_GLOBAL_CTRL,
    "MSR_CORE_PERF_GLOBAL_OVF_CTRL": IA32_PERF_GLOBAL_OVF_CTRL,
    "MSR_CORE_PERF_FIXED_CTR_CTRL": IA32_FIXED_CTR_CTRL,
    "LVTPC": X2APIC_LVTPC,
    **{f"MSR_IA32_PERFCTR{i}": IA32_PMC0 + i for i in range(8)},
    **{f"MSR_P6_EVNTSEL{i}": IA32_PERFEVTSEL0 + i for i in range(8)},
    **{f"MSR_IA32_PMC{i}": IA32_A_PMC0 + i for i in range(8)},
    **{f"MSR_CORE_PERF_FIXED_CTR{i}": IA32_FIXED_CTR0 + i for i in range(4)},
}

_LOOKUP = {k.upper(): v for k, v in {**CANONICAL, **ALIASES}.items()}
_NAME_OF = {v: k for k, v in CANONICAL.items()}
MAX_MSR = 0xFFFF_FFFF


def resolve_msr(msr: int | str) -> int:
    """An MSR address from a number or a (case-insensitive) name; unknown names raise."""
    if isinstance(msr, bool):
        raise UnknownMsrError(f"not an MSR: {shown(msr)}")
    if isinstance(msr, int):
        if not 0 <= msr <= MAX_MSR:
            raise UnknownMsrError(f"MSR number {msr:#x} is outside 0..0xffffffff")
        return msr
    text = msr.strip()
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return _LOOKUP[text.upper()]
    except KeyError:
        raise UnknownMsrError(f"unknown MSR name {shown(msr)}") from None


def msr_name(addr: int) -> str:
    """Canonical name of an address, or its hex form when no PMU MSR has that number."""
    return _NAME_OF.get(addr, f"{addr:#x}")
