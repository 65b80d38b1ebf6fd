"""Contract: the overview an operator reads (`disparo status`)."""

from __future__ import annotations

from datetime import timedelta

from engine.models import ContactUpsert, DueKind, MessageStatus, RunStatus
from storage.base import DueCounts, LeaseCounts, Overview, Store
from tests.contract.store_kit import NOW, Seed, at


async def test_due_work_by_kind_open_runs_by_flow_and_ambiguous_messages(
    store: Store, seed: Seed
) -> None:
    boleto = await seed.run(flow="cobranca", status=RunStatus.WAITING)
    await seed.run(flow="cobranca", status=RunStatus.ACTIVE)
    await seed.run(flow="nps", status=RunStatus.WAITING)
    await seed.run(flow="nps", status=RunStatus.COMPLETED)
    await seed.message(boleto, status=MessageStatus.AMBIGUOUS)
    await seed.due(DueKind.TIMER, run_id=boleto.id, due_at=at(-60))  # late by a minute
    await seed.due(DueKind.TIMER, run_id=boleto.id, due_at=at(-10))
    await seed.due(DueKind.TIMER, run_id=boleto.id, due_at=NOW + timedelta(hours=2))
    await seed.due(DueKind.INBOUND, run_id=boleto.id, due_at=at(-5))
    [held] = await store.claim_due_work(owner="node-a", now=NOW, lease_seconds=30, limit=1)
    assert held.due_at == at(-60)  # the oldest: now leased

    overview = await store.overview(NOW)

    assert overview == Overview(
        due_work={
            "inbound": DueCounts(due=1, oldest_due_at=at(-5)),
            "timer": DueCounts(due=1, leased=1, later=1, oldest_due_at=at(-10)),
        },
        leases={"node-a": LeaseCounts(rows=1, first_ends_at=at(30), last_ends_at=at(30))},
        open_runs={"cobranca": 2, "nps": 1},
        ambiguous_messages=1,
    )
    # Once the lease ends the row counts as due again, and as the oldest.
    later = await store.overview(NOW + timedelta(seconds=31))
    assert later.due_work["timer"] == DueCounts(due=2, later=1, oldest_due_at=at(-60))
    assert later.leases == {}


async def test_each_process_holding_work_is_shown_with_its_rows_and_when_they_end(
    store: Store, seed: Seed
) -> None:
    """An operator running several engines sees which ones are at work; one killed
    shows until its leases end, when another takes its rows over."""
    run = await seed.run(status=RunStatus.WAITING)
    for seconds in (-30, -20, -10):
        await seed.due(DueKind.TIMER, run_id=run.id, due_at=at(seconds))
    await store.claim_due_work(owner="host-a:101:aa", now=NOW, lease_seconds=30, limit=2)
    await store.claim_due_work(
        owner="host-b:202:bb", now=NOW + timedelta(seconds=5), lease_seconds=30, limit=1
    )

    overview = await store.overview(NOW + timedelta(seconds=10))

    assert overview.leases == {
        "host-a:101:aa": LeaseCounts(rows=2, first_ends_at=at(30), last_ends_at=at(30)),
        "host-b:202:bb": LeaseCounts(rows=1, first_ends_at=at(35), last_ends_at=at(35)),
    }
    assert overview.due_work["timer"] == DueCounts(leased=3)
    # host-a's leases ended: its rows are free again, host-b still holds its own.
    after = await store.overview(NOW + timedelta(seconds=31))
    assert list(after.leases) == ["host-b:202:bb"]


async def test_an_empty_store_has_nothing_to_show(store: Store) -> None:
    assert await store.overview(NOW) == Overview()


async def test_open_runs_by_flow_and_pinned_version(store: Store, seed: Seed) -> None:
    await seed.run(flow="cobranca", version="v1", status=RunStatus.WAITING)
    await seed.run(flow="cobranca", version="v1", status=RunStatus.ACTIVE)
    await seed.run(flow="cobranca", version="v2", status=RunStatus.WAITING)
    await seed.run(flow="cobranca", version="v0", status=RunStatus.COMPLETED)
    await seed.run(flow="nps", version="v1", status=RunStatus.FAILED)
    await seed.run(flow="nps", version="v7", status=RunStatus.WAITING, exclusive=False)

    assert await store.open_run_versions() == {
        ("cobranca", "v1"): 2,
        ("cobranca", "v2"): 1,
        ("nps", "v7"): 1,
    }


async def test_no_open_runs_no_versions(store: Store, seed: Seed) -> None:
    await seed.run(status=RunStatus.CANCELLED)
    assert await store.open_run_versions() == {}


async def test_contacts_are_counted_by_the_zone_they_name(store: Store) -> None:
    for contact, zone in (("c-1", "localtime"), ("c-2", "localtime"), ("c-3", None)):
        await store.upsert_contact(ContactUpsert(id=contact, timezone=zone), NOW)
    await store.upsert_contact(ContactUpsert(id="c-4", timezone="America/Sao_Paulo"), NOW)

    overview = await store.overview(NOW)

    assert overview.contact_zones == {"America/Sao_Paulo": 1, "localtime": 2}
