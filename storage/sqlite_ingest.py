"""Write units for what comes in: provider status reports and contact events.

Both run as one write unit per batch of reports/events, so a webhook is answered
2xx only once everything it carried is durable. Each item gets its own outcome;
an unknown message or a duplicate never affects the other items.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from engine.models import (
    ContactEvent,
    MessageStatus,
    NewEvent,
    StatusReport,
    status_can_advance,
)
from storage.base import IngestOutcome, RunIgnores, StatusTarget
from storage.changes import reported_change
from storage.columns import RUN_COLUMNS
from storage.sqlite_codec import dumps, iso, run_from_row, to_us, to_us_or_none
from storage.sqlite_commit import (
    change_message,
    insert_event,
    insert_events,
    log_status,
    open_run_ids,
    queue_status,
    queue_status_work,
    report_payload,
)


def check_reports(reports: Sequence[StatusReport]) -> None:
    """Refuse reports no message could ever match (an adapter bug), before writing."""
    for index, report in enumerate(reports):
        if report.provider_message_id is None and report.idempotency_key is None:
            raise ValueError(
                f"status report {index} of {report.provider!r} has neither a provider "
                "message id nor an idempotency key"
            )
        to_us(report.at)


# What a report is matched to: the message's (id, run id, contact id), and with
# ``run_ignores`` also its status, step entry and provider, then its run.
_MESSAGE = "SELECT id, run_id, contact_id FROM messages m"
_TARGET = (
    "SELECT m.id, m.run_id, m.contact_id, m.status, m.step_seq, m.provider, "
    + ", ".join(f"r.{column.strip()}" for column in RUN_COLUMNS.split(","))
    + " FROM messages m JOIN runs r ON r.id = m.run_id"
)


def ingest_status_reports(
    db: sqlite3.Connection,
    reports: Sequence[StatusReport],
    now: int,
    run_ignores: RunIgnores | None = None,
) -> list[IngestOutcome]:
    return [_ingest_status(db, report, now, run_ignores) for report in reports]


def _ingest_status(
    db: sqlite3.Connection, report: StatusReport, now: int, run_ignores: RunIgnores | None
) -> IngestOutcome:
    key = report.dedupe_key
    if key is not None and _seen(db, key):
        return "duplicate"
    payload = report_payload(report)
    row = _match(db, report, _MESSAGE if run_ignores is None else _TARGET)
    if row is not None:
        if run_ignores is not None:
            applied = _apply_if_ignored(db, row, report, payload, now, run_ignores)
            if applied is not None:
                return applied
        message = (row[0], row[1], row[2])
        queued = queue_status(db, message=message, report=payload, dedupe_key=key, now=now)
        return "queued" if queued else "duplicate"
    cursor = db.execute(
        "INSERT INTO pending_statuses (provider, provider_message_id, idempotency_key, report, "
        "dedupe_key, received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            report.provider,
            report.provider_message_id,
            report.idempotency_key,
            dumps(payload),
            key,
            now,
        ),
    )
    return "pending" if cursor.rowcount == 1 else "duplicate"


def _apply_if_ignored(
    db: sqlite3.Connection,
    row: tuple[Any, ...],
    report: StatusReport,
    payload: dict[str, Any],
    now: int,
    run_ignores: RunIgnores,
) -> IngestOutcome | None:
    """Apply the report to its message at once if ``run_ignores`` says the run ignores it.

    ``row``: what ``_TARGET`` selects. None: queue it as usual (the status cannot
    advance the message's, so the dispatcher decides as it always did).
    """
    if not status_can_advance(stored := MessageStatus(row[3]), report.status):
        return None
    target = StatusTarget(
        message_id=row[0],
        message_status=stored,
        message_step_seq=row[4],
        provider=row[5],
        status=report.status,
        run=run_from_row(row[6:]),
    )
    # The event first: a report seen before (same dedupe key) is a duplicate, not
    # something ``run_ignores`` was told would be applied.
    message = (row[0], row[1], row[2])
    if not log_status(db, message=message, report=payload, dedupe_key=report.dedupe_key):
        return "duplicate"
    ignored = run_ignores(target)
    if ignored is None:
        queue_status_work(db, message_id=target.message_id, report=payload, now=now)
        return "queued"
    change = reported_change(
        target.message_id,
        stored=stored,
        new=report.status,
        at=report.at,
        error=report.error_message or report.error_code,
    )
    change_message(db, change, now)
    if ignored:
        insert_events(db, ignored)
    return "applied"


def _seen(db: sqlite3.Connection, dedupe_key: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM events WHERE dedupe_key = ?1 "
        "UNION ALL SELECT 1 FROM pending_statuses WHERE dedupe_key = ?1 LIMIT 1",
        (dedupe_key,),
    ).fetchone()
    return row is not None


def _match(db: sqlite3.Connection, report: StatusReport, select: str) -> tuple[Any, ...] | None:
    """``select``'s row for the reported message, by provider id, then by key.

    The idempotency key is globally unique, so it matches whatever the provider.
    """
    row: tuple[Any, ...] | None = None
    if report.provider_message_id is not None:
        row = db.execute(
            f"{select} WHERE m.provider = ? AND m.provider_message_id = ?",
            (report.provider, report.provider_message_id),
        ).fetchone()
    if row is None and report.idempotency_key is not None:
        row = db.execute(
            f"{select} WHERE m.idempotency_key = ?", (report.idempotency_key,)
        ).fetchone()
    return row


# ---------------------------------------------------------------- contact events

# How each event type moves the contact's facts. Timestamps never move back: an
# older event arriving late does not undo a newer one.
_FACTS: dict[str, str] = {
    "reply": "last_inbound_at = max(coalesce(last_inbound_at, :at), :at), "
    "last_interaction_at = max(coalesce(last_interaction_at, :at), :at)",
    "interaction": "last_interaction_at = max(coalesce(last_interaction_at, :at), :at)",
    "attendance_started": "attendant = :attendant, attendance_since = :at, "
    "attendance_until = :until, attendance_changed_at = :at",
    "attendance_ended": "attendant = NULL, attendance_since = NULL, attendance_until = NULL, "
    "attendance_changed_at = :at",
    "opt_out": "opted_out_at = coalesce(opted_out_at, :at), opt_changed_at = :at",
    "opt_in": "opted_out_at = NULL, opt_changed_at = :at",
}
_FACTS["button"] = _FACTS["choice"] = _FACTS["reply"]
_WROTE = frozenset({"reply", "button", "choice"})


def facts_of(event: ContactEvent) -> str:
    """Which facts ``event`` moves: those of its type, but a message the contact wrote
    on sms or email is an interaction only. The 24 h window (``last_inbound_at``) is
    WhatsApp's, and only a WhatsApp message opens it; None is a source that does not
    say, taken as WhatsApp."""
    if event.type in _WROTE and event.channel not in (None, "whatsapp"):
        return "interaction"
    return event.type


_GUARD: dict[str, str] = {
    "attendance_started": " AND (attendance_changed_at IS NULL OR attendance_changed_at <= :at)",
    "opt_out": " AND (opt_changed_at IS NULL OR opt_changed_at <= :at)",
}
_GUARD["attendance_ended"] = _GUARD["attendance_started"]
_GUARD["opt_in"] = _GUARD["opt_out"]


def check_events(events: Sequence[ContactEvent]) -> None:
    """Refuse events the engine did not resolve to a contact, before writing."""
    for index, event in enumerate(events):
        if event.contact_id is None:
            raise ValueError(
                f"contact event {index} ({event.type}) has no contact_id; "
                "resolve the phone to a contact first"
            )
        if event.type not in _FACTS:
            raise ValueError(f"contact event {index} has an unknown type {event.type!r}")
        to_us(event.at)
        to_us_or_none(event.until)


def inbound_fields(event: ContactEvent) -> dict[str, Any]:
    """What a contact event carries, as the INBOUND due work's payload (both backends)."""
    return {
        "type": event.type,
        "at": iso(event.at),
        "contact_id": event.contact_id,
        "phone": event.phone,
        "text": event.text,
        "button_id": event.button_id,
        "attendant": event.attendant,
        "until": None if event.until is None else iso(event.until),
        "source": event.source,
        "dedupe_key": event.dedupe_key,
        "channel": event.channel,
        "attachment": event.attachment,
    }


def inbound_event_data(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The ``inbound.<type>`` event's data: the fields set, minus its own columns."""
    return {k: v for k, v in fields.items() if v is not None and k not in ("at", "contact_id")}


def ingest_contact_events(
    db: sqlite3.Connection, events: Sequence[ContactEvent], now: int
) -> list[IngestOutcome]:
    return [_ingest_event(db, event, now) for event in events]


def _ingest_event(db: sqlite3.Connection, event: ContactEvent, now: int) -> IngestOutcome:
    contact_id = event.contact_id
    assert contact_id is not None  # check_events ran first
    if db.execute("SELECT 1 FROM contacts WHERE id = ?", (contact_id,)).fetchone() is None:
        return "unknown_contact"
    fields = inbound_fields(event)
    logged = NewEvent(
        kind=f"inbound.{event.type}",
        at=event.at,
        contact_id=contact_id,
        data=inbound_event_data(fields),
        dedupe_key=event.dedupe_key,
    )
    if not insert_event(db, logged):
        return "duplicate"
    db.execute(
        f"UPDATE contacts SET {_FACTS[facts_of(event)]}, updated_at = :now "
        f"WHERE id = :id{_GUARD.get(event.type, '')}",
        {
            "at": to_us(event.at),
            "until": to_us_or_none(event.until),
            "attendant": event.attendant,
            "now": now,
            "id": contact_id,
        },
    )
    payload = dumps(fields)
    for run_id in open_run_ids(db, contact_id):
        db.execute(
            "INSERT INTO due_work (kind, due_at, run_id, payload, created_at) "
            "VALUES ('inbound', ?, ?, ?, ?)",
            (now, run_id, payload, now),
        )
    return "queued"
