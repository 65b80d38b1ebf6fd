"""What ``max_per_day`` and ``recent_contact`` count on SQLite, and the check of an
``OutboundGuard`` inside the ``sending`` commit.

A message counts from its ``sending`` commit: a send on its way has not left yet,
but it is about to, and another engine deciding a send to the same contact must
see it. A ``sending`` message counts as contact "now" for ``recent_contact`` (its
``updated_at`` is its ``sending`` commit). SQLite has one writer at a time, so the
guard's counts and the commit it guards cannot interleave with another's.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from engine.errors import OutboundChanged
from storage.changes import OutboundGuard
from storage.sqlite_batch import GroupCommitConnection
from storage.sqlite_codec import from_us, to_us

_LEFT = "status IN ('sent', 'delivered', 'read')"
_COUNT = (
    "SELECT (SELECT count(*) FROM messages WHERE contact_id = :contact AND left_at >= :since "
    f"AND {_LEFT}) + (SELECT count(*) FROM messages INDEXED BY messages_sending "
    "WHERE contact_id = :contact AND status = 'sending' AND id IS NOT :message)"
)
_LAST = (
    "SELECT max(at) FROM ("
    "SELECT max(left_at) AS at FROM messages WHERE contact_id = :contact "
    f"AND run_id IS NOT :run AND {_LEFT} AND left_at IS NOT NULL UNION ALL "
    "SELECT max(updated_at) FROM messages INDEXED BY messages_sending "
    "WHERE contact_id = :contact AND status = 'sending' AND run_id IS NOT :run)"
)


def count_outbound(
    db: sqlite3.Connection, contact_id: str, since: datetime, *, but: str | None = None
) -> int:
    row = db.execute(_COUNT, {"contact": contact_id, "since": to_us(since), "message": but})
    return int(row.fetchone()[0])


def last_outbound_at(
    db: sqlite3.Connection, contact_id: str, exclude_run: str | None
) -> datetime | None:
    row = db.execute(_LAST, {"contact": contact_id, "run": exclude_run}).fetchone()
    return None if row[0] is None else from_us(row[0])


def check_guard(db: sqlite3.Connection, guard: OutboundGuard) -> None:
    """Raise ``OutboundChanged`` when the guard's counts no longer allow the send."""
    if guard.max_per_day is not None and guard.day_start is not None:
        counted = count_outbound(db, guard.contact_id, guard.day_start, but=guard.message_id)
        if counted >= guard.max_per_day:
            raise OutboundChanged(
                f"{counted} message(s) to contact {guard.contact_id} left or are leaving "
                f"today: max_per_day {guard.max_per_day} is reached"
            )
    if guard.recent_since is not None:
        last = last_outbound_at(db, guard.contact_id, guard.run_id)
        if last is not None and last > guard.recent_since:
            raise OutboundChanged(
                f"another run's message to contact {guard.contact_id} left or is leaving "
                f"since {guard.recent_since.isoformat()}: recent_contact"
            )


class OutboundMethods:
    """``Store.count_outbound`` and ``Store.last_outbound_at`` on the store's connection."""

    def _ready(self) -> GroupCommitConnection:
        raise NotImplementedError  # SQLiteStore provides the open connection

    async def count_outbound(self, contact_id: str, since: datetime) -> int:
        link = self._ready()
        return link.read(count_outbound, link.db, contact_id, since)

    async def last_outbound_at(
        self, contact_id: str, *, exclude_run: str | None = None
    ) -> datetime | None:
        link = self._ready()
        return link.read(last_outbound_at, link.db, contact_id, exclude_run)
