"""The kernel-audit fixes (docs/kvm-model.md "Audit fixes"): host access to PERF_CAPABILITIES,
the u8 FIXED_CTR_CTRL snapshot, PMU MSRs by number, RDPMC's #GP before the intercept, AMD
widths and counts, PerfMonV2 per era, and the 6.6.y stable era."""

from __future__ import annotations

import pytest

from vpmu import msrs as M
from vpmu.actions import Action, Cpuid, HostRdmsr, HostWrmsr, Native, Rdmsr, Rdpmc, Wrmsr
from vpmu.config import PmuConfig, preset
from vpmu.eras import ERAS
from vpmu.errors import ConfigError
from vpmu.events import make_eventsel
from vpmu.kvm_msr import kvm_set_msr_common
from vpmu.run import run_actions
from vpmu.world import World, WorldOptions

INTEL, AMD_V2, AMD_K7 = preset("intel-v2"), preset("amd-perfmon-v2"), preset("amd-k7")
NO_PDCM = PmuConfig("intel", 2, 4, 48, 3, 48)
FW = M.PERF_CAP_FW_WRITES


def one(world: World, action: Action) -> tuple[int | None, bool]:
    r = world.step(action).results[-1]
    return r.value, r.fault


# --- PERF_CAPABILITIES: PDCM gates guest accesses only --------------------------------------


@pytest.mark.parametrize("era", list(ERAS))
def test_perf_capabilities_without_pdcm_host_reads_zero_and_restores_zero(era: str) -> None:
    w = World(NO_PDCM, era)
    assert one(w, HostRdmsr(M.IA32_PERF_CAPABILITIES)) == (0, False)
    assert one(w, HostWrmsr(M.IA32_PERF_CAPABILITIES, 0)) == (None, False)
    # a non-zero value: stored (and never used) before d75cac366f44, refused from v6.13
    assert one(w, HostWrmsr(M.IA32_PERF_CAPABILITIES, FW)) == (None, ERAS[era].perf_caps_host_needs_pdcm)
    assert one(w, Rdmsr(M.IA32_PERF_CAPABILITIES)) == (None, True)      # guest: CPUID.PDCM = 0
    assert one(w, Wrmsr(M.IA32_A_PMC0, 1)) == (None, True)                # never full-width without PDCM


def test_amd_host_perf_capabilities_is_zero_and_takes_only_zero() -> None:
    w = World(AMD_V2, "6.9")
    assert one(w, HostRdmsr(M.IA32_PERF_CAPABILITIES)) == (0, False)
    assert one(w, HostWrmsr(M.IA32_PERF_CAPABILITIES, 0)) == (None, False)
    assert one(w, HostWrmsr(M.IA32_PERF_CAPABILITIES, FW)) == (None, True)   # not supported by the host
    assert run_actions(AMD_V2, "6.9", [HostRdmsr(M.IA32_PERF_CAPABILITIES),
                                       HostWrmsr(M.IA32_PERF_CAPABILITIES, 0)]).divergences == ()


@pytest.mark.parametrize("era", list(ERAS))
def test_perf_capabilities_change_before_the_first_run_and_after(era: str) -> None:
    w = World(INTEL, era)
    assert one(w, HostWrmsr(M.IA32_PERF_CAPABILITIES, 0)) == (None, False)   # no KVM_RUN yet: accepted
    assert one(w, Wrmsr(M.IA32_A_PMC0, 1)) == (None, True)                   # full-width aliases gone
    assert one(w, HostWrmsr(M.IA32_PERF_CAPABILITIES, FW)) == (None, ERAS[era].feature_msrs_immutable_after_run)
    assert one(w, HostWrmsr(M.IA32_PERF_CAPABILITIES, 0)) == (None, False)   # the same value: always fine
    acts: list[Action] = [HostWrmsr(M.IA32_PERF_CAPABILITIES, 0), Wrmsr(M.IA32_A_PMC0, 1),
                          HostWrmsr(M.IA32_PERF_CAPABILITIES, FW)]
    # the reference refuses a change after the CPU ran: 6.1 (before 0094f62c7eaa) diverges
    labels = {d.label for d in run_actions(INTEL, era, acts).divergences}
    assert labels == (set() if ERAS[era].feature_msrs_immutable_after_run else {"missing-fault"})


