"""PostgreSQL: several processes (stores with pools of their own) on one database.

Each store here stands for one `disparo serve` process: its own pool, its own group
commit. What one node does must never undo or duplicate what another did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import pytest

from engine.errors import Conflict, StaleFence
from engine.models import DueKind, DueWork, MessageStatus, NewDueWork, RunStatus, StatusReport
from storage.base import Commit, Completion, MessageChange, NewRun, RunChange
from storage.postgres import PostgresStore
from tests.contract.store_kit import NOW, Seed, at

pytestmark = pytest.mark.postgres
T = TypeVar("T")


@pytest.fixture
async def nodes(postgres_dsn: str) -> AsyncIterator[list[PostgresStore]]:
    """Four migrated, opened stores on one database."""
    first = PostgresStore(postgres_dsn)
    await first.migrate()
    stores = [first, *(PostgresStore(postgres_dsn) for _ in range(3))]
    for store in stores:
        await store.open()
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def test_four_nodes_claiming_at_once_never_share_a_row(nodes: list[PostgresStore]) -> None:
    for start in range(0, 600, 100):
        await nodes[0].commit(
            Commit(
                now=NOW,
                new_due=[
                    NewDueWork(kind=DueKind.CALLBACK, due_at=at(n % 13), payload={"n": n})
                    for n in range(start, start + 100)
                ],
            )
        )
    claimed: dict[str, list[DueWork]] = {}

    async def claimer(store: PostgresStore, owner: str) -> None:
        while batch := await store.claim_due_work(
            owner=owner, now=at(20), lease_seconds=30, limit=9
        ):
            claimed.setdefault(owner, []).extend(batch)

    await asyncio.gather(
        *(claimer(store, f"node{i}-{j}") for i, store in enumerate(nodes) for j in range(3))
    )

    ids = [work.id for batch in claimed.values() for work in batch]
    assert len(ids) == len(set(ids)) == 600
    assert {owner.split("-")[0] for owner in claimed} == {"node0", "node1", "node2", "node3"}
    assert all(w.lease_owner == owner for owner, batch in claimed.items() for w in batch)


async def test_a_node_whose_lease_was_taken_over_cannot_commit(nodes: list[PostgresStore]) -> None:
    slow, fast = nodes[0], nodes[1]
    seed = Seed(slow)
    run = await seed.run()
    await seed.due(DueKind.TIMER, run_id=run.id)
    [stale] = await slow.claim_due_work(owner="slow", now=NOW, lease_seconds=30, limit=5)
    [fresh] = await fast.claim_due_work(owner="fast", now=at(31), lease_seconds=30, limit=5)

    assert await slow.extend_leases(owner="slow", work=[stale], until=at(90)) == set()
    with pytest.raises(StaleFence):
        await slow.commit(Commit(now=at(40), done=Completion(work=stale, retry_at=at(50))))
    await fast.commit(Commit(now=at(41), done=Completion(work=fresh)))

    assert await slow.next_due_at() is None


async def test_one_idempotency_key_from_many_nodes_makes_one_run(
    nodes: list[PostgresStore],
) -> None:
    contact = await Seed(nodes[0]).contact()

    def create(store: PostgresStore, n: int) -> Commit:
        return Commit(
            now=NOW,
            new_run=NewRun(
                id=f"r-{n}",
                flow="cobranca",
                flow_version="v1",
                contact_id=contact.id,
                step="lembrete",
                status=RunStatus.ACTIVE,
                idempotency_key="boleto-c-1-2026-11",
            ),
        )

    results = await asyncio.gather(
        *(store.commit(create(store, n)) for n in range(10) for store in nodes)
    )

    assert sum(result.created for result in results) == 1
    assert len({result.run.id for result in results if result.run is not None}) == 1
    assert len(await nodes[3].list_open_runs(contact.id)) == 1


async def test_exclusive_runs_started_at_once_on_many_nodes_leave_one_open(
    nodes: list[PostgresStore],
) -> None:
    contact = await Seed(nodes[0]).contact()

    def create(n: int) -> Commit:
        return Commit(
            now=NOW,
            new_run=NewRun(
                id=f"r-{n}",
                flow="cobranca",
                flow_version="v1",
                contact_id=contact.id,
                step="lembrete",
                status=RunStatus.ACTIVE,
                idempotency_key=f"key-{n}",
            ),
        )

    results = await asyncio.gather(
        *(nodes[n % 4].commit(create(n)) for n in range(24)), return_exceptions=True
    )

    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert len(await nodes[2].list_open_runs(contact.id)) == 1


async def test_a_webhook_racing_the_send_commit_is_never_left_pending(
    nodes: list[PostgresStore],
) -> None:
    sender, receiver = nodes[0], nodes[1]
    seed = Seed(sender)
    run = await seed.run()
    messages = [await seed.message(run, status=MessageStatus.SENDING) for _ in range(25)]

    async def record_id(n: int, message_id: str) -> None:
        await sender.commit(
            Commit(
                now=at(1),
                messages=[
                    MessageChange(
                        message_id=message_id,
                        at=at(1),
                        status=MessageStatus.SENT,
                        provider_message_id=f"wamid.{n}",
                    )
                ],
            )
        )

    async def report(n: int) -> None:
        await receiver.ingest_status_reports(
            [
                StatusReport(
                    provider="sandbox",
                    status=MessageStatus.DELIVERED,
                    at=at(1),
                    provider_message_id=f"wamid.{n}",
                    dedupe_key=f"d-{n}",
                )
            ],
            at(1),
        )

    await asyncio.gather(
        *(record_id(n, m) for n, m in enumerate(messages)), *(report(n) for n in range(25))
    )

    work = await nodes[2].claim_due_work(owner="x", now=at(2), lease_seconds=30, limit=100)
    assert sorted(w.message_id for w in work if w.kind == DueKind.STATUS) == sorted(messages)  # type: ignore[type-var]


async def test_one_status_applied_from_many_nodes_moves_once(nodes: list[PostgresStore]) -> None:
    seed = Seed(nodes[0])
    message_id = await seed.message(await seed.run(), status=MessageStatus.SENT)
    change = Commit(
        now=at(1),
        messages=[MessageChange(message_id=message_id, at=at(1), status=MessageStatus.DELIVERED)],
    )

    results = await asyncio.gather(*(store.commit(change) for store in nodes for _ in range(5)))

    assert sum(len(result.status_applied) for result in results) == 1


async def test_a_write_that_deadlocks_is_retried_in_the_next_batch_and_stored(
    nodes: list[PostgresStore], postgres_dsn: str
) -> None:
    """Another session holds the run and then asks for the due-work row the store's
    unit holds: PostgreSQL aborts the unit (40P01). The store puts it back in the
    queue; the retry, once the other session is gone, is stored and the caller never
    sees the deadlock."""
    import asyncpg

    store = nodes[0]
    seed = Seed(store)
    run = await seed.run()
    await seed.due(run_id=run.id)
    (work,) = await seed.claim_all()
    change = RunChange(
        run_id=run.id,
        expected_version=run.version,
        step=None,
        status=RunStatus.COMPLETED,
        step_seq=run.step_seq,
    )
    other = await asyncpg.connect(postgres_dsn)
    try:
        # The store's session detects the deadlock first, so its unit is the victim.
        await other.execute("SET deadlock_timeout = '30s'")
        holding = other.transaction()
        await holding.start()
        await other.execute("UPDATE runs SET updated_at = updated_at WHERE id = $1", run.id)
        # The unit locks the due-work row (its fence check), then waits for the run.
        writing = asyncio.create_task(
            store.commit(Commit(now=at(1), done=Completion(work=work), run=change))
        )
        for _ in range(500):
            if await other.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the store's write never waited for the run")
        # Now wait for the row the unit holds: a cycle, which PostgreSQL breaks.
        await other.execute("SELECT 1 FROM due_work WHERE id = $1 FOR UPDATE", work.id)
        await holding.rollback()
        result = await writing
    finally:
        await other.close()

    assert store.stats.retried_units == 1
    assert result.run is not None
    assert result.run.status == RunStatus.COMPLETED
    assert await store.claim_due_work(owner="b", now=at(100), lease_seconds=30, limit=9) == []


async def _with_a_report_queued_meanwhile(
    dsn: str, message: str, work: Callable[[], Awaitable[T]], who: str
) -> T:
    """Run ``work`` while another session queues a STATUS row naming ``message`` in a
    transaction it commits only once ``work`` waits for that row's lock: the report
    lands between what ``work`` checked and what it deletes."""
    import asyncpg

    webhook = await asyncpg.connect(dsn)
    try:
        queueing = webhook.transaction()
        await queueing.start()
        await webhook.execute(
            "INSERT INTO due_work (kind, due_at, message_id, payload, created_at) "
            "VALUES ('status', $1, $2, '{}', $1)",
            NOW,
            message,
        )
        working = asyncio.create_task(work())
        for _ in range(2000):
            waiting = await webhook.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            if waiting:
                break
            await asyncio.sleep(0.001)
        else:
            raise AssertionError(f"{who} never waited for the queued report")
        await queueing.commit()
        return await working
    finally:
        await webhook.close()


async def test_a_report_queued_while_a_purge_deletes_its_message_keeps_the_run(
    nodes: list[PostgresStore], postgres_dsn: str
) -> None:
    """The STATUS row lands between the purge's check and its delete of the message:
    the purge takes its batch again and passes that run over; nothing is lost."""
    seed = Seed(nodes[0])
    old = NOW - timedelta(days=40)
    run = await seed.run(status=RunStatus.COMPLETED, when=old)
    message = await seed.message(run, status=MessageStatus.READ, when=old)
    other = await seed.run(status=RunStatus.COMPLETED, when=old)
    purged = await _with_a_report_queued_meanwhile(
        postgres_dsn,
        message,
        lambda: nodes[1].purge(NOW - timedelta(days=30), limit=10),
        "the purge",
    )

    assert purged.runs == 1  # the other run; this one waits for its report
    assert await nodes[0].get_run(other.id) is None
    assert await nodes[0].get_message(message) is not None
    [work] = await Seed(nodes[2]).claim_all(when=NOW)
    assert (work.kind, work.message_id) == (DueKind.STATUS, message)


async def test_a_report_queued_while_a_contact_is_erased_is_erased_with_it(
    nodes: list[PostgresStore], postgres_dsn: str
) -> None:
    """The STATUS row lands between the erasure's delete of due work and its delete
    of the messages: the erasure is taken again and deletes that row too."""
    seed = Seed(nodes[0])
    run = await seed.run(status=RunStatus.WAITING)
    message = await seed.message(run, status=MessageStatus.SENT, provider_message_id="wamid.x")
    erased = await _with_a_report_queued_meanwhile(
        postgres_dsn,
        message,
        lambda: nodes[1].erase_contact(run.contact_id, keep_opt_out=True, now=NOW),
        "the erasure",
    )

    assert erased is not None
    assert (erased.runs, erased.messages, erased.due_work) == (1, 1, 1)
    assert await nodes[0].get_message(message) is None
    assert await nodes[0].get_contact(run.contact_id) is None
    assert await Seed(nodes[2]).claim_all(when=NOW) == []
