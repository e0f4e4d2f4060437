"""Bad input gives the architecturally right fault (or KVM's documented behaviour), MSR
handlers per vendor, eras, and the design seam (registry, loader, user example)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from vpmu import msrs as M
from vpmu.actions import (
    Cpuid,
    HostRdmsr,
    HostWrmsr,
    Native,
    PerfFail,
    Rdmsr,
    Rdpmc,
    SaveRestore,
    SetFilter,
    Wrmsr,
)
from vpmu.backing import GuestCounters
from vpmu.config import preset
from vpmu.designs import (
    DESIGNS,
    CounterDesign,
    EmulatedCounterDesign,
    MediatedDesign,
    load_design,
    resolve_design,
)
from vpmu.eras import ERAS
from vpmu.errors import VpmuError
from vpmu.kvm import KvmPmc, KvmVcpu
from vpmu.trace import Observation
from vpmu.world import World, WorldOptions

ROOT = Path(__file__).resolve().parents[1]
INTEL, AMD_V2, AMD_K7 = preset("intel-v2"), preset("amd-perfmon-v2"), preset("amd-k7")


def one(world: World, action) -> tuple[int | None, bool]:  # type: ignore[no-untyped-def]
    r = world.step(action).results[0]
    return r.value, r.fault


@pytest.mark.parametrize("era", list(ERAS))
def test_intel_bad_input_faults_never_raises(era: str) -> None:
    w = World(INTEL, era)
    assert one(w, Wrmsr(0x12345, 1)) == (None, True)                  # unknown MSR
    assert one(w, Rdmsr(0x12345)) == (None, True)
    assert one(w, Wrmsr(M.IA32_PERF_GLOBAL_STATUS, 1)) == (None, True)  # read-only on Intel
    assert one(w, Rdpmc(7)) == (None, True)                           # missing GP counter
    assert one(w, Rdpmc(0x4000_0003)) == (None, True)                 # missing fixed counter
    assert one(w, Wrmsr(M.IA32_PERFEVTSEL0 + 4, 0)) == (None, True)   # beyond num_gp
    assert one(w, Wrmsr(M.IA32_PERFEVTSEL0, 1 << 21)) == (None, True)  # AnyThread reserved
    assert one(w, Wrmsr(M.IA32_A_PMC0, 1 << 48)) == (None, True)      # above width
    assert one(w, Wrmsr(M.IA32_PERF_GLOBAL_CTRL, 1 << 5)) == (None, True)
    assert one(w, Wrmsr(M.IA32_FIXED_CTR_CTRL, 0x4)) == (None, True)   # AnyThread bit
    assert one(w, Wrmsr(M.IA32_PERF_CAPABILITIES, 0)) == (None, True)  # host-only MSR
    assert one(w, Wrmsr(M.IA32_PERFEVTSEL0, 0, cpl=3)) == (None, True)  # privileged
    assert one(w, Rdpmc(0, cpl=3, pce=False)) == (None, True)
    assert one(w, Wrmsr(M.IA32_FIXED_CTR0, 1 << 50)) == (None, False)  # silently truncated
    assert one(w, Wrmsr(M.MSR_K7_EVNTSEL0, 5)) == (None, False)       # K7 range ignored
    assert one(w, Rdmsr(M.MSR_K7_PERFCTR0)) == (0, False)
    assert one(w, Rdmsr(M.IA32_PERF_GLOBAL_OVF_CTRL)) == (0, False)
    assert one(w, HostWrmsr(M.IA32_PERF_GLOBAL_STATUS, 1)) == (None, False)
    assert one(w, Rdmsr(M.IA32_PERF_GLOBAL_STATUS)) == (1, False)
    # a reserved GLOBAL_STATUS bit from the host: stored before 30dab5c0b65e (v6.5), refused after
    rsvd = one(w, HostWrmsr(M.IA32_PERF_GLOBAL_STATUS, 1 << 40))
    assert rsvd == (None, ERAS[era].global_status_host_rsvd_check)
    w.step(HostWrmsr(M.IA32_PERF_GLOBAL_STATUS, 1))
    assert one(w, Wrmsr(M.IA32_PERF_GLOBAL_STATUS_SET, 1)) == (None, True)  # not emulated
    assert one(w, Wrmsr(M.IA32_PERF_GLOBAL_OVF_CTRL, 1)) == (None, False)
    assert one(w, Rdmsr(M.IA32_PERF_GLOBAL_STATUS)) == (0, False)
    assert one(w, SetFilter("allow", tuple(range(301)))) == (None, True)  # -E2BIG


def test_rdpmc_decoding_per_era() -> None:
    seq = [HostWrmsr(M.IA32_A_PMC0, 0x1_2345_6789)]
    old, new = World(INTEL, "6.6"), World(INTEL, "6.9")
    for w in (old, new):
        w.step(seq[0])
    assert one(old, Rdpmc(0x8000_0000)) == (0x2345_6789, False)      # v6.6 fast mode: low 32 bits
    assert one(new, Rdpmc(0x8000_0000)) == (None, True)              # v6.9: other types #GP
    assert one(new, Rdpmc(0)) == (0x1_2345_6789, False)


def test_legacy_write_sign_extends_for_guest_only() -> None:
    w = World(INTEL, "6.9")
    w.step(Wrmsr(M.IA32_PMC0, 0xFFFF_FFFF))
    assert one(w, Rdmsr(M.IA32_A_PMC0)) == ((1 << 48) - 1, False)
    w.step(HostWrmsr(M.IA32_PMC0, 0xFFFF_FFFF))
    assert one(w, HostRdmsr(M.IA32_A_PMC0)) == (0xFFFF_FFFF, False)


@pytest.mark.parametrize("era", [e for e in ERAS if ERAS[e].amd_perfmon_v2])
def test_amd_msrs(era: str) -> None:
    w = World(AMD_V2, era)
    assert one(w, Wrmsr(M.IA32_PERF_GLOBAL_STATUS_SET, 1)) == (None, True)
    assert one(w, Wrmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, 1)) == (None, False)  # ignored
    assert one(w, Rdmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS)) == (0, False)
    assert one(w, Wrmsr(M.MSR_F15H_PERF_CTL0, (1 << 41) | 0x4300C0)) == (None, False)
    assert one(w, Rdmsr(M.MSR_K7_EVNTSEL0)) == (0x4300C0, False)      # reserved bit dropped
    assert one(w, Wrmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL, (1 << 63) | 1)) == (None, False)
    assert one(w, Rdmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL)) == (1, False)
    assert one(w, Wrmsr(M.MSR_F15H_PERF_CTL0 + 1, 1 << 60)) == (None, False)  # masked to 48 bits
    set_ok = one(w, Wrmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET, 2))
    assert set_ok == ((None, False) if ERAS[era].amd_global_status_set else (None, True))
    assert one(w, Rdpmc(6)) == (None, True)
    k7 = World(AMD_K7, era)
    assert one(k7, Wrmsr(M.MSR_F15H_PERF_CTL0, 0)) == (None, True)
    assert one(k7, Wrmsr(M.MSR_AMD64_PERF_CNTR_GLOBAL_CTL, 0)) == (None, True)


def test_amd_lvtpc_not_auto_masked_from_6_9() -> None:
    seq = [Wrmsr(M.MSR_K7_EVNTSEL0, 0x5300C0), Wrmsr(M.MSR_K7_PERFCTR0, (1 << 48) - 2), Cpuid()]
    for era, masked in (("6.8", True), ("6.9", False)):
        w = World(AMD_K7, era)
        obs = [w.step(a) for a in seq]
        assert obs[2].pmis == (3,)
        assert bool(obs[-1].lvtpc & M.LVTPC_MASKED) is masked


def test_userspace_apic_drops_pmis_and_perf_failure() -> None:
    seq = [HostWrmsr(M.IA32_PERFEVTSEL0, 0x5300C0), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1),
           HostWrmsr(M.IA32_A_PMC0, (1 << 48) - 1), Cpuid()]
    w = World(INTEL, "6.9", options=WorldOptions(lapic_in_kernel=False))
    obs = [w.step(a) for a in seq]
    assert obs[-1].global_status == 1 and obs[-1].pmis == ()
    assert one(w, Wrmsr(M.X2APIC_LVTPC, 0)) == (None, True)
    f = World(INTEL, "6.9")
    f.step(PerfFail(True))
    obs = [f.step(a) for a in [*seq[:3], Native(10)]]
    assert obs[-1].counters[0] == (1 << 48) - 1          # hardware counts lost (R3)
    assert f.kvm.pmu.gp_counters[0].perf_event is None   # creation failed: nothing counts


def test_save_restore_keeps_values() -> None:
    w = World(INTEL, "6.9")
    for a in [Wrmsr(M.IA32_PERFEVTSEL0, 0x4300C0), Native(50)]:
        w.step(a)
    before = w.step(Cpuid()).counters
    after = w.step(SaveRestore()).counters
    assert before == after and before[0] == 52


def test_design_registry_and_loader() -> None:
    assert set(DESIGNS) == {"prev-counter", "emulated-counter", "mediated"}
    assert all(ERAS[e].default_design in DESIGNS for e in ERAS)
    assert load_design("vpmu.designs:MediatedDesign") is DESIGNS["mediated"]
    with pytest.raises(VpmuError):
        World(INTEL, "6.5")


@pytest.mark.parametrize(("ref", "message"), [
    ("nope", "design reference 'nope' must look like 'module:Class' or 'file.py:Class'"),
    ("no.such.module:X", "no.such.module: design no.such.module:X: import: ModuleNotFoundError: No module named 'no'"),
    ("vpmu.designs:Nope", "design 'vpmu.designs:Nope': 'vpmu.designs' has no attribute 'Nope'"),
    ("vpmu.errors:VpmuError", "design 'vpmu.errors:VpmuError' is not a subclass of vpmu.designs.CounterDesign"),
    ("vpmu.designs:DESIGNS", "design 'vpmu.designs:DESIGNS' is not a subclass of vpmu.designs.CounterDesign"),
    ("vpmu.designs:CounterDesign",
     "design 'vpmu.designs:CounterDesign' does not implement: "
     "incr_counter, pause_counter, read_counter, write_counter"),
    ("missing/file.py:X", "design file 'missing/file.py' does not exist"),
    ("missing.py:X", "design file 'missing.py' does not exist"),
    ("missing\\dir:X", "design file 'missing\\\\dir' does not exist"),
])
def test_a_bad_design_reference_is_one_line_naming_what_is_wrong(ref: str, message: str) -> None:
    with pytest.raises(VpmuError, match=f"^{re.escape(message)}$"):
        load_design(ref)


def test_a_design_file_that_fails_or_is_no_python_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    ref = f"{broken}:X"
    with pytest.raises(VpmuError, match=f"^{re.escape(f'{broken}:1: design {ref}: import: RuntimeError: boom')}$"):
        load_design(ref)
    text = tmp_path / "design.txt"
    text.write_text("")
    with pytest.raises(VpmuError, match=f"^cannot load design file {re.escape(repr(str(text)))}$"):
        load_design(f"{text}:X")


def test_a_design_file_loads_as_one_registered_module_per_path() -> None:
    """The module is registered in sys.modules under a name fixed by the file's path, so that
    its classes can be found again by name (pickling to workers) and reloading is harmless."""
    ref = f"{ROOT / 'examples' / 'my_design.py'}:SnapshotBeforePerf"
    first, again = load_design(ref), load_design(ref)
    assert first.__module__ == again.__module__
    assert first.__module__.startswith("vpmu_user_design_") and len(first.__module__) == len("vpmu_user_design_") + 12
    assert sys.modules[first.__module__].SnapshotBeforePerf is again


def test_resolve_design_takes_a_name_a_reference_or_a_class() -> None:
    assert type(resolve_design(None, "mediated")) is MediatedDesign
    assert type(resolve_design("emulated-counter", "mediated")) is EmulatedCounterDesign
    assert type(resolve_design("vpmu.designs:MediatedDesign", "prev-counter")) is MediatedDesign
    assert type(resolve_design(EmulatedCounterDesign, "mediated")) is EmulatedCounterDesign
    with pytest.raises(VpmuError, match="^unknown design 'nope' \\(known: prev-counter, emulated-counter, mediated; "
                                        "or 'module:Class', 'path/to/file.py:Class', 'kernel:PATH'\\)$"):
        resolve_design("nope", "mediated")
    with pytest.raises(VpmuError, match="^not a counter design: <class 'int'>$"):
        resolve_design(int, "mediated")


def test_user_example_design_loads_and_reproduces_v1_duplicate() -> None:
    ref = f"{ROOT / 'examples' / 'my_design.py'}:SnapshotBeforePerf"
    cls = load_design(ref)
    assert issubclass(cls, CounterDesign)
    seq = [HostWrmsr(M.IA32_PERFEVTSEL0, 0x5300C0), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1),
           HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FF9C), Native(100, hold_pmi=True), Cpuid()]
    w = World(INTEL, "6.8", ref)
    obs = [w.step(a) for a in seq]
    assert [s.source for o in obs for s in o.signals] == ["hw", "emulated"]
    assert obs[-1].counters[0] == 1


class OldApiEmulatedCounter(EmulatedCounterDesign):
    """The hooks that use `request_counter_reprogram` and `perf_read`, written against the
    pre-DesignHost helper names (with `mask`, which stay as documented aliases); the example
    design (examples/my_design.py) covers `perf_running` / `perf_pause`."""

    def incr_counter(self, kvm: KvmVcpu, pmc: KvmPmc) -> None:
        pmc.emulated_counter += 1
        kvm.request_counter_reprogram(pmc)

    def read_counter(self, kvm: KvmVcpu, pmc: KvmPmc) -> int:
        live = kvm.perf_read(pmc) if kvm.perf_running(pmc) else 0
        return (pmc.counter + pmc.emulated_counter + live) & kvm.mask(pmc)


def test_designs_written_against_the_old_helper_names_still_run() -> None:
    seq = [HostWrmsr(M.IA32_PERFEVTSEL0, 0x5300C0), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1),
           HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FF9C), Native(99), Cpuid(), Native(100, hold_pmi=True),
           Cpuid(), Rdpmc(0)]
    old, new = World(INTEL, "6.8", OldApiEmulatedCounter), World(INTEL, "6.8", "emulated-counter")
    assert [old.step(a) for a in seq] == [new.step(a) for a in seq]


def test_guest_owned_counters_need_no_perf_event() -> None:
    """The mediated design's backing counts natively in the PMC itself; nothing creates perf
    events, and a wrap exits at once even when the scenario holds host PMIs."""
    assert isinstance(MediatedDesign.backing, GuestCounters)
    w = World(INTEL, "mediated")
    for a in [HostWrmsr(M.IA32_PERFEVTSEL0, 0x5300C0), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1),
              HostWrmsr(M.IA32_A_PMC0, 0xFFFF_FFFF_FFF6)]:
        w.step(a)
    obs = w.step(Native(20, hold_pmi=True))
    assert obs.pmis == (10,) and obs.counters[0] == 10 and obs.global_status == 1
    assert [s.source for s in obs.signals] == ["hw"]
    assert all(p.perf_event is None for p in w.kvm.valid_pmcs())


@pytest.mark.parametrize("era", ["6.6", "6.9"])
def test_failed_perf_creation_retried_only_on_next_request(era: str) -> None:
    w = World(INTEL, era)
    for a in [HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1), PerfFail(True), Wrmsr(M.IA32_PERFEVTSEL0, 0x4100C0)]:
        w.step(a)
    assert w.kvm.pmu.reprogram_pmi & 1                  # bit stays set, no new request
    w.step(PerfFail(False))
    assert w.step(Native(10)).counters[0] == 0          # nothing retries the creation yet
    assert w.step(Native(10, cpl=3)).counters[0] == 0   # hardware counts lost
    w.step(Cpuid(cpl=3))                                # emulated event -> KVM_REQ_PMU -> retry
    obs = w.step(Native(10, cpl=3))
    assert obs.counters[0] == 11


class DirectIncrementOnPerf(EmulatedCounterDesign):
    """A perf-backed design that counts emulated events at once, the mediated way, and raises
    a wrap through `signal_overflow` (the DesignHost call)."""

    def incr_counter(self, kvm: KvmVcpu, pmc: KvmPmc) -> None:
        pmc.counter = (pmc.counter + 1) & kvm.pmc_bitmask(pmc)
        if pmc.counter == 0:
            kvm.signal_overflow(pmc, in_pmi=False)


def test_a_perf_backed_design_signals_overflow_through_kvm_perf_overflow() -> None:
    """signal_overflow goes through the design's backing: for perf events that is
    __kvm_perf_overflow(): STATUS bit, an `emulated` signal and, with INT set, a PMI."""
    w = World(INTEL, "6.8", DirectIncrementOnPerf)
    for a in [HostWrmsr(M.IA32_PERFEVTSEL0, 0x5300C0), HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 1),
              HostWrmsr(M.IA32_A_PMC0, (1 << 48) - 1)]:
        w.step(a)
    obs = w.step(Cpuid())
    assert obs.global_status == 1 and [(s.pmc, s.source) for s in obs.signals] == [(0, "emulated")]
    assert obs.pmis == (1,) and obs.counters[0] == 0


def test_kvm_pmu_reset_clears_every_counter_through_the_design() -> None:
    """kvm_pmu_reset() stops each PMC and hands it to the design's reset_counter, which clears
    every tracking field (counter, prev_counter, emulated_counter and a design's own state)."""
    w = World(INTEL, "6.8")
    for a in [HostWrmsr(M.IA32_PERFEVTSEL0, 0x5300C0), HostWrmsr(M.IA32_FIXED_CTR_CTRL, 0x3),
              HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 0x1_0000_0001), Native(10), Cpuid()]:
        w.step(a)
    gp0, fixed0 = w.kvm.pmu.gp_counters[0], w.kvm.pmu.fixed_counters[0]
    gp0.prev_counter, gp0.emulated_counter, gp0.extra["mine"] = 3, 4, 5
    w.kvm.kvm_pmu_reset()
    for pmc in (gp0, fixed0):
        assert (pmc.counter, pmc.prev_counter, pmc.emulated_counter, pmc.extra) == (0, 0, 0, {})
        assert pmc.perf_event is None
    assert gp0.eventsel == gp0.eventsel_hw == 0 and fixed0.eventsel != 0   # fixed keep their event
    assert (w.kvm.pmu.fixed_ctr_ctrl, w.kvm.pmu.global_ctrl, w.kvm.pmu.global_status) == (0, 0, 0)