@pytest.mark.parametrize("era", list(ERAS))
def test_version_0_with_full_width_writes(era: str) -> None:
    """CPUID version 0 with PDCM and FW_WRITES: valid, no counters; KVM refuses to *set* a
    non-zero PERF_CAPABILITIES at version 0 until a1039111192b (v6.13)."""
    v0 = PmuConfig("intel", 0, 0, pdcm=True, full_width_writes=True)
    w = World(v0, era)
    assert one(w, Rdmsr(M.IA32_PERF_CAPABILITIES)) == (FW, False)
    assert one(w, Wrmsr(M.IA32_A_PMC0, 1)) == (None, True) and one(w, Rdpmc(0)) == (None, True)
    plain = World(PmuConfig("intel", 0, 0, pdcm=True), era)
    refused = ERAS[era].perf_caps_need_pmu_version
    assert one(plain, HostWrmsr(M.IA32_PERF_CAPABILITIES, FW)) == (None, refused)


# --- the u8 snapshot of FIXED_CTR_CTRL -----------------------------------------------------------


@pytest.mark.parametrize("era", list(ERAS))
def test_fixed_counter_2_cannot_be_disabled_with_the_u8_snapshot(era: str) -> None:
    acts: list[Action] = [HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1 << 34), Wrmsr(M.IA32_FIXED_CTR_CTRL, 0x300),
                          Native(5, ref_cycles=5), Wrmsr(M.IA32_FIXED_CTR_CTRL, 0), Native(5, ref_cycles=5)]
    res = run_actions(INTEL, era, acts)
    fixed2 = INTEL.pmc_indices.index(34)
    assert res.ref_obs[-1].counters[fixed2] == 5
    assert res.kvm_obs[-1].counters[fixed2] == (10 if ERAS[era].fixed_ctr_ctrl_u8_snapshot else 5)


@pytest.mark.parametrize("era", ["6.6", "6.6.y"])
def test_the_u8_snapshot_reprograms_fixed_2_on_any_change(era: str) -> None:
    w = World(INTEL, era)
    w.step(Wrmsr(M.IA32_FIXED_CTR_CTRL, 0x300))
    k = w.kvm
    assert kvm_set_msr_common(k, M.IA32_FIXED_CTR_CTRL, 0x303, False)
    touched = k.pmu.reprogram_pmi >> 32 & 0b111
    assert touched == (0b101 if ERAS[era].fixed_ctr_ctrl_u8_snapshot else 0b001)


# --- PMU MSRs by number ----------------------------------------------------------------------------


@pytest.mark.parametrize("era", [e for e in ERAS if ERAS[e].amd_perfmon_v2])
def test_intel_global_msr_numbers_on_amd_perfmon_v2_keep_intel_rules(era: str) -> None:
    w = World(AMD_V2, era)
    assert one(w, Wrmsr(M.IA32_PERF_GLOBAL_STATUS, 0)) == (None, True)        # read-only, Intel rule
    assert one(w, Wrmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, 1)) == (None, False)  # AMD number: ignored
    assert one(w, Wrmsr(M.IA32_PERF_GLOBAL_CTRL, 1 << 40)) == (None, True)    # reserved bit: #GP
    assert one(w, Wrmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL, (1 << 40) | 1)) == (None, False)  # trimmed
    assert one(w, Rdmsr(M.IA32_PERF_GLOBAL_CTRL)) == (1, False)
    assert one(w, Wrmsr(M.IA32_PERF_GLOBAL_OVF_CTRL, 1 << 40)) == (None, True)
    assert one(w, Rdmsr(M.IA32_PERF_GLOBAL_OVF_CTRL)) == (0, False)
    assert one(w, HostWrmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, 1 << 40)) == (None, True)


def test_amd_without_perfmon_v2_support_is_version_1() -> None:
    """KVM 6.1 predates PerfMonV2 (4a2771895ca6, v6.5): version 1, the core extension's 6."""
    w = World(PmuConfig("amd", 2, 3, perfctr_core=True), "6.1")
    assert (w.kvm.pmu.version, w.kvm.pmu.nr_arch_gp_counters) == (1, 6)
    assert one(w, Rdmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL)) == (None, True)
    assert one(w, Rdmsr(M.IA32_PERF_GLOBAL_CTRL)) == (None, True)
    assert one(w, Wrmsr(M.MSR_F15H_PERF_CTL0 + 10, 0)) == (None, False)       # counter 5 exists


def test_host_global_status_reserved_bits_before_6_5() -> None:
    old, new = World(INTEL, "6.1"), World(INTEL, "6.6")
    assert one(old, HostWrmsr(M.IA32_PERF_GLOBAL_STATUS, 1 << 40)) == (None, False)
    assert one(old, Rdmsr(M.IA32_PERF_GLOBAL_STATUS)) == (1 << 40, False)
    assert one(new, HostWrmsr(M.IA32_PERF_GLOBAL_STATUS, 1 << 40)) == (None, True)


