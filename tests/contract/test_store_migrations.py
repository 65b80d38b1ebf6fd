"""Contract: schema migrations, and where and how the SQLite store opens its database."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from engine.errors import ConfigError, SchemaOutdated, StoreError, StoreUnavailable
from engine.models import ContactUpsert
from storage.base import Store
from storage.sqlite import SQLiteStore
from tests.contract.store_kit import NOW, Database


async def test_open_before_migrate_says_what_to_run(database: Database) -> None:
    fresh = database.new_store()
    pending = await fresh.pending_migrations()
    await fresh.close()

    with pytest.raises(SchemaOutdated) as raised:
        await database.new_store().open()

    assert pending
    message = str(raised.value)
    assert "run `disparo migrate`" in message
    assert all(name in message for name in pending)
    assert f"{len(pending)} pending migration" in message


async def test_migrate_applies_each_migration_once(database: Database) -> None:
    first = database.new_store()
    pending = await first.pending_migrations()

    applied = await first.migrate()
    again = await first.migrate()
    await first.close()
    reopened = database.new_store()
    await reopened.open()

    assert applied == pending
    assert again == []
    assert await reopened.pending_migrations() == []
    assert await reopened.migrate() == []
    await reopened.ping()
    await reopened.close()


async def test_a_closed_store_is_unavailable(store: Store) -> None:
    await store.close()

    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get_contact("c1")
    await store.close()  # closing twice is harmless


async def test_the_database_clock_is_the_servers_and_a_file_has_none(
    store: Store, database: Database
) -> None:
    # Processes sharing a PostgreSQL database check their clocks against its own.
    if database.backend == "sqlite":
        assert await store.database_time() is None
        return
    import asyncpg

    server = await asyncpg.connect(database.dsn)
    try:
        before = await server.fetchval("SELECT clock_timestamp()")
        theirs = await store.database_time()
        after = await server.fetchval("SELECT clock_timestamp()")
    finally:
        await server.close()
    assert theirs is not None
    assert theirs.utcoffset() == timedelta(0)  # comparable with the process's UTC clock
    assert before <= theirs <= after


# ---------------------------------------------------------------- SQLite specifics


async def migrated(store: SQLiteStore) -> SQLiteStore:
    await store.migrate()
    await store.open()
    return store


async def test_sqlite_dsn_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stores = [
        SQLiteStore("sqlite:///var/relative.db"),
        SQLiteStore(f"sqlite:///{tmp_path}/abs/absolute.db"),
        SQLiteStore(str(tmp_path / "plain" / "plain.db")),
    ]
    for store in stores:
        await migrated(store)
        await store.upsert_contact(ContactUpsert(id="c1"), NOW)
        await store.close()

    assert (tmp_path / "var" / "relative.db").is_file()
    assert (tmp_path / "abs" / "absolute.db").is_file()
    assert (tmp_path / "plain" / "plain.db").is_file()
    assert stores[1].path == f"{tmp_path}/abs/absolute.db"
    with pytest.raises(ConfigError, match="not a SQLite DSN"):
        SQLiteStore("sqlite://host/db")
    with pytest.raises(ConfigError, match="synchronous"):
        await SQLiteStore(str(tmp_path / "x.db"), synchronous="OFF").open()  # type: ignore[arg-type]


@pytest.mark.parametrize("dsn", [":memory:", "sqlite:///:memory:"])
async def test_an_in_memory_store_opens_migrated(dsn: str) -> None:
    store = SQLiteStore(dsn)
    other = SQLiteStore(dsn)
    await store.open()
    await other.open()

    await store.upsert_contact(ContactUpsert(id="c1"), NOW)

    assert await store.get_contact("c1") is not None
    assert await other.get_contact("c1") is None
    await store.close()
    await other.close()


async def test_the_file_is_in_wal_mode_with_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "var" / "disparo.db"
    store = await migrated(SQLiteStore(str(path)))
    await store.close()

    raw = sqlite3.connect(path)
    try:
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {
            row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    finally:
        raw.close()

    assert mode == "wal"
    expected = {"contacts", "flow_versions", "runs", "messages", "events", "due_work"}
    assert expected | {"pending_statuses", "schema_migrations"} <= tables


async def test_a_database_from_a_newer_disparo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "disparo.db"
    await (await migrated(SQLiteStore(str(path)))).close()
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("INSERT INTO schema_migrations VALUES ('9999_future', '2027-01-01')")
    raw.close()

    with pytest.raises(StoreError, match="newer disparo"):
        await SQLiteStore(str(path)).open()


async def test_a_database_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")

    with pytest.raises(StoreUnavailable, match="cannot create the directory"):
        await SQLiteStore(str(tmp_path / "file" / "disparo.db")).migrate()


async def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "disparo.db"
    path.write_bytes(b"this is not SQLite" * 100)

    with pytest.raises(StoreUnavailable, match="not a usable SQLite database"):
        await SQLiteStore(str(path)).migrate()
