"""Contract: ``Store.start_runs``, the bulk start path of triggers — idempotent by key,
one open run per (contact, flow) for exclusive flows, counts, and concurrent
stores starting the same keys once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from engine.errors import NotFound
from engine.models import DueKind, RunStatus
from storage.base import BulkStart, BulkStartResult, StartRequest, Store
from tests.contract.store_kit import NOW, Seed


def bulk(requests: list[StartRequest], *, exclusive: bool = True) -> BulkStart:
    return BulkStart(
        flow="volta",
        flow_version="v1",
        trigger="after",
        exclusive=exclusive,
        now=NOW,
        requests=requests,
    )


def asks(*contacts: str, episode: str = "1") -> list[StartRequest]:
    return [(c, f"after:volta:0:{c}:{episode}", {"at": episode}) for c in contacts]


async def started_runs(store: Store, contact: str) -> list[str]:
    return [r.id for r in await store.list_open_runs(contact)]


async def test_a_bulk_start_writes_an_unentered_run_and_its_start_row(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1")
    await seed.contact("c2")

    result = await store.start_runs(bulk(asks("c1", "c2")))

    assert result == BulkStartResult(started=2)
    (run_id,) = await started_runs(store, "c1")
    run = await store.get_run(run_id)
    assert run is not None
    assert (run.status, run.step, run.step_seq, run.flow_version) == (
        RunStatus.ACTIVE,
        None,
        0,
        "v1",
    )
    assert run.idempotency_key == "after:volta:0:c1:1"
    claimed = await seed.claim_all()
    (start,) = [w for w in claimed if w.run_id == run_id]
    assert start.kind == DueKind.START
    # The START row carries what the run.started event says when the run is entered.
    assert dict(start.payload) == {"flow": "volta", "version": "v1", "trigger": "after", "at": "1"}
    assert await store.list_events(run_id=run_id) == []


async def test_a_repeated_batch_starts_nothing_twice(store: Store, seed: Seed) -> None:
    for contact in ("c1", "c2", "c3"):
        await seed.contact(contact)
    first = await store.start_runs(bulk(asks("c1", "c2")))

    again = await store.start_runs(bulk(asks("c1", "c2", "c3")))

    assert first.started == 2
    assert again == BulkStartResult(started=1, existing=2)
    assert [len(await started_runs(store, c)) for c in ("c1", "c2", "c3")] == [1, 1, 1]


async def test_a_contact_in_an_exclusive_flow_is_recorded_and_skipped_once_per_key(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1")
    await seed.contact("c2")
    await store.start_runs(bulk(asks("c1")))

    result = await store.start_runs(bulk(asks("c1", "c2", episode="2")))
    again = await store.start_runs(bulk(asks("c1", episode="2")))

    assert result == BulkStartResult(started=1, already_active=("c1",))
    assert again == BulkStartResult(already_active=("c1",))
    skipped = await store.list_events(contact_id="c1", kind_prefix="run.trigger_skipped")
    assert [e.data["key"] for e in skipped] == ["after:volta:0:c1:2"]
    assert len(await started_runs(store, "c1")) == 1


async def test_one_batch_gives_a_contact_one_run_of_an_exclusive_flow_and_many_otherwise(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1")
    requests = [*asks("c1", episode="1"), *asks("c1", episode="2")]

    exclusive = await store.start_runs(bulk(requests))
    await seed.contact("c2")
    shared = await store.start_runs(
        bulk([*asks("c2", episode="1"), *asks("c2", episode="2")], exclusive=False)
    )

    assert exclusive == BulkStartResult(started=1, already_active=("c1",))
    assert shared == BulkStartResult(started=2)


async def test_an_unknown_contact_fails_the_batch_and_writes_nothing(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1")

    with pytest.raises(NotFound):
        await store.start_runs(bulk(asks("c1", "nobody")))

    assert await started_runs(store, "c1") == []


async def test_a_request_without_a_key_is_refused_with_a_clear_error(store: Store) -> None:
    with pytest.raises(ValueError, match="idempotency key"):
        await store.start_runs(bulk([("c1", "", {})]))
    assert await store.start_runs(bulk([])) == BulkStartResult()


async def test_stores_starting_the_same_keys_at_once_start_each_key_once(
    store: Store, seed: Seed, another_store: Callable[[], Awaitable[Store]]
) -> None:
    contacts = [f"c{n:03d}" for n in range(60)]
    for contact in contacts:
        await seed.contact(contact)
    other = await another_store()

    results = await asyncio.gather(
        store.start_runs(bulk(asks(*contacts))),
        other.start_runs(bulk(asks(*reversed(contacts)))),
    )

    assert sum(r.started for r in results) == 60
    assert sum(r.existing for r in results) == 60
    assert [len(await started_runs(store, c)) for c in contacts] == [1] * 60
