"""Contract: finding the contacts with a phone reads the ``contacts_phone`` index on
every backend, never a scan of every contact (each inbound event by phone runs it)."""

from __future__ import annotations

import sqlite3

import asyncpg

from storage import postgres_contacts, sqlite_contacts
from storage.base import Store
from tests.contract.store_kit import Database, Seed


async def test_contacts_by_phone_use_the_phone_index(
    database: Database, store: Store, seed: Seed
) -> None:
    for n in range(20):
        await seed.contact(phone=f"+55119999980{n:02d}")

    if database.backend == "sqlite":
        with sqlite3.connect(database.dsn) as db:
            plan = " ".join(
                str(row[-1])
                for row in db.execute(
                    f"EXPLAIN QUERY PLAN {sqlite_contacts.CONTACTS_BY_PHONE}", ("+5511",)
                )
            )
    else:
        connection = await asyncpg.connect(database.dsn)
        try:
            await connection.execute("SET enable_seqscan = off")
            rows = await connection.fetch(f"EXPLAIN {postgres_contacts.CONTACTS_BY_PHONE}", "+5511")
            plan = " ".join(row[0] for row in rows)
        finally:
            await connection.close()

    assert "contacts_phone" in plan, plan
