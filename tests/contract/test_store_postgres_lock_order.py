"""PostgreSQL: writers of several processes take their locks in one order.

Each test holds, in another session, what another process's writer holds in the
middle of its transaction, lets this process's writer start and wait, then lets
the other writer go on to what this one wanted first. Taken in the same order
(migration 0011: the contact keys, ascending, before any row), this writer waits
holding nothing and the other one passes; taken in another order, the two wait
for each other and PostgreSQL aborts one of them after ``deadlock_timeout``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from engine.errors import StoreUnavailable
from engine.models import (
    Contact,
    ContactEvent,
    ContactUpsert,
    DueKind,
    MessageStatus,
    NewDueWork,
    Run,
    RunStatus,
    StatusReport,
)
from storage import postgres_pool, postgres_starts
from storage.base import BulkStart, Commit, NewRun
from storage.changes import ContactChange
from storage.postgres import PostgresStore
from storage.postgres_codec import (
    commit_unit,
    contact_events_unit,
    encode_unit,
    schedule_unit,
    status_reports_unit,
    upsert_unit,
)
from tests.contract import test_store_postgres_locks as locks
from tests.contract.store_kit import NOW, Seed, at, ended
from tests.contract.test_store_postgres_locks import _until_it_waits, opened

pytestmark = pytest.mark.postgres

# The fixtures of the lock tests: this process's store, another process's session.
pg_store = locks.pg_store
other_session = locks.other_session


async def apply_elsewhere(session: asyncpg.Connection, unit: dict[str, Any]) -> None:
    """Another process's batch of one unit, in ``session``'s transaction."""
    answer = await session.fetchval("SELECT disparo_apply($1::jsonb)", f"[{encode_unit(unit)}]")
    assert "error" not in answer, answer


def sent_to(contact: Contact) -> Commit:
    """The commit of a send: it moves the contact's last_outbound_at."""
    return Commit(now=at(1), contact=ContactChange(contact_id=contact.id, last_outbound_at=at(1)))


async def in_key_order(session: asyncpg.Connection, seed: Seed) -> tuple[Contact, Contact]:
    """Two contacts, the one whose key a writer takes first first."""
    one, two = await seed.contact(), await seed.contact()
    keys = await session.fetch(
        "SELECT id FROM unnest($1::text[]) AS id ORDER BY disparo_contact_key(id)", [one.id, two.id]
    )
    by_id = {one.id: one, two.id: two}
    return by_id[keys[0]["id"]], by_id[keys[1]["id"]]


def replied(contact: Contact) -> ContactEvent:
    """A reply that came in through a webhook: it moves the contact's last_inbound_at."""
    return ContactEvent(type="reply", at=at(1), contact_id=contact.id, text="ok")


def unit_writing(contact: Contact, writes: str) -> dict[str, Any]:
    if writes == "send":
        return commit_unit(sent_to(contact))
    return contact_events_unit([replied(contact)], NOW)


async def writing(store: PostgresStore, contact: Contact, writes: str) -> object:
    if writes == "send":
        return await store.commit(sent_to(contact))
    return await store.ingest_contact_events([replied(contact)], NOW)


@pytest.mark.parametrize("writes", ["send", "reply"])
async def test_two_batches_writing_the_same_contacts_never_wait_in_a_cycle(
    pg_store: PostgresStore, other_session: asyncpg.Connection, writes: str
) -> None:
    """Two processes' batches each carry sends to (or replies of) contacts X and Y, in
    the order their callers came. One batch wrote X and went on to Y while the other,
    having written Y first, waited for X: a deadlock, and a second lost for both."""
    first, second = await in_key_order(other_session, Seed(pg_store))

    async with other_session.transaction():  # the other batch wrote `first`
        await apply_elsewhere(other_session, unit_writing(first, writes))
        # This process's batch carries `second`'s write before `first`'s.
        batch = asyncio.gather(writing(pg_store, second, writes), writing(pg_store, first, writes))
        await _until_it_waits(other_session, batch)
        # The other batch goes on to `second`, which this one holds nothing of.
        await asyncio.wait_for(
            apply_elsewhere(other_session, unit_writing(second, writes)), timeout=4
        )

    await asyncio.wait_for(batch, timeout=4)
    assert pg_store.stats.retried_units == 0  # no unit was undone by a deadlock