# --- RDPMC's #GP comes before the intercept ---------------------------------------------------------


def held_overflow(cfg: PmuConfig) -> list[Action]:
    """A host PMI in flight (skid): the next VM-exit lands it."""
    sel, ctr = (M.IA32_PERFEVTSEL0, M.IA32_A_PMC0) if cfg.is_intel else (M.MSR_K7_EVNTSEL0, M.MSR_K7_PERFCTR0)
    ctl = M.IA32_PERF_GLOBAL_CTRL if cfg.is_intel else M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL
    return [HostWrmsr(sel, make_eventsel(0xC0, intr=True)), HostWrmsr(ctl, 1), HostWrmsr(ctr, cfg.gp_mask - 2),
            Native(5, hold_pmi=True)]


@pytest.mark.parametrize(("cfg", "rdpmc", "exits"), [
    (INTEL, Rdpmc(0, cpl=3, pce=False), False),   # privilege #GP in hardware
    (INTEL, Rdpmc(9), True),                      # a bad Intel index exits, KVM injects the #GP
    (AMD_V2, Rdpmc(0, cpl=3, pce=False), False),
    (AMD_V2, Rdpmc(7), False),                    # on AMD every RDPMC exception beats the intercept
    (AMD_K7, Rdpmc(5), True),                     # the host has that counter: exit, KVM #GPs
])
def test_rdpmc_faults_raised_by_hardware_take_no_vm_exit(cfg: PmuConfig, rdpmc: Rdpmc, exits: bool) -> None:
    w = World(cfg, "6.9")
    for a in held_overflow(cfg):
        w.step(a)
    obs = w.step(rdpmc)
    assert obs.results[-1].fault
    assert len(obs.pmis) == (1 if exits else 0)                  # the held PMI lands at an exit only
    assert len(w.step(Cpuid()).pmis) == (0 if exits else 1)


def test_vmware_backdoor_intercepts_the_privilege_gp() -> None:
    w = World(INTEL, "6.9", options=WorldOptions(enable_vmware_backdoor=True))
    for a in held_overflow(INTEL):
        w.step(a)
    obs = w.step(Rdpmc(0, cpl=3, pce=False))
    assert obs.results[-1].fault and len(obs.pmis) == 1          # an exit (#GP intercept), then #GP


# --- AMD widths and counter counts -----------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(vendor="amd", version=1, num_gp=5, perfctr_core=True), "num_gp"),
    (dict(vendor="amd", version=1, num_gp=6, gp_width=40, perfctr_core=True), "gp_width"),
    (dict(vendor="amd", version=2, num_gp=7, perfctr_core=True), "num_gp"),
])
def test_amd_counters_are_48_bits_and_the_core_extension_has_6(kwargs: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        PmuConfig(**kwargs)
    assert err.value.field == field
    assert PmuConfig("amd", 2, 3, perfctr_core=True).num_gp == 3    # PerfMonV2 chooses 1..6
    with pytest.raises(ConfigError, match="48 bits"):
        AMD_V2.with_width(4)


# --- the 6.6.y stable era --------------------------------------------------------------------------------


def test_6_6_y_is_6_6_plus_the_backports() -> None:
    tag, stable = ERAS["6.6"], ERAS["6.6.y"]
    changed = {f for f in tag.__dataclass_fields__ if getattr(tag, f) != getattr(stable, f)}
    assert changed == {"name", "description", "fixed_ctr_ctrl_u8_snapshot", "lvtpc_auto_mask",
                       "global_ctrl_reset_enables_gp", "amd_refresh_without_pmu", "amd_global_status_set"}
    amd = World(AMD_V2, "6.6.y")
    assert one(amd, Wrmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET, 1)) == (None, False)
    assert one(amd, Rdmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS)) == (1, False)
    assert one(World(INTEL, "6.6.y"), Rdmsr(M.IA32_PERF_GLOBAL_CTRL)) == (0xF, False)


def test_the_era_table_in_the_docs_is_the_code() -> None:
    """docs/kvm-model.md's switch table lists every switch with each era's value."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "kvm-model.md").read_text(encoding="utf-8")
    assert "| Switch | " + " | ".join(ERAS) + " | Meaning |" in doc

    def show(v: object) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        return ",".join(x.upper() for x in v) if isinstance(v, tuple) else str(v)

    switches = [f for f in ERAS["6.1"].__dataclass_fields__ if f not in ("name", "description")]
    for f in switches:
        row = f"| `{f}` | " + " | ".join(show(getattr(e, f)) for e in ERAS.values()) + " |"
        assert row in doc, f
