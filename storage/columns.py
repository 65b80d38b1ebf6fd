"""The column lists both SQL stores select, in the order their row decoders unpack.

SQLite and PostgreSQL name their columns alike, so one list per table keeps every
SELECT and its tuple unpacking in step on both backends; the sweep's light pages
(``window_columns``) are decoded here too, for both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from engine.models import Contact

CONTACT_COLUMNS = (
    "id, phone, email, name, tags, context, timezone, last_inbound_at, last_interaction_at, "
    "last_outbound_at, attendant, attendance_since, attendance_until, opted_out_at, "
    "created_at, updated_at"
)
RUN_COLUMNS = (
    "id, flow, flow_version, contact_id, step, status, vars, idempotency_key, version, "
    "step_seq, created_at, updated_at"
)
MESSAGE_COLUMNS = (
    "id, run_id, contact_id, flow, step, step_seq, provider, channel, idempotency_key, "
    "status, payload, provider_message_id, attempts, next_attempt_at, last_error, "
    "status_at, created_at, updated_at"
)
EVENT_COLUMNS = "id, contact_id, run_id, message_id, kind, at, data, dedupe_key"
DUE_COLUMNS = (
    "id, kind, due_at, run_id, message_id, payload, lease_owner, lease_until, fence, attempts"
)
# What a sweep reads of a contact when its trigger has an expression (``window_page``
# with ``profile``): what an expression sees, nothing else.
PROFILE_COLUMNS = "id, phone, email, name, tags, context, timezone"


def window_columns(field: str, *, profile: bool) -> str:
    """What ``window_page`` selects: the id and ``field``, or with ``profile`` ``field``
    and what an expression reads (the row decoders unpack them in this order)."""
    return f"{field}, {PROFILE_COLUMNS}" if profile else f"id, {field}"


def stamped_ids(
    rows: Iterable[Any], stamp: Callable[[Any], datetime]
) -> list[tuple[Contact, datetime]]:
    """(id, ``field``) rows of ``window_columns`` as (contact with its id alone, its
    timestamp); ``stamp`` turns the stored timestamp into a datetime."""
    return [(Contact(id=row[0]), stamp(row[1])) for row in rows]


def stamped_profiles(
    rows: Iterable[Any], stamp: Callable[[Any], datetime]
) -> list[tuple[Contact, datetime]]:
    """(``field``, ``PROFILE_COLUMNS``...) rows of ``window_columns`` with ``profile`` as
    (contact with what expressions read, its timestamp). Tags and context come as
    JSON text (SQLite) or already decoded."""
    return [
        (
            Contact(
                id=id_,
                phone=phone,
                email=email,
                name=name,
                tags=tuple(_document(tags)),
                context=_document(context),
                timezone=timezone,
            ),
            stamp(at),
        )
        for at, id_, phone, email, name, tags, context, timezone in rows
    ]


def _document(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value == "{}":  # most contacts: no JSON parse
        return {}
    return () if value == "[]" else json.loads(value)
