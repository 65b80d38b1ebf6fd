"""The retention purge on PostgreSQL (``Store.purge``): one transaction per batch.

Any number of processes may purge at once: each batch locks the runs and rows it
takes with ``FOR UPDATE SKIP LOCKED``, so two batches never take the same rows and
neither waits for the other. It deletes a run's rows only under its contact's
advisory key, as every writer of a contact's rows does (migration 0011), and
skips a contact whose key another transaction holds (``_take_runs``). Every
selection is served by an index of migration 0004; deleting messages checks the
foreign key of ``due_work.message_id`` through ``due_work_message``.

A status report for an old message may be queued (a STATUS row naming the message)
between the batch's check that no due work names its runs and the delete of their
messages: the delete then breaks the foreign key and the whole batch rolls back.
The batch is taken again at once; its check now sees the row and passes that run
over until the report is applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from storage.base import Purged
from storage.postgres_pool import deleted, retry_foreign_key_races
from storage.sqlite_retention import batch_purged, check_limit, counted

T = TypeVar("T")

# The finished runs a purge may take (see storage.sqlite_retention); $1 is the cutoff.
_PURGEABLE = """
FROM runs AS r
WHERE status IN ('completed', 'failed', 'cancelled') AND updated_at < $1
  AND NOT EXISTS (SELECT 1 FROM due_work AS d WHERE d.run_id = r.id)
  AND NOT EXISTS (
      SELECT 1 FROM messages AS m JOIN due_work AS d ON d.message_id = m.id
      WHERE m.run_id = r.id)
"""
# The runs no other batch took, then the keys of their contacts no writer holds
# (tried, never waited for).
_FINISHED_RUNS = (
    f"SELECT id, contact_id {_PURGEABLE} ORDER BY updated_at, id LIMIT $2 "
    "FOR UPDATE OF r SKIP LOCKED"
)
_FREE_CONTACTS = (
    "SELECT c FROM (SELECT DISTINCT c, disparo_contact_key(c) AS k "
    "FROM unnest($1::text[]) AS c) AS keyed WHERE pg_try_advisory_xact_lock(k)"
)
_COUNT = f"""
WITH doomed AS (SELECT id {_PURGEABLE})
SELECT (SELECT count(*) FROM doomed),
       (SELECT count(*) FROM messages WHERE run_id IN (SELECT id FROM doomed)),
       (SELECT count(*) FROM events WHERE run_id IN (SELECT id FROM doomed)),
       (SELECT count(*) FROM events WHERE run_id IS NULL AND at < $1),
       (SELECT count(*) FROM pending_statuses WHERE received_at < $1),
       (SELECT count(*) FROM trigger_firings WHERE fire_time < $1)
"""
_CONTACT_EVENTS = (
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE run_id IS NULL AND at < $1 "
    "ORDER BY at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
)
_PENDING = (
    "DELETE FROM pending_statuses WHERE id IN (SELECT id FROM pending_statuses "
    "WHERE received_at < $1 ORDER BY received_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
)
_FIRINGS = (
    "DELETE FROM trigger_firings WHERE (flow, trigger_index, fire_time) IN "
    "(SELECT flow, trigger_index, fire_time FROM trigger_firings WHERE fire_time < $1 "
    "LIMIT $2 FOR UPDATE SKIP LOCKED)"
)
# A batch that lost the race described above is taken again this many times.
_ATTEMPTS = 3


class RetentionMethods:
    """``Store.purge``; ``PostgresStore`` provides the transaction."""

    async def _in_transaction(self, work: Callable[[Any], Awaitable[T]]) -> T:
        raise NotImplementedError  # PostgresStore runs it on a pool connection

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def count_purgeable(self, before: datetime) -> Purged:
        """What ``purge`` calls with ``before`` would delete, all batches together."""
        row = await self._fetchrow(_COUNT, before)
        assert row is not None  # one row of counts, always
        return counted(tuple(row))

    async def purge(self, before: datetime, *, limit: int) -> Purged:
        """Delete one batch of what finished before ``before`` (see the protocol)."""
        check_limit(limit)

        async def work(connection: Any) -> Purged:
            return await _purge(connection, before, limit)

        return await retry_foreign_key_races(lambda: self._in_transaction(work), tries=_ATTEMPTS)


async def _purge(connection: Any, before: datetime, limit: int) -> Purged:
    run_ids = await _take_runs(connection, before, limit)
    run_events = messages = runs = 0
    if run_ids:
        run_events = await deleted(
            connection, "DELETE FROM events WHERE run_id = ANY($1::text[])", run_ids
        )
        messages = await deleted(
            connection, "DELETE FROM messages WHERE run_id = ANY($1::text[])", run_ids
        )
        runs = await deleted(connection, "DELETE FROM runs WHERE id = ANY($1::text[])", run_ids)
    contact_events = await deleted(connection, _CONTACT_EVENTS, before, limit)
    pending = await deleted(connection, _PENDING, before, limit)
    firings = await deleted(connection, _FIRINGS, before, limit)
    counts = (runs, messages, run_events, contact_events, pending, firings)
    return batch_purged(limit, len(run_ids), counts)


async def _take_runs(connection: Any, before: datetime, limit: int) -> list[str]:
    """The finished runs this batch deletes, under their contacts' keys.

    Every writer of a contact's rows holds the contact's advisory key (migration
    0011); a late status report for an old message is such a writer. The purge
    deletes a run's messages and events only under its contact's key, and takes a
    key only if it can have it at once: a contact whose key a writer holds is left
    for the next batch. So the purge never waits for a key or a row (its runs it
    takes with SKIP LOCKED), and a writer never waits for it in a cycle."""
    taken = await connection.fetch(_FINISHED_RUNS, before, limit)
    if not taken:
        return []
    contacts = sorted({row["contact_id"] for row in taken})
    free = {row["c"] for row in await connection.fetch(_FREE_CONTACTS, contacts)}
    return [row["id"] for row in taken if row["contact_id"] in free]
