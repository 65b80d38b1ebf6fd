"""JSON views of records for the API and the CLI (datetimes as ISO-8601 UTC)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.models import Contact, Event, Message, Run

# The bound of the store's event queries when a view shows every event of a run or of
# a contact (GET /v1/runs/{id}, the export): far more than retention leaves of either.
ALL_EVENTS = 1_000_000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def event_view(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "at": _iso(event.at),
        "run_id": event.run_id,
        "message_id": event.message_id,
        "data": _json(event.data),
    }


def message_view(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "run_id": message.run_id,
        "contact_id": message.contact_id,
        "flow": message.flow,
        "step": message.step,
        "provider": message.provider,
        "channel": message.channel,
        "status": str(message.status),
        "status_at": _json(message.status_at),
        "provider_message_id": message.provider_message_id,
        "idempotency_key": message.idempotency_key,
        "attempts": message.attempts,
        "next_attempt_at": _iso(message.next_attempt_at),
        "last_error": message.last_error,
        "payload": _json(message.payload),
        "created_at": _iso(message.created_at),
    }


def run_summary(run: Run) -> dict[str, Any]:
    """A run without its messages and history (``GET /v1/contacts/{id}/runs``)."""
    return {
        "id": run.id,
        "flow": run.flow,
        "version": run.flow_version,
        "step": run.step,
        "status": str(run.status),
        "idempotency_key": run.idempotency_key,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
    }


def run_view(run: Run, events: Sequence[Event], messages: Sequence[Message]) -> dict[str, Any]:
    return {
        **run_summary(run),
        "contact_id": run.contact_id,
        "vars": _json(run.vars),
        "messages": [message_view(m) for m in messages],
        "history": [event_view(e) for e in reversed(events)],
    }


def contact_view(contact: Contact) -> dict[str, Any]:
    attendance = contact.attendance
    return {
        "id": contact.id,
        "phone": contact.phone,
        "email": contact.email,
        "name": contact.name,
        "tags": list(contact.tags),
        "context": _json(contact.context),
        "timezone": contact.timezone,
        "last_inbound_at": _iso(contact.last_inbound_at),
        "last_interaction_at": _iso(contact.last_interaction_at),
        "last_outbound_at": _iso(contact.last_outbound_at),
        "attendance": None
        if attendance is None
        else {
            "attendant": attendance.attendant,
            "since": _iso(attendance.since),
            "until": _iso(attendance.until),
        },
        "opted_out_at": _iso(contact.opted_out_at),
    }
