"""What the soak reads of the engine's database, from outside the engines.

SQLite is read through a read-only connection of its own (it sees only committed
rows); PostgreSQL through one asyncpg connection on the soak's schema. Both give
the queue figures sampled during the soak and the final tallies it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

QUEUE_SQL = (
    "SELECT (SELECT count(*) FROM due_work),"
    " (SELECT count(*) FROM runs WHERE status IN ('active', 'waiting')),"
    " (SELECT count(*) FROM messages WHERE status IN ('queued', 'sending'))"
)
RUNS_SQL = "SELECT status, count(*) FROM runs GROUP BY status"
MESSAGES_SQL = "SELECT status, count(*) FROM messages GROUP BY status"
KEYS_SQL = "SELECT idempotency_key FROM messages"


@dataclass(frozen=True)
class Queue:
    due: int
    open_runs: int
    unsent: int
    log_mb: float  # SQLite: the -wal file; PostgreSQL: 0 (its WAL is the server's)
    db_mb: float


@dataclass(frozen=True)
class Tally:
    runs: dict[str, int]
    messages: dict[str, int]
    keys: set[str]


class Probe(Protocol):
    def queue(self) -> Queue: ...
    def tally(self) -> Tally: ...
    def close(self) -> None: ...


class SQLiteProbe:
    def __init__(self, db: Path) -> None:
        self.db = db

    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        return contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10))

    def queue(self) -> Queue:
        wal = self.db.with_name(self.db.name + "-wal")
        with self._connect() as con:
            due, open_runs, unsent = con.execute(QUEUE_SQL).fetchone()
        return Queue(
            due=due,
            open_runs=open_runs,
            unsent=unsent,
            log_mb=(wal.stat().st_size if wal.exists() else 0) / 2**20,
            db_mb=self.db.stat().st_size / 2**20,
        )

    def tally(self) -> Tally:
        with self._connect() as con:
            return Tally(
                runs=dict(con.execute(RUNS_SQL).fetchall()),
                messages=dict(con.execute(MESSAGES_SQL).fetchall()),
                keys={key for (key,) in con.execute(KEYS_SQL)},
            )

    def close(self) -> None:
        pass


class PostgresProbe:
    """One connection on ``dsn`` (whose ``search_path`` names the soak's schema),
    driven from the soak's synchronous code on a loop of its own."""

    def __init__(self, dsn: str) -> None:
        import asyncpg

        self._loop = asyncio.new_event_loop()
        self._con: Any = self._loop.run_until_complete(asyncpg.connect(dsn))

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def queue(self) -> Queue:
        due, open_runs, unsent = self._run(self._con.fetchrow(QUEUE_SQL))
        size = self._run(
            self._con.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            )
        )
        return Queue(due=due, open_runs=open_runs, unsent=unsent, log_mb=0.0, db_mb=size / 2**20)

    def tally(self) -> Tally:
        runs = self._run(self._con.fetch(RUNS_SQL))
        messages = self._run(self._con.fetch(MESSAGES_SQL))
        keys = self._run(self._con.fetch(KEYS_SQL))
        return Tally(
            runs={row[0]: row[1] for row in runs},
            messages={row[0]: row[1] for row in messages},
            keys={row[0] for row in keys},
        )

    def close(self) -> None:
        self._run(self._con.close())
        self._loop.close()