def report(provider_id: str) -> StatusReport:
    return StatusReport(
        provider="sandbox",
        status=MessageStatus.DELIVERED,
        at=at(1),
        provider_message_id=provider_id,
    )


async def test_two_batches_of_status_reports_for_the_same_messages_never_wait_in_a_cycle(
    pg_store: PostgresStore, other_session: asyncpg.Connection
) -> None:
    """Webhooks of one provider, spread over two processes, bring reports about the same
    two messages. Each report takes its message's status lock (serialising it with the
    send that records the provider id); the batches took them in their callers' order
    and deadlocked."""
    first, second = await other_session.fetchval(
        "SELECT array_agg(id ORDER BY hashtextextended('disparo.status/sandbox/' || id, 0)) "
        "FROM unnest($1::text[]) AS id",
        ["wamid-1", "wamid-2"],
    )

    async with other_session.transaction():  # the other batch took `first`'s report
        await apply_elsewhere(other_session, status_reports_unit([report(first)], NOW))
        batch = asyncio.gather(
            pg_store.ingest_status_reports([report(second)], NOW),
            pg_store.ingest_status_reports([report(first)], NOW),
        )
        await _until_it_waits(other_session, batch)
        await asyncio.wait_for(
            apply_elsewhere(other_session, status_reports_unit([report(second)], NOW)), timeout=4
        )

    assert await asyncio.wait_for(batch, timeout=4) == [["pending"], ["pending"]]
    assert pg_store.stats.retried_units == 0


async def test_an_erasure_waits_for_a_batch_finishing_the_contacts_run_without_a_cycle(
    pg_store: PostgresStore, other_session: asyncpg.Connection
) -> None:
    """A batch ended the contact's run, then wrote the contact (a send's last_outbound_at,
    a handoff); the erasure locked the contact row first and waited for the run: each
    waited for the other and PostgreSQL aborted one of them."""
    run: Run = await Seed(pg_store).run()
    contact = await pg_store.get_contact(run.contact_id)
    assert contact is not None

    async with other_session.transaction():  # another process's batch holds the run
        await apply_elsewhere(other_session, commit_unit(Commit(now=at(1), run=ended(run))))
        erasing = asyncio.ensure_future(
            pg_store.erase_contact(contact.id, keep_opt_out=False, now=at(2))
        )
        await _until_it_waits(other_session, erasing)
        await asyncio.wait_for(
            apply_elsewhere(other_session, commit_unit(sent_to(contact))), timeout=4
        )

    erased = await asyncio.wait_for(erasing, timeout=4)
    assert erased is not None
    assert erased.runs == 1
    assert await pg_store.get_contact(contact.id) is None


