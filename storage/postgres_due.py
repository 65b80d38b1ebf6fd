"""Due work on PostgreSQL: the claim of rows nobody holds, locked with ``SKIP LOCKED``,
in the claim order of ``storage.claim_order`` (migration 0008's partial indexes), the
heartbeat that extends the leases, and when the next row comes due.

The claim's parameters: $1 owner, $2 lease_until, $3 now, $4 limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from engine.models import DueWork
from storage.claim_order import STARTING_SQL, claim_order
from storage.columns import DUE_COLUMNS
from storage.postgres_codec import due_from_row
from storage.postgres_pool import Pool

# The due rows of one side of the claim order (migration 0008), oldest first, locked.
# LockRows sits under the LIMIT: a side locks only the rows it returns.
_CLAIMABLE = (
    "SELECT id FROM due_work WHERE kind {op} " + STARTING_SQL + " "
    "AND due_at <= $3 AND (lease_until IS NULL OR lease_until < $3) ORDER BY due_at, id "
    "LIMIT {limit} FOR UPDATE SKIP LOCKED"
)
# Work of runs under way first, then the work that starts runs (storage.claim_order).
# The starting side asks only for what the first left of ``limit``: each side locks
# what it returns, so the claim locks at most ``limit`` rows, all of which it claims
# (locked rows left unclaimed would be skipped by other nodes claiming meanwhile).
CLAIM = (
    f"WITH started AS ({_CLAIMABLE.format(op='NOT IN', limit='$4')}), "
    "starts AS ("
    + _CLAIMABLE.format(op="IN", limit="($4 - (SELECT count(*) FROM started))")
    # The outer LIMIT changes nothing but tells the planner how few rows to expect
    # (a join by primary key, not a scan of the table).
    + "), c AS (SELECT id FROM started UNION ALL SELECT id FROM starts LIMIT $4) "
    "UPDATE due_work AS d SET lease_owner = $1, lease_until = $2, fence = d.fence + 1 "
    f"FROM c WHERE d.id = c.id RETURNING {', '.join('d.' + c for c in DUE_COLUMNS.split(', '))}"
)

# Store.bring_sends_forward: $1 run id, $2 now.
BRING_SENDS_FORWARD = (
    "UPDATE due_work SET due_at = $2 WHERE run_id = $1 AND kind = 'dispatch' "
    "AND due_at > $2 AND (lease_until IS NULL OR lease_until < $2) RETURNING id"
)


class DueWorkMethods:
    """Claims, leases and due times; ``PostgresStore`` provides the pool."""

    _pool: Pool

    def _ready(self) -> None:
        raise NotImplementedError  # PostgresStore checks it is open

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def claim_due_work(
        self, *, owner: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[DueWork]:
        """Claim up to ``limit`` rows due at ``now`` that nobody holds: those of runs under
        way first, then the work that starts runs (START rows, fan-out and sweep
        chunks), each oldest due first.

        Each claimed row gets ``owner``, ``lease_until = now + lease_seconds`` and its
        fence + 1, durably, before this returns. Rows another node is claiming or
        completing at this moment are skipped (``SKIP LOCKED``), never waited for.
        """
        self._ready()
        if limit <= 0:
            return []
        rows = await self._pool.write(
            CLAIM, owner, now + timedelta(seconds=lease_seconds), now, limit
        )
        # RETURNING gives no order; callers get the claim order.
        return sorted((due_from_row(row) for row in rows), key=claim_order)

    async def extend_leases(
        self, *, owner: str, work: Sequence[DueWork], until: datetime
    ) -> set[int]:
        """Move ``lease_until`` of the rows ``owner`` still holds at the same fence.

        A row another transaction has locked is skipped, not waited for: it is being
        finished or moved on by a commit (which may lock several rows in another
        order: waiting could deadlock with it), and the next heartbeat, a third of a
        lease later, extends it if it is still held."""
        self._ready()
        if not work:
            return set()
        rows = await self._pool.write(
            "WITH mine AS (SELECT d.id FROM due_work AS d "
            "JOIN unnest($2::bigint[], $3::bigint[]) AS w (id, fence) "
            "ON d.id = w.id AND d.fence = w.fence WHERE d.lease_owner = $4 "
            "ORDER BY d.id FOR UPDATE OF d SKIP LOCKED) "
            "UPDATE due_work AS d SET lease_until = $1 FROM mine WHERE d.id = mine.id "
            "RETURNING d.id",
            until,
            [item.id for item in work],
            [item.fence for item in work],
            owner,
        )
        return {int(row["id"]) for row in rows}

    async def bring_sends_forward(self, run_id: str, now: datetime) -> int:
        """The run's later DISPATCH rows nobody holds, due ``now`` (see the protocol)."""
        self._ready()
        return len(await self._pool.write(BRING_SENDS_FORWARD, run_id, now))

    async def next_due_at(self) -> datetime | None:
        """The earliest moment a row becomes claimable (a lease expires 1 µs after it ends)."""
        row = await self._fetchrow(
            "SELECT least("
            "(SELECT due_at FROM due_work WHERE lease_until IS NULL ORDER BY due_at LIMIT 1), "
            "(SELECT min(greatest(due_at, lease_until + interval '1 microsecond')) "
            "FROM due_work WHERE lease_until IS NOT NULL)) AS at"
        )
        return None if row is None else row["at"]
