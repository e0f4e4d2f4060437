"""The LVTPC and NMI queue model (vpmu.lapic) on its own (spec kvm-vpmu.md §2.11)."""

from __future__ import annotations

from vpmu.lapic import LINUX_GUEST_LVTPC, NMI_PENDING_LIMIT, Lapic, Route
from vpmu.msrs import LVTPC_DELIVERY_NMI, LVTPC_MASKED

FIXED_VECTOR = 0xEE   # fixed delivery mode (000), vector 0xEE
SMI_MODE = 0b010 << 8


def nmis_after(pending: int, queued: int) -> tuple[int, int]:
    """(pending, dropped) after process_nmi() with `pending` already pending and `queued` queued."""
    lapic = Lapic(nmi_pending=pending, nmi_queued=queued)
    dropped = lapic.process_nmi()
    assert lapic.nmi_queued == 0
    return lapic.nmi_pending, dropped


def test_nmi_pending_cap_is_exactly_two() -> None:
    assert NMI_PENDING_LIMIT == 2
    assert nmis_after(0, 2) == (2, 0)      # two are kept
    assert nmis_after(0, 3) == (2, 1)      # a third is dropped
    assert nmis_after(1, 2) == (2, 1)
    assert nmis_after(2, 0) == (2, 0)


def test_two_pmis_in_nmi_mode_are_both_injected() -> None:
    lapic = Lapic()
    for _ in range(3):
        assert lapic.local_deliver_lvtpc(auto_mask=False).route is Route.NMI
    assert lapic.process_nmi() == 1
    assert lapic.inject() == ["nmi", "nmi"]
    assert not lapic.has_events()


def test_lvtpc_write_keeps_vector_mode_and_mask() -> None:
    lapic = Lapic()
    lapic.write_lvtpc(0xFFFF_FFFF)
    assert lapic.lvtpc == LVTPC_MASKED | 0x700 | 0xFF


def test_auto_mask_then_masked_pmi_is_dropped_not_latched() -> None:
    lapic = Lapic(lvtpc=LINUX_GUEST_LVTPC)
    first = lapic.local_deliver_lvtpc(auto_mask=True)
    assert first.route is Route.NMI and str(first) == "nmi"
    assert lapic.masked and lapic.lvtpc == LVTPC_DELIVERY_NMI | LVTPC_MASKED
    second = lapic.local_deliver_lvtpc(auto_mask=True)
    assert second.route is Route.DROPPED and str(second) == "dropped: LVTPC masked"
    assert lapic.nmi_queued == 1
    lapic.write_lvtpc(LINUX_GUEST_LVTPC)
    assert lapic.nmi_queued == 1                        # unmasking does not deliver the dropped one


def test_without_auto_mask_lvtpc_stays_unmasked() -> None:
    lapic = Lapic()
    lapic.local_deliver_lvtpc(auto_mask=False)
    assert not lapic.masked


def test_fixed_mode_sets_the_vector_and_coalesces() -> None:
    lapic = Lapic(lvtpc=FIXED_VECTOR)
    assert lapic.local_deliver_lvtpc(auto_mask=False).route is Route.FIXED
    assert lapic.local_deliver_lvtpc(auto_mask=False).route is Route.FIXED
    assert lapic.nmi_queued == 0 and lapic.has_events()
    assert lapic.inject() == ["vector 0xee"]
    assert not lapic.has_events()


def test_userspace_apic_and_unmodelled_modes_drop() -> None:
    out = Lapic(in_kernel=False).local_deliver_lvtpc(auto_mask=True)
    assert out.route is Route.DROPPED and out.why == "userspace APIC"
    smi = Lapic(lvtpc=SMI_MODE)
    out = smi.local_deliver_lvtpc(auto_mask=True)
    assert out.route is Route.DROPPED and "0o2" in out.why
    assert not smi.masked and not smi.has_events()


def test_inject_orders_nmis_before_vectors() -> None:
    lapic = Lapic(nmi_pending=1, irr={0x30, 0x20})
    assert lapic.inject() == ["nmi", "vector 0x20", "vector 0x30"]


def test_clone_is_independent() -> None:
    lapic = Lapic(lvtpc=FIXED_VECTOR)
    twin = lapic.clone()
    twin.local_deliver_lvtpc(auto_mask=True)
    assert twin.key() != lapic.key() and not lapic.has_events()


def test_clone_copies_every_field() -> None:
    lapic = Lapic(in_kernel=False, lvtpc=FIXED_VECTOR, nmi_queued=1, nmi_pending=2, irr={0x30})
    twin = lapic.clone()
    assert twin == lapic and twin.key() == lapic.key() and twin.irr is not lapic.irr


def test_any_queued_pending_or_vectored_pmi_is_an_event() -> None:
    assert Lapic(nmi_queued=1).has_events()
    assert Lapic(nmi_pending=1).has_events()
    assert not Lapic().has_events()