async def test_a_bulk_start_and_a_batch_starting_a_run_of_the_same_contact_never_deadlock(
    pg_store: PostgresStore, other_session: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fan-out in one process starts runs for contacts whose contact row a batch of
    another process wrote (an API start: its contact, then its run). The bulk start
    held the run lock of (contact, flow) and waited for the contact row; the batch,
    going on to create the run, waited for the run lock: PostgreSQL aborted the bulk
    start and it started over."""
    attempts = 0
    write = postgres_starts._write

    async def counted(*args: object) -> object:
        nonlocal attempts
        attempts += 1
        return await write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(postgres_starts, "_write", counted)
    upsert = ContactUpsert(id="c-fanout", name="Ana")
    await pg_store.upsert_contact(upsert, NOW)

    async with other_session.transaction():  # the API start wrote the contact
        await apply_elsewhere(other_session, upsert_unit(upsert, NOW))
        starting = asyncio.ensure_future(
            pg_store.start_runs(
                BulkStart(
                    flow="cobranca",
                    flow_version="v1",
                    trigger="cron",
                    exclusive=True,
                    now=NOW,
                    requests=[(upsert.id, "fanout-key", {})],
                    contacts=[upsert],
                )
            )
        )
        await _until_it_waits(other_session, starting)
        api_run = NewRun(
            id="r-api",
            flow="cobranca",
            flow_version="v1",
            contact_id=upsert.id,
            step="lembrete",
            status=RunStatus.ACTIVE,
            idempotency_key="api-key",
        )
        await asyncio.wait_for(
            apply_elsewhere(other_session, commit_unit(Commit(now=NOW, new_run=api_run))),
            timeout=4,
        )

    result = await asyncio.wait_for(starting, timeout=4)
    assert attempts == 1
    assert [run.id for run in await pg_store.list_open_runs(upsert.id)] == ["r-api"]
    assert (result.started, result.already_active) == (0, (upsert.id,))  # open by then


async def test_a_unit_whose_contact_key_is_held_too_long_fails_alone(
    postgres_dsn: str, other_session: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys are taken before the units run, yet a key held past lock_timeout (a
    process stuck mid-commit) fails only the units that need it, as a row lock did."""
    monkeypatch.setattr(postgres_pool, "LOCK_TIMEOUT", "100ms")
    async with opened(postgres_dsn) as store:
        seed = Seed(store)
        held, free = await seed.contact(), await seed.contact()
        async with other_session.transaction():
            await apply_elsewhere(other_session, commit_unit(sent_to(held)))

            stuck, passed = await asyncio.gather(
                store.commit(sent_to(held)), store.commit(sent_to(free)), return_exceptions=True
            )

            assert isinstance(stuck, StoreUnavailable)
            assert "lock_timeout" in str(stuck)
            assert not isinstance(passed, BaseException)
            stored = await store.get_contact(free.id)
            assert stored is not None
            assert stored.last_outbound_at == at(1)
        await store.commit(sent_to(held))  # the key let go: the same write passes


async def test_two_engines_scheduling_the_same_new_triggers_never_wait_in_a_cycle(
    pg_store: PostgresStore, other_session: asyncpg.Connection
) -> None:
    """Two engines schedule the trigger rows of the same flows at the same moment (a
    flow file both picked up), each listing them in its own catalog order. An insert
    of a key the other engine just inserted waits for it: each inserted one key, then
    waited for the other's."""
    first, second = "cron:a:0", "cron:b:0"
    row = NewDueWork(kind=DueKind.CRON, due_at=at(60))

    async with other_session.transaction():  # the other engine inserted `first`
        await apply_elsewhere(other_session, schedule_unit({first: row}, NOW))
        scheduling = asyncio.ensure_future(
            pg_store.schedule_triggers({second: row, first: row}, NOW)
        )
        await _until_it_waits(other_session, scheduling)
        await asyncio.wait_for(
            apply_elsewhere(other_session, schedule_unit({first: row, second: row}, NOW)),
            timeout=4,
        )

    assert await asyncio.wait_for(scheduling, timeout=4) == []  # the other engine stored both
    assert pg_store.stats.retried_units == 0


async def test_a_purge_leaves_a_contact_a_late_status_report_is_writing_and_never_waits(
    pg_store: PostgresStore, other_session: asyncpg.Connection
) -> None:
    """A status report for a message of a run finished long ago comes in while the
    retention purge takes that run: the report's batch holds the contact's key and
    the message, the purge took the run and wanted the message. The purge now
    deletes a run only under its contact's key, taken only if free: it leaves that
    contact for its next batch, purges the others, and waits for nobody."""
    old = at(-40 * 24 * 3600)
    seed = Seed(pg_store)
    late = await seed.run(status=RunStatus.COMPLETED, when=old)
    message = await seed.message(late, status=MessageStatus.SENT, when=old)
    other = await seed.run(status=RunStatus.COMPLETED, when=old)
    await seed.message(other, status=MessageStatus.READ, when=old)

    async with other_session.transaction():  # the report's batch, mid-way
        await other_session.execute(
            "SELECT pg_advisory_xact_lock(disparo_contact_key($1))", late.contact_id
        )
        await other_session.execute(
            "UPDATE messages SET status = 'delivered' WHERE id = $1", message
        )
        purged = await asyncio.wait_for(pg_store.purge(at(-30 * 24 * 3600), limit=10), timeout=4)

    assert (purged.runs, purged.messages) == (1, 1)
    assert await pg_store.get_run(other.id) is None
    assert await pg_store.get_run(late.id) is not None  # for the next batch
    again = await pg_store.purge(at(-30 * 24 * 3600), limit=10)
    assert (again.runs, again.messages) == (1, 1)
