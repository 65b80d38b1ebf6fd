"""The retention purge on SQLite (``Store.purge``): one write unit per batch.

The unit runs inside the group commit like every other write, so a batch is one
savepoint of a shared COMMIT and its deletes are durable when ``purge`` returns.
Every selection is served by an index of migration 0004 (finished runs by age,
events of no run by time, pending reports by age); the deletes of messages look
up the due work that names them through ``due_work_message``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from storage.base import Purged
from storage.sqlite_batch import GroupCommitConnection
from storage.sqlite_codec import to_us

FINISHED_STATUSES_SQL = "('completed', 'failed', 'cancelled')"

# The finished runs a purge may take: a run that due work still names (itself or
# one of its messages: a late report waiting for the dispatcher) is passed over.
_PURGEABLE = f"""
FROM runs AS r INDEXED BY runs_finished
WHERE status IN {FINISHED_STATUSES_SQL} AND updated_at < :before
  AND NOT EXISTS (SELECT 1 FROM due_work AS d WHERE d.run_id = r.id)
  AND NOT EXISTS (
      SELECT 1 FROM messages AS m JOIN due_work AS d ON d.message_id = m.id
      WHERE m.run_id = r.id)
"""
_FINISHED_RUNS = f"SELECT id {_PURGEABLE} ORDER BY updated_at, id LIMIT :limit"
_CONTACT_EVENTS = (
    "DELETE FROM events WHERE id IN (SELECT id FROM events INDEXED BY events_contact_only "
    "WHERE run_id IS NULL AND at < :before ORDER BY at, id LIMIT :limit)"
)
_PENDING = (
    "DELETE FROM pending_statuses WHERE id IN (SELECT id FROM pending_statuses "
    "WHERE received_at < :before ORDER BY received_at, id LIMIT :limit)"
)
_FIRINGS = (
    "DELETE FROM trigger_firings WHERE (flow, trigger_index, fire_time) IN "
    "(SELECT flow, trigger_index, fire_time FROM trigger_firings WHERE fire_time < :before "
    "LIMIT :limit)"
)
# What a purge would delete now, all batches (``Store.count_purgeable``).
_COUNT = f"""
WITH doomed AS (SELECT id {_PURGEABLE})
SELECT (SELECT count(*) FROM doomed),
       (SELECT count(*) FROM messages WHERE run_id IN (SELECT id FROM doomed)),
       (SELECT count(*) FROM events WHERE run_id IN (SELECT id FROM doomed)),
       (SELECT count(*) FROM events INDEXED BY events_contact_only
        WHERE run_id IS NULL AND at < :before),
       (SELECT count(*) FROM pending_statuses WHERE received_at < :before),
       (SELECT count(*) FROM trigger_firings WHERE fire_time < :before)
"""


class RetentionMethods:
    """``Store.purge`` on the store's one connection."""

    def _ready(self) -> GroupCommitConnection:
        raise NotImplementedError  # SQLiteStore provides the open connection

    async def purge(self, before: datetime, *, limit: int) -> Purged:
        """Delete one batch of what finished before ``before`` (see the protocol)."""
        check_limit(limit)
        stamp = to_us(before)
        return await self._ready().write(lambda db: purge(db, stamp, limit))

    async def count_purgeable(self, before: datetime) -> Purged:
        """What ``purge`` calls with ``before`` would delete, all batches together."""
        link = self._ready()
        row = link.read(lambda: link.db.execute(_COUNT, {"before": to_us(before)}).fetchone())
        return counted(row)


def check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"a purge batch limit must be a whole number >= 1, not {limit!r}")


def counted(row: Sequence[int]) -> Purged:
    """``Purged`` from the six counts of a count query, in ``_COUNT``'s order."""
    return Purged.of_counts(*row)


def batch_purged(limit: int, runs_taken: int, counts: tuple[int, ...]) -> Purged:
    """``Purged`` of one batch from the six counts in ``_COUNT``'s order (both
    backends); ``more`` when any kind filled ``limit``: older rows may be left."""
    _, _, _, contact_events, pending, firings = counts
    return Purged.of_counts(*counts, more=limit in (runs_taken, contact_events, pending, firings))


def purge(db: sqlite3.Connection, before: int, limit: int) -> Purged:
    bounds = {"before": before, "limit": limit}
    run_ids = [row[0] for row in db.execute(_FINISHED_RUNS, bounds)]
    run_events = messages = runs = 0
    if run_ids:
        marks = _marks(run_ids)
        run_events = _delete(db, f"DELETE FROM events WHERE run_id IN ({marks})", run_ids)
        messages = _delete(db, f"DELETE FROM messages WHERE run_id IN ({marks})", run_ids)
        runs = _delete(db, f"DELETE FROM runs WHERE id IN ({marks})", run_ids)
    contact_events = _delete(db, _CONTACT_EVENTS, bounds)
    pending = _delete(db, _PENDING, bounds)
    firings = _delete(db, _FIRINGS, bounds)
    counts = (runs, messages, run_events, contact_events, pending, firings)
    return batch_purged(limit, len(run_ids), counts)


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _delete(db: sqlite3.Connection, sql: str, params: Sequence[object] | dict[str, int]) -> int:
    return db.execute(sql, params).rowcount
