"""Reads of what is queued on PostgreSQL: ``Store.overview`` (five grouped reads)
and ``Store.has_queued_status``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.overview import DueCounts, LeaseCounts, Overview

_FREE = "(lease_until IS NULL OR lease_until <= $1)"
_DUE = f"""
SELECT kind,
       count(*) FILTER (WHERE {_FREE} AND due_at <= $1),
       count(*) FILTER (WHERE NOT {_FREE}),
       count(*) FILTER (WHERE {_FREE} AND due_at > $1),
       min(due_at) FILTER (WHERE {_FREE} AND due_at <= $1)
FROM due_work GROUP BY kind ORDER BY kind
"""
_LEASES = (
    "SELECT lease_owner, count(*), min(lease_until), max(lease_until) FROM due_work "
    "WHERE lease_until > $1 GROUP BY lease_owner ORDER BY lease_owner"
)
_OPEN_RUNS = (
    "SELECT flow, count(*) FROM runs WHERE status IN ('active', 'waiting') "
    "GROUP BY flow ORDER BY flow"
)
_OPEN_VERSIONS = (
    "SELECT flow, flow_version, count(*) FROM runs WHERE status IN ('active', 'waiting') "
    "GROUP BY flow, flow_version ORDER BY flow, flow_version"
)
_ANSWERS_QUEUED = (
    "SELECT EXISTS (SELECT 1 FROM due_work WHERE kind = 'inbound' AND run_id = $1 "
    "AND due_at < $2) OR EXISTS (SELECT 1 FROM due_work WHERE kind = 'status' "
    "AND due_at < $2 AND message_id IN (SELECT id FROM messages WHERE run_id = $1))"
)
_ZONES = (
    "SELECT timezone, count(*) FROM contacts WHERE timezone IS NOT NULL "
    "GROUP BY timezone ORDER BY timezone"
)
_AMBIGUOUS = "SELECT count(*) FROM messages WHERE status = 'ambiguous'"
_QUEUED_STATUS = (  # served by due_work_message (migration 0004)
    "SELECT EXISTS (SELECT 1 FROM due_work WHERE message_id = $1 AND kind = 'status') AS queued"
)


class OverviewMethods:
    """``Store.overview``; ``PostgresStore`` runs the queries on its pool."""

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def has_queued_status(self, message_id: str) -> bool:
        rows = await self._fetch(_QUEUED_STATUS, message_id)
        return bool(rows[0]["queued"])

    async def overview(self, now: datetime) -> Overview:
        due = {
            row[0]: DueCounts(due=row[1], leased=row[2], later=row[3], oldest_due_at=row[4])
            for row in await self._fetch(_DUE, now)
        }
        leases = {
            row[0]: LeaseCounts(rows=row[1], first_ends_at=row[2], last_ends_at=row[3])
            for row in await self._fetch(_LEASES, now)
        }
        runs = {row[0]: row[1] for row in await self._fetch(_OPEN_RUNS)}
        (ambiguous,) = (await self._fetch(_AMBIGUOUS))[0]
        zones = {row[0]: row[1] for row in await self._fetch(_ZONES)}
        return Overview(
            due_work=due,
            leases=leases,
            open_runs=runs,
            ambiguous_messages=ambiguous,
            contact_zones=zones,
        )

    async def open_run_versions(self) -> dict[tuple[str, str], int]:
        return {(row[0], row[1]): row[2] for row in await self._fetch(_OPEN_VERSIONS)}

    async def answers_queued_before(self, run_id: str, before: datetime) -> bool:
        (queued,) = (await self._fetch(_ANSWERS_QUEUED, run_id, before))[0]
        return bool(queued)
