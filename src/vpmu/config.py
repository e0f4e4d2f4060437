"""The guest PMU as CPUID and PERF_CAPABILITIES describe it.

`PmuConfig` is the single source of truth for what a guest's PMU has: vendor, version,
counter counts and widths, the v5 fixed-counter bitmap and full-width writes. Both the
architectural reference and the KVM model are built from one. Presets name common shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from vpmu.errors import ConfigError, shown
from vpmu.events import EventKind

Vendor = Literal["intel", "amd"]

#: Bit position of the first fixed counter in GLOBAL_CTRL/STATUS and in KVM's PMC index space.
FIXED_BASE = 32

INTEL_MAX_GP = 8
INTEL_MAX_FIXED = 4
AMD_LEGACY_GP = 4
AMD_CORE_MAX_GP = 6
#: AMD counters are 48 bits wide whatever guest CPUID says: AMD CPUID has no width field, and
#: KVM's amd_pmu_refresh() (svm/pmu.c) sets the GP bitmask to 2^48 - 1 (kvm-vpmu.md §1.2).
AMD_COUNTER_WIDTH = 48
#: Architectural events CPUID.0AH.EBX enumerates, by bit (SDM, CPUID leaf 0AH; x86-pmu.md A.1).
ARCH_EVENT_BITS: tuple[EventKind, ...] = ("cycles", "instructions", "ref_cycles", "llc_refs", "llc_misses", "branches",
                   "branch_misses", "slots")


@dataclass(frozen=True, slots=True)
class PmuConfig:
    """A validated guest PMU description (CPUID.0AH for Intel, 8000_0001h/8000_0022h for AMD).

    vendor:      "intel" or "amd".
    version:     Intel architectural PMU version 0-5 (0 = no PMU); AMD 0 (none), 1 (legacy
                 K7 MSRs, or the F15h core extension when `perfctr_core`), 2 (PerfMonV2).
    num_gp:      general-purpose counters (CPUID.0AH:EAX[15:8]; AMD 4, or up to 6 with core ext).
    gp_width:    GP counter width in bits (CPUID.0AH:EAX[23:16]; AMD 48).
    num_fixed:   contiguous fixed counters (CPUID.0AH:EDX[4:0], v2+).
    fixed_width: fixed counter width (CPUID.0AH:EDX[12:5], v2+).
    fixed_bitmap: v5 supported-fixed-counter bitmap (CPUID.0AH:ECX); 0 before v5.
    full_width_writes: IA32_PERF_CAPABILITIES bit 13 (IA32_A_PMCx aliases exist).
    pdcm:        CPUID.01H:ECX[15] (IA32_PERF_CAPABILITIES exists).
    perfctr_core: AMD CPUID 8000_0001h:ECX[23] (F15h PERF_CTL/CTR MSRs exist).
    unavailable_events: CPUID.0AH:EBX, Intel: bit i set = architectural event i (ARCH_EVENT_BITS)
                 is not available.
    event_vector_length: CPUID.0AH:EAX[31:24], Intel: how many EBX bits are valid; an event at
                 or above the length is not available either.
    name:        preset name, or "custom".

    Availability is enumeration only: the reference counts an unavailable event like any other
    (the hardware under a guest still counts it); KVM before 6.9 refuses to count it
    (`hw_event_available`, kvm-vpmu.md R12).
    """

    vendor: Vendor
    version: int
    num_gp: int
    gp_width: int = 48
    num_fixed: int = 0
    fixed_width: int = 48
    fixed_bitmap: int = 0
    full_width_writes: bool = False
    pdcm: bool = False
    perfctr_core: bool = False
    unavailable_events: int = 0
    event_vector_length: int = 7
    name: str = "custom"
    # derived once (the models ask for these on every step)
    _fixed_indices: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())
    _pmc_indices: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        _validate(self)
        fixed = tuple(i for i in range(INTEL_MAX_FIXED) if self.fixed_counter_exists(i))
        object.__setattr__(self, "_fixed_indices", fixed)
        object.__setattr__(self, "_pmc_indices", tuple(range(self.num_gp)) + tuple(FIXED_BASE + i for i in fixed))

    # --- derived facts -------------------------------------------------------------------

    @property
    def is_intel(self) -> bool:
        return self.vendor == "intel"

    @property
    def gp_mask(self) -> int:
        return (1 << self.gp_width) - 1

    @property
    def fixed_mask(self) -> int:
        return (1 << self.fixed_width) - 1

    @property
    def has_global_msrs(self) -> bool:
        """GLOBAL_CTRL/STATUS exist: Intel v2+, AMD PerfMonV2."""
        return self.version >= 2

    def fixed_counter_exists(self, i: int) -> bool:
        """Fixed counter i exists iff ECX[i] (v5 bitmap) or i < EDX[4:0] (SDM, CPUID.0AH)."""
        if not self.is_intel or self.version < 2 or not 0 <= i < INTEL_MAX_FIXED:
            return False
        return i < self.num_fixed or bool(self.fixed_bitmap >> i & 1)

    @property
    def fixed_indices(self) -> tuple[int, ...]:
        """Indices i of the fixed counters that exist (not their PMC index 32+i)."""
        return self._fixed_indices

    @property
    def pmc_indices(self) -> tuple[int, ...]:
        """Global PMC indices: GP i -> i, fixed i -> 32+i (the GLOBAL_STATUS bit layout)."""
        return self._pmc_indices

    def width_of(self, pmc_idx: int) -> int:
        return self.fixed_width if pmc_idx >= FIXED_BASE else self.gp_width

    def mask_of(self, pmc_idx: int) -> int:
        return (1 << self.width_of(pmc_idx)) - 1

    @property
    def global_ctrl_valid_bits(self) -> int:
        """Bits of GLOBAL_CTRL (and STATUS overflow bits) that name existing counters."""
        bits = 0
        for idx in self.pmc_indices:
            bits |= 1 << idx
        return bits

    @property
    def global_ctrl_reset(self) -> int:
        """GLOBAL_CTRL after RESET: every GP counter enabled, fixed counters not (SDM; AMD PPR)."""
        return (1 << self.num_gp) - 1 if self.has_global_msrs else 0

    def with_width(self, width: int) -> PmuConfig:
        """The same PMU with every counter `width` bits wide (the explorer's small widths;
        Intel only, AMD counters are always AMD_COUNTER_WIDTH bits)."""
        return replace(self, gp_width=width, fixed_width=width)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def describe(self) -> str:
        if self.vendor == "intel":
            fixed = f", {len(self.fixed_indices)} fixed x {self.fixed_width} bits" if (
                self.fixed_indices
            ) else ""
            fw = ", full-width writes" if self.full_width_writes else ""
            return f"Intel arch PMU v{self.version}: {self.num_gp} GP x {self.gp_width} bits{fixed}{fw}"
        kind = {0: "no PMU", 1: "core extension" if self.perfctr_core else "legacy K7",
                2: "PerfMonV2"}[self.version]
        return f"AMD {kind}: {self.num_gp} counters x {self.gp_width} bits"


def _check(ok: bool, field: str, reason: str) -> None:
    if not ok:
        raise ConfigError(field, reason)


def _validate(c: PmuConfig) -> None:
    _check(c.vendor in ("intel", "amd"), "vendor", f"must be 'intel' or 'amd', not {shown(c.vendor)}")
    for name in ("version", "num_gp", "gp_width", "num_fixed", "fixed_width", "fixed_bitmap",
                 "unavailable_events", "event_vector_length"):
        value = getattr(c, name)
        _check(isinstance(value, int) and not isinstance(value, bool), name,
               f"must be an integer, not {shown(value)}")
    _check(2 <= c.gp_width <= 64, "gp_width", f"must be 2..64 bits, not {shown(c.gp_width)}")
    _check(2 <= c.fixed_width <= 64, "fixed_width", f"must be 2..64 bits, not {shown(c.fixed_width)}")
    for name in ("full_width_writes", "pdcm", "perfctr_core"):
        _check(isinstance(getattr(c, name), bool), name, f"must be true or false, not {shown(getattr(c, name))}")
    _check(0 <= c.unavailable_events <= 0xFFFF_FFFF, "unavailable_events",
           f"is CPUID.0AH:EBX, a 32-bit vector, not {shown(c.unavailable_events)}")
    _check(0 <= c.event_vector_length <= 0xFF, "event_vector_length",
           f"is CPUID.0AH:EAX[31:24], 0..255, not {shown(c.event_vector_length)}")
    if c.vendor == "intel":
        _check(0 <= c.version <= 5, "version", f"Intel architectural PMU versions are 0..5, not {shown(c.version)}")
        _check(not c.perfctr_core, "perfctr_core", "is an AMD feature")
        if c.version == 0:
            _check(c.num_gp == 0, "num_gp", "version 0 has no architectural PMU, so no counters")
        _check(0 <= c.num_gp <= INTEL_MAX_GP, "num_gp", f"must be 0..{INTEL_MAX_GP}, not {shown(c.num_gp)}")
        _check(0 <= c.num_fixed <= INTEL_MAX_FIXED, "num_fixed",
               f"must be 0..{INTEL_MAX_FIXED}, not {shown(c.num_fixed)}")
        if c.version < 2:
            _check(c.num_fixed == 0, "num_fixed", "fixed counters need version 2 or later")
        _check(0 <= c.fixed_bitmap < 1 << INTEL_MAX_FIXED, "fixed_bitmap",
               f"must name fixed counters 0..{INTEL_MAX_FIXED - 1}, not {shown(c.fixed_bitmap)}")
        if c.version < 5:
            _check(c.fixed_bitmap == 0, "fixed_bitmap", "the fixed-counter bitmap is a version 5 feature")
        if c.full_width_writes:
            _check(c.pdcm, "full_width_writes",
                   "needs pdcm (IA32_PERF_CAPABILITIES exists only with CPUID.01H:ECX.PDCM)")
    else:
        _check(0 <= c.version <= 2, "version",
               f"AMD PMU versions are 0 (none), 1, 2 (PerfMonV2), not {shown(c.version)}")
        _check(c.num_fixed == 0 and c.fixed_bitmap == 0, "num_fixed", "AMD has no fixed counters")
        _check(not c.full_width_writes, "full_width_writes", "is an Intel feature")
        _check(not c.pdcm, "pdcm", "is an Intel feature")
        _check(c.unavailable_events == 0, "unavailable_events", "is Intel's CPUID.0AH:EBX; AMD has no such leaf")
        _check(c.gp_width == AMD_COUNTER_WIDTH and c.fixed_width == AMD_COUNTER_WIDTH, "gp_width",
               f"AMD counters are always {AMD_COUNTER_WIDTH} bits wide (KVM's amd_pmu_refresh ignores guest "
               f"CPUID for the width), not {c.gp_width}")
        if c.version == 0:
            _check(c.num_gp == 0, "num_gp", "version 0 has no PMU, so no counters")
        elif c.version == 2:
            _check(c.perfctr_core, "perfctr_core", "PerfMonV2 implies the core extension")
        if c.version >= 1 and not c.perfctr_core:
            _check(c.num_gp == AMD_LEGACY_GP, "num_gp", "legacy K7 PMUs have exactly 4 counters")
        if c.perfctr_core and c.version == 1:
            _check(c.num_gp == AMD_CORE_MAX_GP, "num_gp",
                   f"the core extension without PerfMonV2 has exactly {AMD_CORE_MAX_GP} counters "
                   f"(KVM's amd_pmu_refresh), not {shown(c.num_gp)}")
        if c.version == 2:
            _check(1 <= c.num_gp <= AMD_CORE_MAX_GP, "num_gp",
                   f"PerfMonV2 enumerates 1..{AMD_CORE_MAX_GP} core counters (NumCorePmc), not {shown(c.num_gp)}")


PRESETS: dict[str, PmuConfig] = {
    p.name: p
    for p in (
        PmuConfig("intel", 1, 4, 48, name="intel-v1"),
        PmuConfig("intel", 2, 4, 48, 3, 48, full_width_writes=True, pdcm=True, name="intel-v2"),
        PmuConfig("intel", 4, 8, 48, 3, 48, full_width_writes=True, pdcm=True, name="intel-v4"),
        PmuConfig("intel", 5, 8, 48, 3, 48, fixed_bitmap=0b111, full_width_writes=True, pdcm=True,
                  name="intel-v5"),
        PmuConfig("amd", 1, 4, 48, name="amd-k7"),
        PmuConfig("amd", 1, 6, 48, perfctr_core=True, name="amd-core"),
        PmuConfig("amd", 2, 6, 48, perfctr_core=True, name="amd-perfmon-v2"),
    )
}

PRESET_SUMMARY: dict[str, str] = {
    "intel-v1": "Intel v1: 4 GP x 48 bits, no fixed counters, no global MSRs",
    "intel-v2": "Intel v2: 4 GP / 3 fixed x 48 bits, full-width writes (KVM's usual guest PMU)",
    "intel-v4": "Intel v4: 8 GP / 3 fixed x 48 bits, GLOBAL_STATUS_SET/INUSE",
    "intel-v5": "Intel v5: 8 GP / 3 fixed x 48 bits, fixed-counter bitmap",
    "amd-k7": "AMD legacy: 4 counters x 48 bits at the K7 MSRs",
    "amd-core": "AMD core extension (F15h+): 6 counters x 48 bits",
    "amd-perfmon-v2": "AMD PerfMonV2 (Zen4+): 6 counters x 48 bits, global control/status",
}


def preset(name: str) -> PmuConfig:
    """Look a preset up by name; unknown names list the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError("preset", f"unknown preset {shown(name)} (known: {known})") from None


_FIELDS = {f.name for f in fields(PmuConfig) if f.init and f.name != "name"}


def config_from_mapping(data: dict[str, Any]) -> PmuConfig:
    """Build a config from a mapping: `preset:` plus overrides, or every field spelled out."""
    data = dict(data)
    base = data.pop("preset", None)
    unknown = set(data) - _FIELDS
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unknown field (known: preset, {', '.join(sorted(_FIELDS))})")
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError("preset", f"must be a preset name, not {shown(base)}")
        cfg = preset(base)
        return replace(cfg, name=f"{base}+custom" if data else base, **data)
    if "vendor" not in data:
        raise ConfigError("vendor", "required when no preset is given")
    if "version" not in data or "num_gp" not in data:
        raise ConfigError("version" if "version" not in data else "num_gp",
                          "required when no preset is given")
    return PmuConfig(**data)
