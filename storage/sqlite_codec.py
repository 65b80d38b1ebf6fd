"""Row <-> record mapping for the SQLite store.

Timestamps are INTEGER microseconds since the Unix epoch (UTC): an aware datetime
round-trips exactly and comes back in UTC; a naive datetime is refused (it hides a
bug). JSON columns are compact UTF-8 text; datetimes inside JSON become ISO-8601
strings with an explicit ``+00:00`` offset, other non-JSON values their ``str()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from engine.models import (
    Attendance,
    Contact,
    DueKind,
    DueWork,
    Event,
    Message,
    MessageStatus,
    Run,
    RunStatus,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} has no timezone; disparo stores UTC")
    return (dt - _EPOCH) // _MICROSECOND


def to_us_or_none(dt: datetime | None) -> int | None:
    return None if dt is None else to_us(dt)


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def from_us_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def iso(dt: datetime) -> str:
    """ISO-8601 in UTC with an explicit offset (the JSON form of a datetime)."""
    to_us(dt)  # refuses naive datetimes
    return dt.astimezone(UTC).isoformat()


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


# One encoder for every call: json.dumps builds a new one per call when given options.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default)


def dumps(value: Any) -> str:
    if not value and isinstance(value, Mapping):
        return "{}"
    return _ENCODER.encode(value)


def loads(text: str) -> Any:
    return json.loads(text)


# ---------------------------------------------------------------- rows
# The SELECTs use the column lists of ``storage.columns``, in their order.


def contact_from_row(row: tuple[Any, ...]) -> Contact:
    (
        id_,
        phone,
        email,
        name,
        tags,
        context,
        timezone,
        last_inbound_at,
        last_interaction_at,
        last_outbound_at,
        attendant,
        attendance_since,
        attendance_until,
        opted_out_at,
        created_at,
        updated_at,
    ) = row
    attendance = None
    if attendance_since is not None:
        attendance = Attendance(
            attendant=attendant,
            since=from_us(attendance_since),
            until=from_us_or_none(attendance_until),
        )
    return Contact(
        id=id_,
        phone=phone,
        email=email,
        name=name,
        tags=tuple(loads(tags)),
        context=loads(context),
        timezone=timezone,
        last_inbound_at=from_us_or_none(last_inbound_at),
        last_interaction_at=from_us_or_none(last_interaction_at),
        last_outbound_at=from_us_or_none(last_outbound_at),
        attendance=attendance,
        opted_out_at=from_us_or_none(opted_out_at),
        created_at=from_us(created_at),
        updated_at=from_us(updated_at),
    )


def run_from_row(row: tuple[Any, ...]) -> Run:
    (
        id_,
        flow,
        flow_version,
        contact_id,
        step,
        status,
        vars_,
        idempotency_key,
        version,
        step_seq,
        created_at,
        updated_at,
    ) = row
    return Run(
        id=id_,
        flow=flow,
        flow_version=flow_version,
        contact_id=contact_id,
        step=step,
        status=RunStatus(status),
        vars=loads(vars_),
        idempotency_key=idempotency_key,
        version=version,
        step_seq=step_seq,
        created_at=from_us(created_at),
        updated_at=from_us(updated_at),
    )


def status_at_from_json(text: str) -> dict[str, datetime]:
    return {status: from_iso(at) for status, at in loads(text).items()}


def message_from_row(row: tuple[Any, ...]) -> Message:
    (
        id_,
        run_id,
        contact_id,
        flow,
        step,
        step_seq,
        provider,
        channel,
        idempotency_key,
        status,
        payload,
        provider_message_id,
        attempts,
        next_attempt_at,
        last_error,
        status_at,
        created_at,
        updated_at,
    ) = row
    return Message(
        id=id_,
        run_id=run_id,
        contact_id=contact_id,
        flow=flow,
        step=step,
        step_seq=step_seq,
        provider=provider,
        channel=channel,
        idempotency_key=idempotency_key,
        status=MessageStatus(status),
        payload=loads(payload),
        provider_message_id=provider_message_id,
        attempts=attempts,
        next_attempt_at=from_us_or_none(next_attempt_at),
        last_error=last_error,
        status_at=status_at_from_json(status_at),
        created_at=from_us(created_at),
        updated_at=from_us(updated_at),
    )


def event_from_row(row: tuple[Any, ...]) -> Event:
    id_, contact_id, run_id, message_id, kind, at, data, dedupe_key = row
    return Event(
        id=id_,
        contact_id=contact_id,
        run_id=run_id,
        message_id=message_id,
        kind=kind,
        at=from_us(at),
        data=loads(data),
        dedupe_key=dedupe_key,
    )


def due_from_row(row: tuple[Any, ...]) -> DueWork:
    id_, kind, due_at, run_id, message_id, payload, owner, lease_until, fence, attempts = row
    return DueWork(
        id=id_,
        kind=DueKind(kind),
        due_at=from_us(due_at),
        run_id=run_id,
        message_id=message_id,
        payload=loads(payload),
        lease_owner=owner,
        lease_until=from_us_or_none(lease_until),
        fence=fence,
        attempts=attempts,
    )
