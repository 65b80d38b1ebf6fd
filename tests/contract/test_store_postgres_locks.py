"""PostgreSQL: what one process's locks do to another's work.

A claim in flight must lock only the rows it claims (others skip locked rows, so a
row locked and not claimed is a row nobody works on meanwhile), and a write that
meets a lock somebody keeps (an operator's open ``psql`` transaction) must give up
with ``StoreUnavailable`` instead of hanging the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from engine.models import DueKind, NewDueWork
from storage.base import Commit
from storage.postgres import PostgresStore
from storage.postgres_due import CLAIM
from tests.contract.store_kit import NOW, at

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_dsn)
    await store.migrate()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def other_session(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Another process's connection to the same schema (left in no transaction)."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_claim_in_flight_leaves_the_rows_it_does_not_claim_to_others(
    pg_store: PostgresStore, other_session: asyncpg.Connection
) -> None:
    n = 4
    under_way = [NewDueWork(kind=DueKind.TIMER, due_at=at(-i)) for i in range(n)]
    starting = [NewDueWork(kind=DueKind.START, due_at=at(-i)) for i in range(n)]
    await pg_store.commit(Commit(now=NOW, new_due=[*under_way, *starting]))

    # Node A's claim of n rows, caught before it commits: it takes the n timers.
    async with other_session.transaction():
        first = await other_session.fetch(CLAIM, "node-a", at(30), NOW, n)
        assert sorted(row["kind"] for row in first) == ["timer"] * n

        # Node B, claiming at that moment, gets the n START rows A left.
        second = await pg_store.claim_due_work(owner="node-b", now=NOW, lease_seconds=30, limit=n)

        assert sorted(work.kind for work in second) == [DueKind.START] * n


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
