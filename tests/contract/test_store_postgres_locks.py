"""PostgreSQL: what one process's locks do to another's work.

A claim in flight must lock only the rows it claims (others skip locked rows, so a
row locked and not claimed is a row nobody works on meanwhile), and a write that
meets a lock somebody keeps (an operator's open ``psql`` transaction) must give up
with ``StoreUnavailable`` instead of hanging the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from engine.errors import StoreUnavailable
from engine.models import DueKind, NewDueWork, Run, RunStatus
from storage import postgres_pool, postgres_schema
from storage.base import Commit
from storage.postgres import PostgresStore
from storage.postgres_due import CLAIM
from tests.contract.store_kit import NOW, Seed, at, ended

pytestmark = pytest.mark.postgres


@contextlib.asynccontextmanager
async def opened(dsn: str) -> AsyncIterator[PostgresStore]:
    """A migrated, opened store on ``dsn``, closed afterwards."""
    store = PostgresStore(dsn)
    await store.migrate()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def pg_store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with opened(postgres_dsn) as store:
        yield store


@pytest.fixture
async def other_session(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Another process's connection to the same schema (left in no transaction)."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize("timers", [4, 1, 0])
async def test_a_claim_in_flight_leaves_the_rows_it_does_not_claim_to_others(
    pg_store: PostgresStore, other_session: asyncpg.Connection, timers: int
) -> None:
    n = 4  # 2n rows due: `timers` timers, the rest START rows
    under_way = [NewDueWork(kind=DueKind.TIMER, due_at=at(-i)) for i in range(timers)]
    starting = [NewDueWork(kind=DueKind.START, due_at=at(-i)) for i in range(2 * n - timers)]
    await pg_store.commit(Commit(now=NOW, new_due=[*under_way, *starting]))

    # Node A's claim of n rows, caught before it commits: the timers, then START rows.
    async with other_session.transaction():
        first = await other_session.fetch(CLAIM, "node-a", at(30), NOW, n)
        assert sorted(row["kind"] for row in first) == ["start"] * (n - timers) + ["timer"] * timers

        # Node B, claiming at that moment, gets the n START rows A left.
        second = await pg_store.claim_due_work(owner="node-b", now=NOW, lease_seconds=30, limit=n)

        assert sorted(work.kind for work in second) == [DueKind.START] * n
        assert not {row["id"] for row in first} & {work.id for work in second}


async def test_a_claim_takes_the_work_of_runs_under_way_first_then_starts(
    pg_store: PostgresStore,
) -> None:
    under_way = [NewDueWork(kind=DueKind.TIMER, due_at=at(-i)) for i in range(3)]
    starting = [NewDueWork(kind=DueKind.START, due_at=at(-10 - i)) for i in range(3)]
    await pg_store.commit(Commit(now=NOW, new_due=[*under_way, *starting]))

    claimed = await pg_store.claim_due_work(owner="a", now=NOW, lease_seconds=30, limit=5)

    assert [(w.kind, w.due_at) for w in claimed] == [
        (DueKind.TIMER, at(-2)),
        (DueKind.TIMER, at(-1)),
        (DueKind.TIMER, at(0)),
        (DueKind.START, at(-12)),
        (DueKind.START, at(-11)),
    ]
    rest = await pg_store.claim_due_work(owner="a", now=NOW, lease_seconds=30, limit=5)
    assert [(w.kind, w.due_at) for w in rest] == [(DueKind.START, at(-10))]
    assert rest[0].lease_until == at(30)


def with_query(dsn: str, **params: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(query=urlencode([*parse_qsl(parts.query), *params.items()])))


def finish(run: Run) -> Commit:
    return Commit(now=at(1), run=ended(run))


async def status_of(store: PostgresStore, run: Run) -> RunStatus:
    stored = await store.get_run(run.id)
    assert stored is not None
    return stored.status


async def lock_runs_row(session: asyncpg.Connection, run: Run) -> None:
    """What an operator's ``BEGIN; SELECT ... FOR UPDATE`` left open does."""
    await session.execute("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE", run.id)


