"""Records <-> PostgreSQL rows, and the JSON write units ``disparo_apply`` takes.

Rows come two ways: asyncpg records (timestamps as aware datetimes, ``json`` columns
as text) and ``row_to_json`` objects returned by the write functions (timestamps as
ISO-8601 text, ``json`` columns already parsed). The decoders take both.

A write unit is one JSON object (``op`` plus its data). Order-sensitive blobs
(payloads, vars, contexts, event data) travel as JSON *text* inside it: the envelope
is read as ``jsonb``, which would reorder their keys; the SQL casts the text to
``json``, which keeps it as written. JSON values and datetimes inside them have the
same form as in the SQLite store (``storage.sqlite_codec``), so both backends store
identical documents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from engine.models import (
    Attendance,
    Contact,
    ContactEvent,
    ContactUpsert,
    DueKind,
    DueWork,
    Event,
    Message,
    MessageStatus,
    NewDueWork,
    Run,
    RunStatus,
    StatusReport,
)
from storage.changes import Commit, MessageChange, OutboundGuard
from storage.sqlite_codec import dumps, from_iso, iso, loads
from storage.sqlite_commit import report_payload
from storage.sqlite_ingest import facts_of, inbound_event_data, inbound_fields

# A NUL character (JSON ``\u0000``, not an escaped backslash before ``u0000``): PostgreSQL
# text and jsonb cannot hold it.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# ---------------------------------------------------------------- rows -> records


class Row(Protocol):
    """An asyncpg record or a ``row_to_json`` object: columns by name."""

    def __getitem__(self, key: str, /) -> Any: ...


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return from_iso(value)


def _at(value: Any) -> datetime:
    when = _when(value)
    assert when is not None  # NOT NULL columns
    return when


def _doc(value: Any) -> Any:
    """A ``json`` column: text from asyncpg, already parsed from ``row_to_json``."""
    return loads(value) if isinstance(value, str) else value


def contact_from_row(row: Row) -> Contact:
    attendance = None
    if row["attendance_since"] is not None:
        attendance = Attendance(
            attendant=row["attendant"],
            since=_at(row["attendance_since"]),
            until=_when(row["attendance_until"]),
        )
    return Contact(
        id=row["id"],
        phone=row["phone"],
        email=row["email"],
        name=row["name"],
        tags=tuple(_doc(row["tags"])),
        context=_doc(row["context"]),
        timezone=row["timezone"],
        last_inbound_at=_when(row["last_inbound_at"]),
        last_interaction_at=_when(row["last_interaction_at"]),
        last_outbound_at=_when(row["last_outbound_at"]),
        attendance=attendance,
        opted_out_at=_when(row["opted_out_at"]),
        created_at=_at(row["created_at"]),
        updated_at=_at(row["updated_at"]),
    )


def run_from_row(row: Row) -> Run:
    return Run(
        id=row["id"],
        flow=row["flow"],
        flow_version=row["flow_version"],
        contact_id=row["contact_id"],
        step=row["step"],
        status=RunStatus(row["status"]),
        vars=_doc(row["vars"]),
        idempotency_key=row["idempotency_key"],
        version=row["version"],
        step_seq=row["step_seq"],
        created_at=_at(row["created_at"]),
        updated_at=_at(row["updated_at"]),
    )


def message_from_row(row: Row) -> Message:
    return Message(
        id=row["id"],
        run_id=row["run_id"],
        contact_id=row["contact_id"],
        flow=row["flow"],
        step=row["step"],
        step_seq=row["step_seq"],
        provider=row["provider"],
        channel=row["channel"],
        idempotency_key=row["idempotency_key"],
        status=MessageStatus(row["status"]),
        payload=_doc(row["payload"]),
        provider_message_id=row["provider_message_id"],
        attempts=row["attempts"],
        next_attempt_at=_when(row["next_attempt_at"]),
        last_error=row["last_error"],
        status_at={status: from_iso(at) for status, at in _doc(row["status_at"]).items()},
        created_at=_at(row["created_at"]),
        updated_at=_at(row["updated_at"]),
    )


def event_from_row(row: Row) -> Event:
    return Event(
        id=row["id"],
        contact_id=row["contact_id"],
        run_id=row["run_id"],
        message_id=row["message_id"],
        kind=row["kind"],
        at=_at(row["at"]),
        data=_doc(row["data"]),
        dedupe_key=row["dedupe_key"],
    )


def due_from_row(row: Row) -> DueWork:
    return DueWork(
        id=row["id"],
        kind=DueKind(row["kind"]),
        due_at=_at(row["due_at"]),
        run_id=row["run_id"],
        message_id=row["message_id"],
        payload=_doc(row["payload"]),
        lease_owner=row["lease_owner"],
        lease_until=_when(row["lease_until"]),
        fence=row["fence"],
        attempts=row["attempts"],
    )


# ---------------------------------------------------------------- records -> write units


def encode_unit(unit: Mapping[str, Any]) -> str:
    """The unit as JSON text; ``ValueError`` when it holds a NUL character."""
    text = dumps(unit)
    if "\\u0000" in text and _NUL.search(text):
        raise ValueError(
            f"the {unit['op']} holds a NUL character (\\u0000), which PostgreSQL cannot "
            "store; remove it from the text"
        )
    return text


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _message_change(change: MessageChange) -> dict[str, Any]:
    item: dict[str, Any] = {"message_id": change.message_id, "at": iso(change.at)}
    if change.status is not None:
        item["status"] = change.status.value
    if change.force:
        item["force"] = True
    if change.expected_status is not None:
        item["expected_status"] = change.expected_status.value
    if change.payload is not None:
        item["payload"] = dumps(change.payload)
    _set(item, "provider_message_id", change.provider_message_id)
    _set(item, "attempts", change.attempts)
    if change.sets("next_attempt_at"):
        at = change.next_attempt_at
        item["next_attempt_at"] = None if at is None else iso(at)
    if change.sets("last_error"):
        item["last_error"] = change.last_error
    return item


def guard_unit(guard: OutboundGuard) -> dict[str, Any]:
    unit: dict[str, Any] = {
        "contact_id": guard.contact_id,
        "message_id": guard.message_id,
        "run_id": guard.run_id,
    }
    if guard.max_per_day is not None and guard.day_start is not None:
        unit["max_per_day"] = guard.max_per_day
        unit["day_start"] = iso(guard.day_start)
    if guard.recent_since is not None:
        unit["recent_since"] = iso(guard.recent_since)
    return unit


def commit_unit(commit: Commit) -> dict[str, Any]:
    unit: dict[str, Any] = {"op": "commit", "now": iso(commit.now)}
    if commit.done is not None:
        done = commit.done
        unit["done"] = {"id": done.work.id, "fence": done.work.fence}
        if done.retry_at is not None:
            unit["done"]["retry_at"] = iso(done.retry_at)
        if done.payload is not None:
            unit["done"]["payload"] = dumps(done.payload)
    if commit.guard is not None:
        unit["guard"] = guard_unit(commit.guard)
    if commit.firing is not None:
        unit["firing"] = {
            "flow": commit.firing.flow,
            "trigger": commit.firing.trigger,
            "fire_time": iso(commit.firing.fire_time),
        }
    if commit.new_run is not None:
        new = commit.new_run
        unit["new_run"] = {
            "id": new.id,
            "flow": new.flow,
            "flow_version": new.flow_version,
            "contact_id": new.contact_id,
            "step": new.step,
            "status": str(new.status),
            "idempotency_key": new.idempotency_key,
            "vars": dumps(new.vars),
            "step_seq": new.step_seq,
            "exclusive": new.exclusive,
        }
    if commit.run is not None:
        change = commit.run
        unit["run"] = {
            "run_id": change.run_id,
            "expected_version": change.expected_version,
            "step": change.step,
            "status": str(change.status),
            "step_seq": change.step_seq,
            "vars": dumps(change.vars),
        }
    if commit.contact is not None:
        facts = commit.contact
        contact: dict[str, Any] = {"contact_id": facts.contact_id}
        if facts.context_patch:
            contact["context_patch"] = dumps(facts.context_patch)
        if facts.last_outbound_at is not None:
            contact["last_outbound_at"] = iso(facts.last_outbound_at)
        if facts.attendance is not None:
            until = facts.attendance.until
            contact["attendance"] = {
                "attendant": facts.attendance.attendant,
                "since": iso(facts.attendance.since),
                "until": None if until is None else iso(until),
            }
        unit["contact"] = contact
    if commit.new_messages:
        unit["new_messages"] = [
            {
                "id": new.id,
                "run_id": new.run_id,
                "contact_id": new.contact_id,
                "flow": new.flow,
                "step": new.step,
                "step_seq": new.step_seq,
                "provider": new.provider,
                "channel": new.channel,
                "idempotency_key": new.idempotency_key,
                "payload": dumps(new.payload),
            }
            for new in commit.new_messages
        ]
    if commit.messages:
        unit["messages"] = [_message_change(change) for change in commit.messages]
    _set(unit, "cancel_all_due_of_run", commit.cancel_all_due_of_run)
    _set(unit, "cancel_timers_of_run", commit.cancel_timers_of_run)
    if commit.new_due:
        unit["new_due"] = [
            {
                "kind": due.kind.value,
                "due_at": iso(due.due_at),
                "run_id": due.run_id,
                "message_id": due.message_id,
                "payload": dumps(due.payload),
            }
            for due in commit.new_due
        ]
    if commit.events:
        unit["events"] = [
            {
                "kind": event.kind,
                "at": iso(event.at),
                "contact_id": event.contact_id,
                "run_id": event.run_id,
                "message_id": event.message_id,
                "data": dumps(event.data),
                "dedupe_key": event.dedupe_key,
            }
            for event in commit.events
        ]
    return unit


def schedule_unit(wanted: Mapping[str, NewDueWork], now: datetime) -> dict[str, Any]:
    # In key order, whatever the catalog's: an insert of a key another engine is
    # inserting waits for it, so two engines scheduling at once must insert the keys
    # they share in one order (or each would wait for the other's next key).
    rows = [
        {
            "key": key,
            "kind": due.kind.value,
            "due_at": iso(due.due_at),
            "run_id": due.run_id,
            "message_id": due.message_id,
            "payload": dumps(due.payload),
        }
        for key, due in sorted(wanted.items(), key=lambda item: item[0])
    ]
    return {"op": "schedule_triggers", "now": iso(now), "wanted": rows}


def upsert_unit(upsert: ContactUpsert, now: datetime) -> dict[str, Any]:
    contact: dict[str, Any] = {"id": upsert.id, "replace_context": upsert.replace_context}
    _set(contact, "phone", upsert.phone)
    _set(contact, "email", upsert.email)
    _set(contact, "name", upsert.name)
    _set(contact, "timezone", upsert.timezone)
    if upsert.tags is not None:
        contact["tags"] = dumps(list(upsert.tags))
    if upsert.context is not None:
        contact["context"] = dumps(dict(upsert.context))
    return {"op": "upsert_contact", "now": iso(now), "contact": contact}


def status_reports_unit(reports: Sequence[StatusReport], now: datetime) -> dict[str, Any]:
    items = []
    for report in reports:
        payload = report_payload(report)
        items.append(
            {
                "provider": report.provider,
                "provider_message_id": report.provider_message_id,
                "idempotency_key": report.idempotency_key,
                "dedupe_key": report.dedupe_key,
                "report": dumps(payload),
            }
        )
    return {"op": "ingest_statuses", "now": iso(now), "reports": items}


def contact_events_unit(events: Sequence[ContactEvent], now: datetime) -> dict[str, Any]:
    items = []
    for event in events:
        fields = inbound_fields(event)
        data = inbound_event_data(fields)
        items.append(
            {
                "type": event.type,
                "facts": facts_of(event),
                "contact_id": event.contact_id,
                "at": fields["at"],
                "until": fields["until"],
                "attendant": event.attendant,
                "dedupe_key": event.dedupe_key,
                "data": dumps(data),
                "payload": dumps(fields),
            }
        )
    return {"op": "ingest_events", "now": iso(now), "events": items}
