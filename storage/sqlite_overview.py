"""``Store.overview`` on SQLite: grouped reads (a CLI reads them in its own process)."""

from __future__ import annotations

from datetime import datetime

from storage.overview import DueCounts, LeaseCounts, Overview
from storage.sqlite_batch import GroupCommitConnection
from storage.sqlite_codec import from_us, from_us_or_none, to_us

_FREE = "(lease_until IS NULL OR lease_until <= :now)"
_DUE = f"""
SELECT kind,
       sum(CASE WHEN {_FREE} AND due_at <= :now THEN 1 ELSE 0 END),
       sum(CASE WHEN NOT {_FREE} THEN 1 ELSE 0 END),
       sum(CASE WHEN {_FREE} AND due_at > :now THEN 1 ELSE 0 END),
       min(CASE WHEN {_FREE} AND due_at <= :now THEN due_at END)
FROM due_work GROUP BY kind ORDER BY kind
"""
_LEASES = (
    "SELECT lease_owner, count(*), min(lease_until), max(lease_until) FROM due_work "
    "WHERE lease_until > :now GROUP BY lease_owner ORDER BY lease_owner"
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
    "SELECT 1 FROM due_work WHERE kind = 'inbound' AND run_id = :run AND due_at < :before "
    "UNION ALL SELECT 1 FROM due_work WHERE kind = 'status' AND due_at < :before "
    "AND message_id IN (SELECT id FROM messages WHERE run_id = :run) LIMIT 1"
)
_ZONES = (
    "SELECT timezone, count(*) FROM contacts WHERE timezone IS NOT NULL "
    "GROUP BY timezone ORDER BY timezone"
)
_AMBIGUOUS = (
    "SELECT count(*) FROM messages INDEXED BY messages_ambiguous WHERE status = 'ambiguous'"
)


class OverviewMethods:
    """``Store.overview`` on the store's one connection."""

    def _ready(self) -> GroupCommitConnection:
        raise NotImplementedError  # SQLiteStore provides the open connection

    async def overview(self, now: datetime) -> Overview:
        link = self._ready()
        params = {"now": to_us(now)}

        def read() -> Overview:
            db = link.db
            due = {
                kind: DueCounts(
                    due=due, leased=leased, later=later, oldest_due_at=from_us_or_none(oldest)
                )
                for kind, due, leased, later, oldest in db.execute(_DUE, params)
            }
            leases = {
                owner: LeaseCounts(
                    rows=rows, first_ends_at=from_us(first), last_ends_at=from_us(last)
                )
                for owner, rows, first, last in db.execute(_LEASES, params)
            }
            runs = dict(db.execute(_OPEN_RUNS))
            (ambiguous,) = db.execute(_AMBIGUOUS).fetchone()
            zones = dict(db.execute(_ZONES))
            return Overview(
                due_work=due,
                leases=leases,
                open_runs=runs,
                ambiguous_messages=ambiguous,
                contact_zones=zones,
            )

        return link.read(read)

    async def open_run_versions(self) -> dict[tuple[str, str], int]:
        link = self._ready()
        return link.read(
            lambda: {(flow, version): n for flow, version, n in link.db.execute(_OPEN_VERSIONS)}
        )

    async def answers_queued_before(self, run_id: str, before: datetime) -> bool:
        link = self._ready()
        params = {"run": run_id, "before": to_us(before)}
        return link.read(lambda: link.db.execute(_ANSWERS_QUEUED, params).fetchone() is not None)