async def test_a_write_meeting_a_lock_held_elsewhere_gives_up_and_others_pass(
    postgres_dsn: str, other_session: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default, shortened so the test does not wait for it.
    monkeypatch.setattr(postgres_pool, "LOCK_TIMEOUT", "100ms")
    async with opened(postgres_dsn) as store:
        seed = Seed(store)
        held, free = await seed.run(), await seed.run()
        async with other_session.transaction():
            await lock_runs_row(other_session, held)

            # Both writes go in one batch: the one meeting the lock fails alone.
            stuck, passed = await asyncio.gather(
                store.commit(finish(held)), store.commit(finish(free)), return_exceptions=True
            )

            assert isinstance(stuck, StoreUnavailable)
            assert "lock_timeout" in str(stuck)
            assert "idle in transaction" in str(stuck)
            assert not isinstance(passed, BaseException)
            assert await status_of(store, free) == RunStatus.COMPLETED

        # The lock let go: the same write, retried, is stored.
        await store.commit(finish(held))
        assert await status_of(store, held) == RunStatus.COMPLETED


async def test_the_lock_timeout_the_dsn_gives_wins(
    postgres_dsn: str, other_session: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_pool, "LOCK_TIMEOUT", "1h")
    async with opened(with_query(postgres_dsn, lock_timeout="100ms")) as store:
        run = await Seed(store).run()
        async with other_session.transaction():
            await lock_runs_row(other_session, run)
            with pytest.raises(StoreUnavailable, match="lock_timeout"):
                await store.commit(finish(run))


async def test_migrating_waits_for_another_migration_whatever_the_lock_timeout(
    postgres_dsn: str, other_session: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_pool, "LOCK_TIMEOUT", "1ms")
    store = PostgresStore(postgres_dsn)
    try:
        # Another process migrating holds the migration lock a while, then finishes.
        async with other_session.transaction():
            await other_session.execute(postgres_schema._LOCK)
            migrating = asyncio.ensure_future(store.migrate())
            await _until_it_waits(other_session, migrating)
            # Held well past the store's lock_timeout (the server's clock, not the test's).
            await other_session.execute("SELECT pg_sleep(0.02)")
        assert await migrating  # applied every migration once the lock let go
    finally:
        await store.close()


async def _until_it_waits(session: asyncpg.Connection, task: asyncio.Future[list[str]]) -> None:
    """Return once ``task`` waits for a lock ``session`` holds (or ended)."""
    while not task.done():
        if await _blocks_another(session):
            return


async def _blocks_another(session: asyncpg.Connection) -> bool:
    """Whether a session waits for a lock ``session`` holds."""
    blocking: bool = await session.fetchval(
        # pg_locks, not pg_stat_activity: that one is read once per transaction.
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted "
        "AND pg_backend_pid() = ANY (pg_blocking_pids(pid)))"
    )
    return blocking


async def test_extending_leases_never_waits_for_a_row_a_commit_has_locked(
    pg_store: PostgresStore, other_session: asyncpg.Connection
) -> None:
    """The heartbeat extends every lease the process holds while its commits run. It
    used to lock the rows in no particular order and wait for each, so a commit that
    locked them in another order (a batch of units ending several works) deadlocked
    with it, and PostgreSQL aborted one of the two. A row a commit holds is being
    finished or moved on: the heartbeat skips it and extends the others."""
    await pg_store.commit(
        Commit(now=NOW, new_due=[NewDueWork(kind=DueKind.TIMER, due_at=at(-i)) for i in (2, 1)])
    )
    held = await pg_store.claim_due_work(owner="node-a", now=NOW, lease_seconds=30, limit=2)
    first, second = sorted(held, key=lambda work: work.id)

    async with other_session.transaction():  # a commit under way, holding the second row
        await other_session.execute(
            "UPDATE due_work SET payload = payload WHERE id = $1", second.id
        )
        extended = await asyncio.wait_for(
            pg_store.extend_leases(owner="node-a", work=held, until=at(60)), timeout=4
        )
        assert extended == {first.id}
        # The commit goes on to the first row, which the heartbeat no longer holds.
        await asyncio.wait_for(
            other_session.execute("UPDATE due_work SET payload = payload WHERE id = $1", first.id),
            timeout=4,
        )

    assert await pg_store.extend_leases(owner="node-a", work=held, until=at(90)) == {
        first.id,
        second.id,
    }
