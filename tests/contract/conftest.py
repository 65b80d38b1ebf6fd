"""Fixtures of the Store contract suite: one suite, every backend.

``store`` is a migrated, opened store on a fresh database per test: SQLite always
(a file under ``tmp_path``), PostgreSQL when ``DISPARO_TEST_POSTGRES_DSN`` is set
and ``storage.postgres`` exists. Time is fixed (``NOW``); nothing reads the wall
clock.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from storage.base import Store
from tests.contract.store_kit import Database, Seed

POSTGRES_DSN_ENV = "DISPARO_TEST_POSTGRES_DSN"


def _postgres_dsn_or_skip() -> str:
    if importlib.util.find_spec("storage.postgres") is None:
        pytest.skip("PostgreSQL store not implemented yet (issue 5)")
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if not dsn:
        pytest.skip(f"set {POSTGRES_DSN_ENV} to run the PostgreSQL contract tests")
    return dsn


async def _fresh_postgres_database(dsn: str) -> AsyncIterator[str]:
    asyncpg = pytest.importorskip("asyncpg", reason="the PostgreSQL tests need asyncpg")
    name = f"disparo_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(dsn)
        yield urlunsplit(parts._replace(path=f"/{name}"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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
    async for dsn in _fresh_postgres_database(_postgres_dsn_or_skip()):
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
