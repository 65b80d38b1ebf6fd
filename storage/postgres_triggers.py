"""Trigger storage on PostgreSQL: the schedule of keyed trigger rows, and the contact
pages that fan-outs and re-engagement sweeps walk.

Cron firings are recorded by ``disparo_commit`` (``Commit.firing``, unique by
(flow, trigger, fire time)); ``schedule_triggers`` is a write unit of the group
commit (``disparo_schedule_triggers``). Contact ids are ordered byte-wise
(``COLLATE "C"``, as SQLite orders them), whatever the database's collation, and
each page is served by an index in that order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from engine.models import Contact, DueKind, NewDueWork
from storage.base import BulkStart, BulkStartResult, ContactTimestamp
from storage.bulk_starts import check_requests
from storage.columns import CONTACT_COLUMNS, stamped_ids, stamped_profiles, window_columns
from storage.postgres_codec import contact_from_row, schedule_unit
from storage.postgres_contacts import encode_upserts
from storage.postgres_starts import start_runs
from storage.sqlite_codec import loads
from storage.trigger_state import StoredTrigger

T = TypeVar("T")

# The only columns a sweep may select on: each has a (column, id) index.
TIMESTAMP_COLUMNS: frozenset[str] = frozenset(
    {"last_inbound_at", "last_interaction_at", "last_outbound_at"}
)


class TriggerMethods:
    """The trigger verbs of ``storage.base.Store``; ``PostgresStore`` provides the I/O."""

    async def _apply(self, unit: dict[str, Any]) -> Any:
        raise NotImplementedError  # PostgresStore sends the unit in its group commit

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def _with_connection(self, work: Callable[[Any], Awaitable[T]]) -> T:
        raise NotImplementedError  # PostgresStore lends a pool connection

    def _ready(self) -> None:
        raise NotImplementedError  # PostgresStore checks that it is open

    async def schedule_triggers(self, wanted: Mapping[str, NewDueWork], now: datetime) -> list[str]:
        """Make the keyed trigger rows exactly ``wanted`` (see the protocol)."""
        added: list[str] = await self._apply(schedule_unit(wanted, now))
        return added

    async def stored_triggers(self) -> list[StoredTrigger]:
        """Every keyed trigger row, by key (see the protocol)."""
        rows = await self._fetch(
            "SELECT key, kind, due_at, payload FROM due_work WHERE key IS NOT NULL "
            'ORDER BY key COLLATE "C"'
        )
        return [
            StoredTrigger(
                key=row["key"],
                kind=DueKind(row["kind"]),
                due_at=row["due_at"],
                payload=loads(row["payload"]),
            )
            for row in rows
        ]

    async def last_firing(self, flow: str, trigger: int) -> datetime | None:
        """The newest recorded fire time of that trigger (see the protocol)."""
        rows = await self._fetch(
            "SELECT max(fire_time) AS newest FROM trigger_firings "
            "WHERE flow = $1 AND trigger_index = $2",
            flow,
            trigger,
        )
        newest: datetime | None = rows[0]["newest"]
        return newest

    async def page_contacts(self, *, after: str | None, limit: int) -> list[Contact]:
        """Up to ``limit`` contacts with ids after ``after``, in id (byte) order."""
        if after is None:
            rows = await self._fetch(
                f'SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY id COLLATE "C" LIMIT $1',
                max(0, limit),
            )
        else:
            rows = await self._fetch(
                f'SELECT {CONTACT_COLUMNS} FROM contacts WHERE id COLLATE "C" > $1 '
                'ORDER BY id COLLATE "C" LIMIT $2',
                after,
                max(0, limit),
            )
        return [contact_from_row(row) for row in rows]

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
        sql, params = window_query(
            field, above=above, up_to=up_to, cursor=cursor, limit=limit, profile=profile
        )
        rows = await self._fetch(sql, *params)
        return stamped_profiles(rows, _as_is) if profile else stamped_ids(rows, _as_is)

    async def start_runs(self, starts: BulkStart) -> BulkStartResult:
        """Start many runs in one transaction (see ``Store.start_runs``)."""
        self._ready()
        check_requests(starts)
        contacts = encode_upserts(starts.contacts, starts.now)
        return await self._with_connection(
            lambda connection: start_runs(connection, starts, contacts)
        )


def window_query(
    field: ContactTimestamp,
    *,
    above: datetime | None,
    up_to: datetime | None,
    cursor: tuple[datetime, str] | None,
    limit: int,
    profile: bool = False,
) -> tuple[str, list[Any]]:
    """The SQL (and parameters) of ``window_page``."""
    if field not in TIMESTAMP_COLUMNS:
        raise ValueError(
            f"contacts cannot be swept by {field!r}; use one of {sorted(TIMESTAMP_COLUMNS)}"
        )
    where = [f"{field} IS NOT NULL"]
    params: list[Any] = []
    if cursor is not None:
        params += [cursor[0], cursor[1]]
        where.append(f'({field}, id COLLATE "C") > (${len(params) - 1}, ${len(params)})')
    if above is not None:
        params.append(above)
        where.append(f"{field} > ${len(params)}")
    if up_to is not None:
        params.append(up_to)
        where.append(f"{field} <= ${len(params)}")
    params.append(max(0, limit))
    columns = window_columns(field, profile=profile)
    sql = (
        f"SELECT {columns} FROM contacts WHERE {' AND '.join(where)} "
        f'ORDER BY {field}, id COLLATE "C" LIMIT ${len(params)}'
    )
    return sql, params


def _as_is(stamp: datetime) -> datetime:
    """asyncpg decodes timestamptz itself."""
    return stamp