def _mediated_wraps(fixed_ctrl: int) -> tuple[World, Observation]:
    """Mediated vPMU: fixed0 wraps natively after 3 instructions (PMI bit per `fixed_ctrl`);
    gp1 (no INT bit) is 5 events from wrapping and counts instructions."""
    w = World(INTEL, "mediated")
    for a in [HostWrmsr(M.IA32_PERFEVTSEL0 + 1, 0x4300C0), HostWrmsr(M.IA32_FIXED_CTR_CTRL, fixed_ctrl),
              HostWrmsr(M.IA32_PERF_GLOBAL_CTRL, 0x1_0000_0002), HostWrmsr(M.IA32_A_PMC0 + 1, (1 << 48) - 5),
              HostWrmsr(M.IA32_FIXED_CTR0, (1 << 48) - 3)]:
        w.step(a)
    return w, w.step(Native(4))


def test_guest_owned_counters_raise_pmis_only_with_the_counters_pmi_bit() -> None:
    """pmc_pmi_enabled() (mediated series): a fixed counter's PMI field bit, a GP counter's INT
    bit. Every wrap sets its STATUS bit (kept alongside the others) and signals its source."""
    w, native = _mediated_wraps(0x3)                                   # fixed0 without PMI bit
    assert native.global_status == 1 << 32 and native.pmis == ()
    assert [(s.pmc, s.source) for s in native.signals] == [(32, "hw")]
    emulated = w.step(Cpuid())                                         # gp1 wraps by emulation
    assert emulated.global_status == 1 << 32 | 1 << 1 and emulated.pmis == ()
    assert [(s.pmc, s.source) for s in emulated.signals] == [(1, "emulated")]
    _, with_pmi = _mediated_wraps(0xB)
    assert with_pmi.global_status == 1 << 32 and with_pmi.pmis == (3,)
