"""Fixtures of the Store contract suite: one suite, every backend.

``store`` is a migrated, opened store on a fresh database per test: SQLite always
(a file under ``tmp_path``), PostgreSQL when ``DISPARO_TEST_POSTGRES_DSN`` is set
(a schema of its own per test on that server, named in the DSN's ``search_path``
and dropped afterwards). Time is fixed (``NOW``); nothing reads the wall clock.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from storage.base import Store
from tests.contract.store_kit import Database, Seed

POSTGRES_DSN_ENV = "DISPARO_TEST_POSTGRES_DSN"


def postgres_dsn_or_skip() -> str:
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if not dsn:
        pytest.skip(
            f"PostgreSQL tests skipped: set {POSTGRES_DSN_ENV} "
            "(e.g. postgresql://postgres@127.0.0.1:5432/test) to run them"
        )
    return dsn


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` with ``search_path=schema`` (asyncpg passes it to the server as a setting)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("search_path", schema)])))


async def fresh_postgres_schema(dsn: str) -> AsyncIterator[str]:
    """A DSN whose tables live in a new, empty schema; the schema is dropped afterwards."""
    import asyncpg

    name = f"disparo_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
        yield with_search_path(dsn, name)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await admin.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite", str(tmp_path / "var" / "disparo.db"))
        return
    async for dsn in fresh_postgres_schema(postgres_dsn_or_skip()):
        yield Database("postgres", dsn)


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    opened = database.new_store()
    await opened.migrate()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def another_store(database: Database) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """Open more stores on the test's database (a second process, a restart)."""
    opened: list[Store] = []

    async def open_another() -> Store:
        new = database.new_store()
        await new.open()
        opened.append(new)
        return new

    try:
        yield open_another
    finally:
        for each in opened:
            await each.close()


@pytest.fixture
def seed(store: Store) -> Seed:
    return Seed(store)


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """A DSN on a fresh, empty schema of the test server (PostgreSQL-only tests)."""
    async for dsn in fresh_postgres_schema(postgres_dsn_or_skip()):
        yield dsn
