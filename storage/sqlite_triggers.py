"""Trigger storage on SQLite: the schedule of keyed trigger rows, cron firings, and the
contact pages that fan-outs and re-engagement sweeps walk.

Write units (``schedule``, ``record_firing``) run inside the caller's savepoint
(``storage.sqlite_batch``); the queries are plain reads on the store's connection.
``TriggerMethods`` gives ``SQLiteStore`` the trigger verbs of the Store protocol.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.errors import Conflict
from engine.models import Contact, DueKind, NewDueWork
from storage.base import BulkStart, BulkStartResult, ContactTimestamp
from storage.changes import TriggerFiring
from storage.columns import CONTACT_COLUMNS, stamped_ids, stamped_profiles, window_columns
from storage.sqlite_batch import GroupCommitConnection
from storage.sqlite_codec import contact_from_row, dumps, from_us, iso, loads, to_us
from storage.sqlite_starts import start_runs
from storage.trigger_state import StoredTrigger

# The only columns a sweep may select on: each has a covering (column, id) index.
TIMESTAMP_COLUMNS: frozenset[str] = frozenset(
    {"last_inbound_at", "last_interaction_at", "last_outbound_at"}
)


class TriggerMethods:
    """The trigger verbs of ``storage.base.Store`` on the store's one connection."""

    def _ready(self) -> GroupCommitConnection:
        raise NotImplementedError  # SQLiteStore provides the open connection

    async def schedule_triggers(self, wanted: Mapping[str, NewDueWork], now: datetime) -> list[str]:
        """Make the keyed trigger rows exactly ``wanted`` (see the protocol)."""
        stamp = to_us(now)
        return await self._ready().write(lambda db: schedule(db, wanted, stamp))

    async def stored_triggers(self) -> list[StoredTrigger]:
        """Every keyed trigger row, by key (see the protocol)."""
        link = self._ready()
        return link.read(stored_triggers, link.db)

    async def last_firing(self, flow: str, trigger: int) -> datetime | None:
        """The newest recorded fire time of that trigger (see the protocol)."""
        link = self._ready()
        return link.read(last_firing, link.db, flow, trigger)

    async def page_contacts(self, *, after: str | None, limit: int) -> list[Contact]:
        """Up to ``limit`` contacts with ids after ``after``, in id (byte) order."""
        link = self._ready()
        return link.read(page_contacts, link.db, after, limit)

    async def window_page(
        self,
        field: ContactTimestamp,
        *,
        above: datetime | None,
        up_to: datetime | None,
        cursor: tuple[datetime, str] | None = None,
        limit: int,
        profile: bool = False,
    ) -> list[tuple[Contact, datetime]]:
        """(contact, ``field``) in ``(above, up_to]`` by (``field``, id), decoding only the
        id, or with ``profile`` what an expression reads."""
        link = self._ready()
        sql, params = window_query(
            field, above=above, up_to=up_to, cursor=cursor, limit=limit, profile=profile
        )
        rows = link.read(_rows, link.db, sql, params)
        return stamped_profiles(rows, from_us) if profile else stamped_ids(rows, from_us)

    async def start_runs(self, starts: BulkStart) -> BulkStartResult:
        """Start many runs in one transaction (see ``Store.start_runs``)."""
        return await self._ready().write(lambda db: start_runs(db, starts))


def _rows(db: sqlite3.Connection, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()


def schedule(db: sqlite3.Connection, wanted: Mapping[str, NewDueWork], now: int) -> list[str]:
    """Insert the missing keys, delete keyed rows not wanted; return the keys inserted."""
    stored = {row[0] for row in db.execute("SELECT key FROM due_work WHERE key IS NOT NULL")}
    for key in stored - set(wanted):
        db.execute("DELETE FROM due_work WHERE key = ?", (key,))
    added: list[str] = []
    for key, due in wanted.items():
        if key in stored:
            continue
        cursor = db.execute(
            "INSERT INTO due_work (kind, due_at, run_id, message_id, payload, created_at, key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                due.kind.value,
                to_us(due.due_at),
                due.run_id,
                due.message_id,
                dumps(due.payload),
                now,
                key,
            ),
        )
        if cursor.rowcount == 1:
            added.append(key)
    return added


def stored_triggers(db: sqlite3.Connection) -> list[StoredTrigger]:
    rows = db.execute(
        "SELECT key, kind, due_at, payload FROM due_work WHERE key IS NOT NULL ORDER BY key"
    ).fetchall()
    return [
        StoredTrigger(key=key, kind=DueKind(kind), due_at=from_us(due_at), payload=loads(payload))
        for key, kind, due_at, payload in rows
    ]


def last_firing(db: sqlite3.Connection, flow: str, trigger: int) -> datetime | None:
    (newest,) = db.execute(
        "SELECT max(fire_time) FROM trigger_firings WHERE flow = ? AND trigger_index = ?",
        (flow, trigger),
    ).fetchone()
    return None if newest is None else from_us(newest)


def record_firing(db: sqlite3.Connection, firing: TriggerFiring, now: int) -> None:
    """Insert the firing row; ``Conflict`` when that fire time already fired."""
    cursor = db.execute(
        "INSERT INTO trigger_firings (flow, trigger_index, fire_time, fired_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (firing.flow, firing.trigger, to_us(firing.fire_time), now),
    )
    if cursor.rowcount != 1:
        raise Conflict(
            f"trigger {firing.trigger + 1} of flow {firing.flow!r} already fired for "
            f"{iso(firing.fire_time)}"
        )


def page_contacts(db: sqlite3.Connection, after: str | None, limit: int) -> list[Contact]:
    if limit <= 0:
        return []
    if after is None:
        rows = db.execute(
            f"SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
    else:
        rows = db.execute(
            f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()
    return [contact_from_row(row) for row in rows]


def window_query(
    field: ContactTimestamp,
    *,
    above: datetime | None,
    up_to: datetime | None,
    cursor: tuple[datetime, str] | None,
    limit: int,
    profile: bool = False,
) -> tuple[str, list[Any]]:
    """The SQL (and parameters) of ``window_page``; ``bench/sweep.py`` times it."""
    if field not in TIMESTAMP_COLUMNS:
        raise ValueError(
            f"contacts cannot be swept by {field!r}; use one of {sorted(TIMESTAMP_COLUMNS)}"
        )
    where = [f"{field} IS NOT NULL"]
    params: list[Any] = []
    if cursor is not None:
        where.append(f"({field}, id) > (?, ?)")
        params += [to_us(cursor[0]), cursor[1]]
    if above is not None:
        where.append(f"{field} > ?")
        params.append(to_us(above))
    if up_to is not None:
        where.append(f"{field} <= ?")
        params.append(to_us(up_to))
    columns = window_columns(field, profile=profile)
    sql = f"SELECT {columns} FROM contacts WHERE {' AND '.join(where)} ORDER BY {field}, id LIMIT ?"
    return sql, [*params, max(0, limit)]
