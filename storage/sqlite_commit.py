"""The write units of ``Commit``: one atomic change of runs, messages, due work and events.

Every function here is synchronous and runs inside the caller's savepoint
(``storage.sqlite_batch``): raising anywhere undoes everything the unit wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from engine.errors import Conflict, NotFound, StaleRun
from engine.models import MessageStatus, NewEvent, Run, StatusReport, status_can_advance
from storage.changes import (
    Commit,
    CommitResult,
    ContactChange,
    MessageChange,
    NewMessage,
    NewRun,
    RunChange,
)
from storage.columns import RUN_COLUMNS
from storage.sqlite_codec import (
    dumps,
    from_iso,
    from_us,
    iso,
    loads,
    run_from_row,
    to_us,
    to_us_or_none,
)
from storage.sqlite_contacts import merge_context
from storage.sqlite_due import cancel_due, complete, insert_due
from storage.sqlite_outbound import check_guard
from storage.sqlite_triggers import record_firing

# Statuses that mean the message left for the contact (storage.sqlite_outbound counts them).
LEFT_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
OPEN_STATUSES_SQL = "('active', 'waiting')"


def apply_commit(db: sqlite3.Connection, commit: Commit) -> CommitResult:
    """Write ``commit`` or raise (``StaleFence``, ``StaleRun``, ``Conflict``, ``NotFound``)."""
    now = to_us(commit.now)
    if commit.guard is not None:
        check_guard(db, commit.guard)
    if commit.new_run is not None:
        existing = run_by_key(db, commit.new_run.idempotency_key)
        if existing is not None:
            return CommitResult(run=existing, created=False)
    if commit.done is not None:
        # First, as the fence check: a stale worker writes nothing. The rest of the
        # unit never touches this row (cancel_due keeps it), so doing it first is
        # the same as doing it last.
        complete(db, commit.done)
    if commit.firing is not None:
        record_firing(db, commit.firing, now)
    run: Run | None = None
    created = False
    if commit.new_run is not None:
        run, created = insert_run(db, commit.new_run, now), True
    if commit.run is not None:
        run = change_run(db, commit.run, now)
    if commit.contact is not None:
        change_contact(db, commit.contact, now)
    for new in commit.new_messages:
        insert_message(db, new, now)
    applied: dict[str, MessageStatus] = {}
    for change in commit.messages:
        moved = change_message(db, change, now)
        if moved is not None:
            applied[change.message_id] = moved
    own = commit.done.work.id if commit.done is not None else None
    if commit.cancel_all_due_of_run is not None:
        cancel_due(db, commit.cancel_all_due_of_run, now, keep=own, timers_only=False)
    if (
        commit.cancel_timers_of_run is not None
        and commit.cancel_timers_of_run != commit.cancel_all_due_of_run
    ):  # cancelling all of a run's rows already dropped its timers
        cancel_due(db, commit.cancel_timers_of_run, now, keep=own, timers_only=True)
    for due in commit.new_due:
        insert_due(db, due, now)
    if commit.events:
        insert_events(db, commit.events)
    return CommitResult(run=run, created=created, status_applied=applied)


# ---------------------------------------------------------------- runs


def run_by_key(db: sqlite3.Connection, key: str) -> Run | None:
    row = db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE idempotency_key = ?", (key,)).fetchone()
    return None if row is None else run_from_row(row)


def insert_run(db: sqlite3.Connection, new: NewRun, now: int) -> Run:
    if new.exclusive:
        other = db.execute(
            "SELECT id FROM runs WHERE contact_id = ? AND flow = ? "
            f"AND status IN {OPEN_STATUSES_SQL} LIMIT 1",
            (new.contact_id, new.flow),
        ).fetchone()
        if other is not None:
            raise Conflict(
                f"contact {new.contact_id} already has an open run ({other[0]}) "
                f"of flow {new.flow!r}"
            )
    row = db.execute(
        "INSERT INTO runs (id, flow, flow_version, contact_id, step, status, vars, "
        "idempotency_key, version, step_seq, exclusive, created_at, updated_at) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING {RUN_COLUMNS}",
        (
            new.id,
            new.flow,
            new.flow_version,
            new.contact_id,
            new.step,
            str(new.status),
            dumps(new.vars),
            new.idempotency_key,
            new.step_seq,
            int(new.exclusive),
            now,
            now,
        ),
    ).fetchall()[0]
    return run_from_row(row)


def change_run(db: sqlite3.Connection, change: RunChange, now: int) -> Run:
    rows = db.execute(
        "UPDATE runs SET step = ?, status = ?, step_seq = ?, vars = ?, version = version + 1, "
        f"updated_at = ? WHERE id = ? AND version = ? RETURNING {RUN_COLUMNS}",
        (
            change.step,
            str(change.status),
            change.step_seq,
            dumps(change.vars),
            now,
            change.run_id,
            change.expected_version,
        ),
    ).fetchall()
    if not rows:
        raise StaleRun(
            f"run {change.run_id} is no longer at version {change.expected_version}; "
            "re-read it and retry"
        )
    return run_from_row(rows[0])


# ---------------------------------------------------------------- contacts


def change_contact(db: sqlite3.Connection, change: ContactChange, now: int) -> None:
    sets = ["updated_at = ?"]
    params: list[Any] = [now]
    if change.context_patch:
        # Only a merge needs the stored context; otherwise the UPDATE's row count
        # tells whether the contact exists.
        row = db.execute(
            "SELECT context FROM contacts WHERE id = ?", (change.contact_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"contact {change.contact_id} does not exist")
        sets.append("context = ?")
        params.append(dumps(merge_context(loads(row[0]), change.context_patch)))
    if change.last_outbound_at is not None:
        sets.append("last_outbound_at = max(coalesce(last_outbound_at, ?), ?)")
        at = to_us(change.last_outbound_at)
        params += [at, at]
    if change.attendance is not None:
        since = to_us(change.attendance.since)
        sets.append(
            "attendant = ?, attendance_since = ?, attendance_until = ?, attendance_changed_at = ?"
        )
        params += [
            change.attendance.attendant,
            since,
            to_us_or_none(change.attendance.until),
            since,
        ]
    cursor = db.execute(
        f"UPDATE contacts SET {', '.join(sets)} WHERE id = ?", (*params, change.contact_id)
    )
    if cursor.rowcount == 0:
        raise NotFound(f"contact {change.contact_id} does not exist")


# ---------------------------------------------------------------- messages


def insert_message(db: sqlite3.Connection, new: NewMessage, now: int) -> None:
    db.execute(
        "INSERT INTO messages (id, run_id, contact_id, flow, step, step_seq, provider, channel, "
        "idempotency_key, status, payload, status_at, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
        (
            new.id,
            new.run_id,
            new.contact_id,
            new.flow,
            new.step,
            new.step_seq,
            new.provider,
            new.channel,
            new.idempotency_key,
            dumps(new.payload),
            dumps({MessageStatus.QUEUED.value: iso(from_us(now))}),
            now,
            now,
        ),
    )


def change_message(db: sqlite3.Connection, change: MessageChange, now: int) -> MessageStatus | None:
    """Apply one change; return the status it moved to (None when the status stayed)."""
    row = db.execute(
        "SELECT status, provider, provider_message_id, idempotency_key, status_at, left_at "
        "FROM messages WHERE id = ?",
        (change.message_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"message {change.message_id} does not exist")
    stored = MessageStatus(row[0])
    if change.expected_status is not None and stored != change.expected_status:
        raise StaleRun(
            f"message {change.message_id} is {stored}, not {change.expected_status}; "
            "re-read it and retry"
        )
    sets = ["updated_at = ?"]
    params: list[Any] = [now]
    moved: MessageStatus | None = None
    new = change.status
    if new is not None and (new != stored if change.force else status_can_advance(stored, new)):
        moved = new
        status_at = loads(row[4])
        status_at[new.value] = iso(change.at)
        sets += ["status = ?", "status_at = ?"]
        params += [new.value, dumps(status_at)]
        if new in LEFT_STATUSES and row[5] is None:
            sets.append("left_at = ?")
            params.append(to_us(change.at))
    if change.payload is not None:
        sets.append("payload = ?")
        params.append(dumps(change.payload))
    if change.provider_message_id is not None:
        sets.append("provider_message_id = ?")
        params.append(change.provider_message_id)
    if change.attempts is not None:
        sets.append("attempts = ?")
        params.append(change.attempts)
    if change.sets("next_attempt_at"):
        sets.append("next_attempt_at = ?")
        params.append(to_us_or_none(change.next_attempt_at))
    if change.sets("last_error"):
        sets.append("last_error = ?")
        params.append(change.last_error)
    db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", (*params, change.message_id))
    if change.provider_message_id is not None and change.provider_message_id != row[2]:
        release_pending(
            db,
            message_id=change.message_id,
            provider=row[1],
            provider_message_id=change.provider_message_id,
            idempotency_key=row[3],
            now=now,
        )
    return moved


# ---------------------------------------------------------------- events


_INSERT_EVENT = (
    "INSERT INTO events (contact_id, run_id, message_id, kind, at, data, dedupe_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


def _event_params(event: NewEvent) -> tuple[Any, ...]:
    return (
        event.contact_id,
        event.run_id,
        event.message_id,
        event.kind,
        to_us(event.at),
        dumps(event.data),
        event.dedupe_key,
    )


def insert_event(db: sqlite3.Connection, event: NewEvent) -> bool:
    """Append ``event``; False when its dedupe key was already seen (nothing written)."""
    cursor = db.execute(_INSERT_EVENT, _event_params(event))
    return cursor.rowcount == 1


def insert_events(db: sqlite3.Connection, events: Sequence[NewEvent]) -> None:
    """Append ``events`` in order with one prepared statement (duplicates are skipped)."""
    db.executemany(_INSERT_EVENT, [_event_params(event) for event in events])


def open_run_ids(db: sqlite3.Connection, contact_id: str) -> list[str]:
    rows = db.execute(
        f"SELECT id FROM runs WHERE contact_id = ? AND status IN {OPEN_STATUSES_SQL} "
        "ORDER BY created_at, id",
        (contact_id,),
    )
    return [row[0] for row in rows]


# ---------------------------------------------------------------- status reports


def report_payload(report: StatusReport) -> dict[str, Any]:
    """A status report as stored: the STATUS due-work payload and the event data."""
    return {
        "status": report.status.value,
        "at": iso(report.at),
        "error_code": report.error_code,
        "error_message": report.error_message,
        "provider": report.provider,
        "provider_message_id": report.provider_message_id,
        "idempotency_key": report.idempotency_key,
    }


def queue_status(
    db: sqlite3.Connection,
    *,
    message: tuple[str, str, str],
    report: dict[str, Any],
    dedupe_key: str | None,
    now: int,
) -> bool:
    """Log ``status.<status>`` and queue STATUS work for ``message`` (id, run, contact).

    False when the dedupe key was already seen (nothing written). The row has no
    run id on purpose: cancelling a run must not drop what a provider says about
    a message that already left.
    """
    if not log_status(db, message=message, report=report, dedupe_key=dedupe_key):
        return False
    queue_status_work(db, message_id=message[0], report=report, now=now)
    return True


def queue_status_work(
    db: sqlite3.Connection, *, message_id: str, report: dict[str, Any], now: int
) -> None:
    """STATUS work due ``now``: the dispatcher applies ``report`` to the message."""
    db.execute(
        "INSERT INTO due_work (kind, due_at, message_id, payload, created_at) "
        "VALUES ('status', ?, ?, ?, ?)",
        (now, message_id, dumps(report), now),
    )


def log_status(
    db: sqlite3.Connection,
    *,
    message: tuple[str, str, str],
    report: dict[str, Any],
    dedupe_key: str | None,
) -> bool:
    """Log ``status.<status>`` for ``message`` (id, run, contact); False for a seen key."""
    message_id, run_id, contact_id = message
    event = NewEvent(
        kind=f"status.{report['status']}",
        at=from_iso(report["at"]),
        contact_id=contact_id,
        run_id=run_id,
        message_id=message_id,
        data={k: v for k, v in report.items() if v is not None and k != "at"},
        dedupe_key=dedupe_key,
    )
    return insert_event(db, event)


def release_pending(
    db: sqlite3.Connection,
    *,
    message_id: str,
    provider: str,
    provider_message_id: str,
    idempotency_key: str,
    now: int,
) -> None:
    """Turn the reports kept for this message into STATUS work (its id just arrived)."""
    rows = db.execute(
        "SELECT id, report, dedupe_key FROM pending_statuses "
        "WHERE (provider = ? AND provider_message_id = ?) OR idempotency_key = ? ORDER BY id",
        (provider, provider_message_id, idempotency_key),
    ).fetchall()
    if not rows:
        return
    owner = db.execute("SELECT run_id, contact_id FROM messages WHERE id = ?", (message_id,))
    run_id, contact_id = owner.fetchone()
    for pending_id, report, dedupe_key in rows:
        queue_status(
            db,
            message=(message_id, run_id, contact_id),
            report=loads(report),
            dedupe_key=dedupe_key,
            now=now,
        )
        db.execute("DELETE FROM pending_statuses WHERE id = ?", (pending_id,))
