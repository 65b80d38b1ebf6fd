"""The Altu/Zenvia outbound status webhook -> ``StatusReport`` values.

The vendor document only says that ``externalId`` "is returned in the send statuses
of your status webhook"; it shows no body. This parser reads the field names of the
documented send answer (``status``, ``external_id``, ``message_id``, ``contact_id``)::

    {"status": "delivered", "external_id": "run-1:lembrete:0", "message_id": 218,
     "contact_id": 874, "timestamp": "2024-05-01T12:00:00Z"}

and also a Zenvia-style status object in place of the string
(``"messageStatus": {"code": "READ", "timestamp": ..., "description": ..., "causes":
[{"reason": ..., "channelErrorCode": ...}]}``), since the status webhook is set up
like the Zenvia integration webhook. ``externalId`` is accepted for ``external_id``.
A body is one such object or a JSON array of them.

Statuses (case-insensitive): ``pending`` and ``sent`` -> sent (``pending`` is how the
send answer says "accepted"), ``delivered``, ``read``; ``rejected``,
``not_delivered``, ``failed``, ``error`` -> failed. ``timestamp`` is ISO 8601 with a
zone or epoch seconds/milliseconds; without a usable one the time of receipt is used.

An item is matched by ``external_id`` (our idempotency key) and/or ``message_id``
(Altu's id, as ``SendResult.provider_message_id`` stored it). A bad item lands in
``ParsedWebhook.errors`` and the others are kept; a body that is not JSON, or not an
object or array of objects, is rejected whole. Dedupe keys name the message and our
status, so a redelivered webhook (or ``pending`` after ``sent``) changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.models import MessageStatus, StatusReport, in_utc
from providers.base import ParsedWebhook
from providers.webhook_json import BadItem, load_json, parse_items, rejected

STATUS_MAP: dict[str, MessageStatus] = {
    "pending": MessageStatus.SENT,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "rejected": MessageStatus.FAILED,
    "not_delivered": MessageStatus.FAILED,
    "failed": MessageStatus.FAILED,
    "error": MessageStatus.FAILED,
}
_MS_THRESHOLD = 10**11  # epoch numbers above this are milliseconds


def parse_status_webhook(body: bytes, *, provider: str, received_at: datetime) -> ParsedWebhook:
    """Parse one status webhook body (see the module docstring)."""
    items, batch = _load(body, provider)
    statuses, errors = parse_items(
        items,
        lambda item: _report(item, provider, received_at),
        lambda index: f"item {index}" if batch else "body",
    )
    return ParsedWebhook(statuses=statuses, errors=errors)


def _load(body: bytes, provider: str) -> tuple[list[Any], bool]:
    document = load_json(body, provider, label="status webhook", noun="a status")
    if isinstance(document, dict):
        return [document], False
    if isinstance(document, list):
        return document, True
    raise rejected(
        provider,
        f"expected a JSON object or array, got {type(document).__name__}",
        label="status webhook",
    )


def _report(item: Any, provider: str, received_at: datetime) -> StatusReport:
    if not isinstance(item, dict):
        raise BadItem(f"must be an object, got {type(item).__name__}")
    key = _identifier(item, "external_id", "externalId")
    message_id = _identifier(item, "message_id")
    if key is None and message_id is None:
        raise BadItem("names no message: it needs 'external_id' or 'message_id'")
    detail = item.get("messageStatus")
    detail = detail if isinstance(detail, dict) else {}
    said = item.get("status", detail.get("code"))
    if not isinstance(said, str) or not said.strip():
        raise BadItem("needs 'status' (a string) or 'messageStatus.code'")
    status = STATUS_MAP.get(said.strip().lower())
    if status is None:
        known = ", ".join(STATUS_MAP)
        raise BadItem(f"unknown status {said!r} (known: {known})")
    code, message = _failure(item, detail) if status == MessageStatus.FAILED else (None, None)
    return StatusReport(
        provider=provider,
        status=status,
        at=_when(item.get("timestamp", detail.get("timestamp"))) or received_at,
        provider_message_id=message_id,
        idempotency_key=key,
        error_code=code,
        error_message=message,
        dedupe_key=f"{provider}:status:{key or 'altu-' + str(message_id)}:{status}",
    )


def _identifier(item: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = item.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise BadItem(f"'{name}' must be a non-empty string or an integer")
        return str(value)
    return None


def _failure(item: dict[str, Any], detail: dict[str, Any]) -> tuple[str | None, str | None]:
    causes = detail.get("causes")
    cause = causes[0] if isinstance(causes, list) and causes else {}
    cause = cause if isinstance(cause, dict) else {}
    error = item.get("error")
    error = error if isinstance(error, dict) else {"message": error}
    code = error.get("code", item.get("error_code", cause.get("channelErrorCode")))
    message = next(
        (
            v
            for v in (
                error.get("message"),
                item.get("description"),
                item.get("reason"),
                cause.get("reason"),
                detail.get("description"),
            )
            if isinstance(v, str) and v.strip()
        ),
        None,
    )
    return (str(code) if code is not None else None), message


def _when(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:  # anyone's local time: trust receipt instead
            return None
        try:
            return in_utc(when)
        except ValueError:  # past year 9999 (or before year 1) in UTC: not usable either
            return None
    return None
