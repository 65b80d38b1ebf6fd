"""Write units of due work: claim under a lease and a fence, complete, reschedule, cancel.

A claim bumps the row's fence; completing or rescheduling names the fence it saw,
so a worker whose lease was taken over can never write over the newer claim.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from engine.errors import StaleFence
from engine.models import DueWork, NewDueWork
from storage.changes import Completion
from storage.claim_order import STARTING_SQL, claim_order
from storage.columns import DUE_COLUMNS
from storage.sqlite_codec import due_from_row, dumps, to_us

# The due rows of one side of the claim order (migration 0008), oldest first.
_CLAIMABLE = (
    "SELECT id, {starting} AS starting, due_at FROM (SELECT id, due_at FROM due_work "
    "WHERE kind {op} " + STARTING_SQL + " AND due_at <= :now "
    "AND (lease_until IS NULL OR lease_until < :now) ORDER BY due_at, id LIMIT :limit)"
)
_CLAIM = (
    "UPDATE due_work SET lease_owner = :owner, lease_until = :until, fence = fence + 1 "
    "WHERE id IN (SELECT id FROM ("
    + _CLAIMABLE.format(starting=0, op="NOT IN")
    + " UNION ALL "
    + _CLAIMABLE.format(starting=1, op="IN")
    + f") ORDER BY starting, due_at, id LIMIT :limit) RETURNING {DUE_COLUMNS}"
)


def claim(db: sqlite3.Connection, owner: str, now: int, until: int, limit: int) -> list[DueWork]:
    """Claim the due rows of runs under way first, then those that start runs (START
    rows, fan-out and sweep chunks), each oldest first."""
    rows = db.execute(
        _CLAIM, {"owner": owner, "until": until, "now": now, "limit": limit}
    ).fetchall()
    # RETURNING gives no order; callers get the claim order.
    return sorted((due_from_row(row) for row in rows), key=claim_order)


def extend(db: sqlite3.Connection, owner: str, work: Sequence[DueWork], until: int) -> set[int]:
    held: set[int] = set()
    for item in work:
        cursor = db.execute(
            "UPDATE due_work SET lease_until = ? WHERE id = ? AND lease_owner = ? AND fence = ?",
            (until, item.id, owner, item.fence),
        )
        if cursor.rowcount == 1:
            held.add(item.id)
    return held


def complete(db: sqlite3.Connection, done: Completion) -> None:
    """Delete or reschedule the claimed row under its fence; ``StaleFence`` if it moved on.

    One statement does both the fence check and the write: the row is touched only
    while it still carries the fence it was claimed with.
    """
    work = done.work
    if done.retry_at is None:
        cursor = db.execute(
            "DELETE FROM due_work WHERE id = ? AND fence = ?", (work.id, work.fence)
        )
    else:
        cursor = db.execute(
            "UPDATE due_work SET due_at = ?, lease_owner = NULL, lease_until = NULL, "
            "attempts = attempts + 1, payload = coalesce(?, payload) WHERE id = ? AND fence = ?",
            (
                to_us(done.retry_at),
                None if done.payload is None else dumps(done.payload),
                work.id,
                work.fence,
            ),
        )
    if cursor.rowcount == 1:
        return
    row = db.execute("SELECT fence FROM due_work WHERE id = ?", (work.id,)).fetchone()
    now_held = "is gone" if row is None else f"was claimed again (fence {row[0]})"
    raise StaleFence(
        f"due work {work.id} {now_held} since it was claimed with fence {work.fence}; "
        "this result is dropped"
    )


def cancel_due(
    db: sqlite3.Connection, run_id: str, now: int, *, keep: int | None, timers_only: bool
) -> None:
    """Drop the run's rows nobody holds (no lease, or an expired one), except ``keep``."""
    kind = " AND kind = 'timer'" if timers_only else ""
    db.execute(
        "DELETE FROM due_work WHERE run_id = ? AND id IS NOT ? "
        f"AND (lease_until IS NULL OR lease_until < ?){kind}",
        (run_id, keep, now),
    )


def insert_due(db: sqlite3.Connection, due: NewDueWork, now: int) -> None:
    db.execute(
        "INSERT INTO due_work (kind, due_at, run_id, message_id, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (due.kind.value, to_us(due.due_at), due.run_id, due.message_id, dumps(due.payload), now),
    )


def bring_sends_forward(db: sqlite3.Connection, run_id: str, now: int) -> int:
    """``Store.bring_sends_forward``: the run's later DISPATCH rows nobody holds, due now."""
    cursor = db.execute(
        "UPDATE due_work SET due_at = ? WHERE run_id = ? AND kind = 'dispatch' "
        "AND due_at > ? AND (lease_until IS NULL OR lease_until < ?)",
        (now, run_id, now, now),
    )
    return cursor.rowcount
