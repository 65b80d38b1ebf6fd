"""Versioned migrations of the PostgreSQL store.

Migrations are the ``NNNN_name.sql`` files of ``storage/migrations/postgres`` (read
with importlib.resources, so they ship in the wheel), numbered like the SQLite ones.
Each is applied in its own transaction together with its row in
``schema_migrations`` (PostgreSQL DDL is transactional: a failure leaves nothing
behind), under a transaction-level advisory lock on the schema, so two processes
migrating at once apply each migration exactly once: the second waits, then finds
it recorded.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from engine.errors import StoreError

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

# A pool's connection or one opened alone.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

T = TypeVar("T")

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK = (
    "SELECT pg_advisory_xact_lock("
    "hashtextextended('disparo.migrate/' || coalesce(current_schema(), ''), 0))"
)
_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def available() -> list[tuple[str, str]]:
    """Every migration shipped with disparo, as (name, SQL), in order."""
    folder = resources.files("storage").joinpath("migrations", "postgres")
    return sorted(
        (entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if _MIGRATION_NAME.match(entry.name)
    )


async def applied(connection: Connection) -> list[str]:
    """The migrations recorded in the database (none when it was never migrated)."""
    if not await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        return []
    rows = await connection.fetch("SELECT name FROM schema_migrations ORDER BY name")
    return [row["name"] for row in rows]


async def pending(connection: Connection) -> list[str]:
    done = set(await applied(connection))
    return [name for name, _ in available() if name not in done]


async def unknown(connection: Connection) -> list[str]:
    """Migrations recorded in the database that this disparo does not ship (it is older)."""
    known = {name for name, _ in available()}
    return [name for name in await applied(connection) if name not in known]


async def migrate(connection: Connection) -> list[str]:
    """Apply the pending migrations, each in its own transaction; return their names."""
    done: list[str] = []
    for name, script in available():
        async with connection.transaction():
            # A second process migrating waits for the first however long it takes.
            await connection.execute("SET LOCAL lock_timeout = 0")
            await connection.execute(_LOCK)
            await connection.execute(_BOOTSTRAP)
            # Checked under the lock: another process may have just applied it.
            seen = await connection.fetchval(
                "SELECT 1 FROM schema_migrations WHERE name = $1", name
            )
            if seen is None:
                await connection.execute(script)
                await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                done.append(name)
    return done


async def missing_schema(connection: Connection) -> str | None:
    """The ``search_path`` when none of its schemas exists (there is nowhere to create
    the tables nor to find them), else None."""
    if await connection.fetchval("SELECT current_schema()") is not None:
        return None
    path: str = await connection.fetchval("SHOW search_path")
    return path


def in_schema(
    where: str, work: Callable[[Connection], Awaitable[T]]
) -> Callable[[Connection], Awaitable[T]]:
    """``work`` run once the DSN's ``search_path`` names a schema that exists; else
    ``StoreError`` naming it, instead of migrations "pending" in no schema at all."""

    async def checked(connection: Connection) -> T:
        search_path = await missing_schema(connection)
        if search_path is not None:
            raise StoreError(missing_message(where, search_path))
        return await work(connection)

    return checked


def missing_message(where: str, search_path: str) -> str:
    names = [name.strip().strip('"') for name in search_path.split(",")]
    first = next((name for name in names if name and name != "$user"), "disparo")
    return (
        f"no schema of the search_path `{search_path}` exists in the PostgreSQL database "
        f"{where}: create it (CREATE SCHEMA {first}) or fix `search_path` in `storage`, "
        "then run `disparo migrate`"
    )


def outdated_message(where: str, names: list[str]) -> str:
    count = len(names)
    plural = "migration" if count == 1 else "migrations"
    return (
        f"the PostgreSQL database {where} has {count} pending {plural} ({', '.join(names)}); "
        "run `disparo migrate`"
    )
