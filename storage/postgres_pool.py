"""The PostgreSQL connection pool: where it points, how it connects, and driver errors.

Every asyncpg error is translated here (``translate``) and never escapes the store.
The pool reconnects by itself: a connection the server closed (restart, failover,
``pg_terminate_backend``) is replaced on its next use. A read that finds its
connection dead is retried once on a fresh one (reads are safe to repeat); a server
that cannot be reached raises ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import asyncpg

from engine.errors import (
    ConfigError,
    Conflict,
    DisparoError,
    NotFound,
    OutboundChanged,
    SchemaOutdated,
    StaleFence,
    StaleRun,
    StoreError,
    StoreUnavailable,
)
from storage.postgres_dsn import describe

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0  # seconds to open one connection
ACQUIRE_TIMEOUT = 30.0  # seconds to wait for a free connection of the pool
COMMAND_TIMEOUT = 60.0  # seconds one statement may take before the call gives up
# Sessions of the store: UTC timestamps in JSON output.
SERVER_SETTINGS = {"TimeZone": "UTC"}
# Unless the DSN gives its own (``?application_name=disparo-node-2&lock_timeout=10s``):
# the name operators see in pg_stat_activity, and how long a statement waits for a
# lock another session holds. The store's own transactions hold locks for
# milliseconds; a lock held longer is somebody's open transaction (an operator's
# psql session on `runs`): the write gives up with ``StoreUnavailable`` (its caller
# retries) instead of stalling every write batched with it, and a session whose
# process died while it waited lets go of the locks it held. As long as SQLite's
# busy timeout.
APPLICATION_NAME = "disparo"
LOCK_TIMEOUT = "5s"

# SQLSTATE classes that mean "not now": connection, resources, operator intervention,
# system error, transaction rollback (deadlock, serialisation), lock not available.
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58", "40", "55", "HV")
_MISSING_SCHEMA = ("42P01", "42883", "42703", "42704")


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection died (a new one may well work)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state.startswith("08") or state in ("57P01", "57P02", "57P03")
    # InternalClientError: the driver lost track of the protocol (the server closed the
    # connection between two statements); the connection is unusable.
    return isinstance(
        exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError | ConnectionError
    )


def translate(exc: BaseException, where: str) -> DisparoError:
    """The domain error for a driver error; ``where`` names the database for operators."""
    if isinstance(exc, DisparoError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        return _server_error(exc, where)
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return ConfigError(f"storage: the PostgreSQL DSN for {where} is invalid ({exc})")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return StoreUnavailable(f"the PostgreSQL database {where} did not answer in time; retry")
    if lost_connection(exc) or isinstance(exc, OSError):
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, asyncpg.exceptions.InternalClientError):
            reason = "the server closed the connection"
        return StoreUnavailable(f"cannot reach the PostgreSQL database {where} ({reason}); retry")
    return StoreError(f"the PostgreSQL database {where} failed: {exc}")


def _server_error(exc: asyncpg.PostgresError, where: str) -> DisparoError:
    state = exc.sqlstate or ""
    text = getattr(exc, "message", None) or str(exc)
    constraint = getattr(exc, "constraint_name", None)
    return error_for(state, text, constraint, where)


def error_for(state: str, text: str, constraint: str | None, where: str) -> DisparoError:
    """The domain error for a SQLSTATE (from the driver or from a unit of a batch)."""
    if state == "DSFEN":
        return StaleFence(text)
    if state == "DSRUN":
        return StaleRun(text)
    if state == "DSCON":
        return Conflict(text)
    if state == "DSNOT":
        return NotFound(text)
    if state == "DSOUT":
        return OutboundChanged(text)
    if state == "23505":
        if constraint == "runs_one_open_exclusive":
            return Conflict("the contact already has an open run of this flow")
        return Conflict(f"a change conflicts with what is stored ({constraint or text})")
    if state == "23503":
        return NotFound(f"a change refers to a row that does not exist ({constraint or text})")
    if state == "42704" and text.startswith("unrecognized configuration parameter"):
        return ConfigError(
            f"storage: PostgreSQL at {where} has no such setting ({text}); the query "
            "parameters of the DSN other than the driver's own (sslmode, ...) are passed to "
            "the server as settings: fix the parameter's name or remove it"
        )
    if state in _MISSING_SCHEMA:
        return SchemaOutdated(
            f"the PostgreSQL database {where} is missing schema ({text}); run `disparo migrate`"
        )
    if state == "3D000":
        return StoreUnavailable(
            f"the PostgreSQL database {where} does not exist; create it, then run `disparo migrate`"
        )
    if state.startswith("28"):
        return StoreUnavailable(
            f"PostgreSQL refused the login to {where} ({text}); check the user and password "
            "in `storage`"
        )
    if state == "55P03":
        return StoreUnavailable(
            f"a lock this change needs in the PostgreSQL database {where} is held by "
            f"another session for longer than lock_timeout ({text}): look for a "
            "transaction left open in pg_stat_activity (state 'idle in transaction'); retry"
        )
    if state == "25006" or state[:2] in _UNAVAILABLE_CLASSES:
        return StoreUnavailable(f"the PostgreSQL database {where} is unavailable ({text}); retry")
    if state == "3F000":
        return StoreError(
            f"the schema PostgreSQL should use at {where} does not exist ({text}); create it"
        )
    return StoreError(f"the PostgreSQL database {where} failed: {text} (SQLSTATE {state})")


async def retry_foreign_key_races(attempt: Callable[[], Awaitable[T]], *, tries: int) -> T:
    """``attempt()`` (one transaction), taken again up to ``tries`` times in all while
    it fails because a concurrent insert made one of its deletes break a foreign key
    (what ``translate`` turns into ``NotFound``); any other error is raised at once."""
    for taken in range(1, tries + 1):
        try:
            return await attempt()
        except NotFound as exc:
            raced = isinstance(exc.__cause__, asyncpg.ForeignKeyViolationError)
            if not raced or taken == tries:
                raise
    raise ValueError(f"tries must be at least 1, not {tries}")


async def deleted(connection: Any, sql: str, *args: Any) -> int:
    """Run a DELETE on ``connection``; the number of rows it deleted."""
    status: str = await connection.execute(sql, *args)  # "DELETE <count>"
    return int(status.rsplit(" ", 1)[-1])


class Pool:
    """An asyncpg pool created on first use, with error translation and one retry on reads."""

    def __init__(self, dsn: str, *, min_size: int, max_size: int) -> None:
        self.where = describe(dsn)
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._closed = False

    async def get(self) -> asyncpg.Pool:
        if self._closed:
            raise StoreUnavailable(f"the store for {self.where} is closed")
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    timeout=CONNECT_TIMEOUT,
                    command_timeout=COMMAND_TIMEOUT,
                    server_settings=self._settings(),
                )
            except Exception as exc:
                raise translate(exc, self.where) from exc
        return self._pool

    def _settings(self) -> dict[str, str]:
        given = dict(parse_qsl(urlsplit(self._dsn).query))
        defaults = {"application_name": APPLICATION_NAME, "lock_timeout": LOCK_TIMEOUT}
        return {
            **{name: value for name, value in defaults.items() if name not in given},
            **SERVER_SETTINGS,
        }

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (Exception, asyncio.CancelledError):
                pool.terminate()

    async def run(self, method: str, sql: str, *args: Any, retry: bool = True) -> Any:
        """``connection.<method>(sql, *args)`` on a pool connection; errors translated.

        ``retry``: run it again once on a fresh connection when the first one was dead
        (only for statements that are safe to repeat).
        """
        for attempt in (1, 2):
            try:
                return await self.on_connection(lambda c: getattr(c, method)(sql, *args))
            except StoreUnavailable as exc:
                if attempt == 1 and retry and lost_connection(exc.__cause__ or exc):
                    continue
                raise
        raise AssertionError("unreachable")

    async def on_connection(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` on a pool connection; errors translated. A connection
        found dead is closed for good, so the pool opens a new one next time."""
        pool = await self.get()
        try:
            connection = await pool.acquire(timeout=ACQUIRE_TIMEOUT)
        except Exception as exc:
            raise translate(exc, self.where) from exc
        try:
            return await work(connection)
        except Exception as exc:
            if lost_connection(exc):
                # Closed for good (it may already be: the pool then dropped it itself).
                with contextlib.suppress(Exception):
                    connection.terminate()
            raise translate(exc, self.where) from exc
        finally:
            # A connection that cannot be reset is dropped by the pool; nothing to report.
            with contextlib.suppress(Exception):
                await pool.release(connection)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.run("fetch", sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.run("fetchrow", sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.run("fetchval", sql, *args)

    async def write(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One autocommit statement that writes (durable when this returns); no retry."""
        rows: list[asyncpg.Record] = await self.run("fetch", sql, *args, retry=False)
        return rows

    async def check_writable(self) -> None:
        """``StoreUnavailable`` when this server takes no writes: a standby the DSN points
        at after a failover, or ``default_transaction_read_only`` on. One read, no write."""
        if await self.fetchval("SELECT current_setting('transaction_read_only')") == "on":
            raise StoreUnavailable(
                f"the PostgreSQL database {self.where} is read-only (a standby, or "
                "default_transaction_read_only is on): nothing can be recorded; point "
                "`storage` at the primary"
            )
