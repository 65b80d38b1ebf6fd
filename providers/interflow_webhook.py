"""Interflow's status webhook -> ``StatusReport``.

The document describes one event, posted when a message's status changes::

    {"event": "message.status_updated",
     "data": {"message_id": "msg_abc123xyz", "status": "delivered",
              "timestamp": "2024-01-15T10:30:05Z"}}

``message_id`` is the ``data.id`` of the send's 201 answer, so reports match our
messages by provider id. Statuses map as: ``pending`` (accepted, waiting to go out)
and ``sent`` -> sent, ``delivered`` -> delivered, ``read`` -> read, ``failed`` ->
failed. ``pending`` carries no news for a message whose send was answered, but it
proves Interflow has a message whose send ended ambiguously.

Tolerances, since the document is "em atualização": a JSON array of such events is
read as a batch (each bad item is reported, the others kept); unknown fields are
ignored; a missing ``timestamp`` means "now" and one without a timezone is UTC; a
``failed`` event's optional ``data.error`` (``{"code", "message"}`` or a string) is
kept. Events other than ``message.status_updated`` (the document names no inbound
message event) are reported as errors, and the document describes no signature,
so the body is trusted on the ``?token=`` check alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.models import MessageStatus, StatusReport, in_utc
from providers.base import ParsedWebhook
from providers.webhook_json import BadItem, load_json, parse_items, rejected

STATUS_EVENT = "message.status_updated"
STATUSES: dict[str, MessageStatus] = {
    "pending": MessageStatus.SENT,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}


def parse_interflow_webhook(body: bytes, *, provider: str, received_at: datetime) -> ParsedWebhook:
    """Read one event or a list of them (see the module docstring).

    Raises ``ProviderRejected`` (status 400) when the body is not a JSON object or a
    non-empty list; a bad event only lands in ``errors``. Each report's dedupe key is
    the message id with Interflow's own status word, so a redelivery changes nothing.
    """
    document = _load(body, provider)
    batch = isinstance(document, list)
    items = document if isinstance(document, list) else [document]
    statuses, errors = parse_items(
        items,
        lambda item: _status_report(item, provider, received_at),
        lambda index: f"[{index}]" if batch else "event",
    )
    return ParsedWebhook(statuses=statuses, errors=errors)


def status_event(message_id: str, status: str, timestamp: str | None = None) -> dict[str, Any]:
    """One documented ``message.status_updated`` event (fakes and tests build with it)."""
    data: dict[str, Any] = {"message_id": message_id, "status": status}
    if timestamp is not None:
        data["timestamp"] = timestamp
    return {"event": STATUS_EVENT, "data": data}


def _load(body: bytes, provider: str) -> dict[str, Any] | list[Any]:
    document = load_json(body, provider)
    if isinstance(document, list) and not document:
        raise rejected(provider, "the list of events is empty")
    if not isinstance(document, dict | list):
        why = f"expected a JSON object with 'event' and 'data', got {_kind(document)}"
        raise rejected(provider, why)
    return document


def _status_report(item: Any, provider: str, received_at: datetime) -> StatusReport:
    if not isinstance(item, dict):
        raise BadItem(f"must be an object with 'event' and 'data', got {_kind(item)}")
    event = item.get("event")
    if event != STATUS_EVENT:
        raise BadItem(f"event {event!r} is not one disparo reads (it reads {STATUS_EVENT!r})")
    data = item.get("data")
    if not isinstance(data, dict):
        raise BadItem(f"'data' must be an object, got {_kind(data)}")
    message_id = data.get("message_id")
    if not isinstance(message_id, str) or not message_id.strip():
        raise BadItem("'data.message_id' must be a non-empty string")
    word = data.get("status")
    if not isinstance(word, str) or word not in STATUSES:  # a list or object is unhashable
        raise BadItem(f"'data.status' is {word!r}; expected one of {', '.join(STATUSES)}")
    code, said = _error_of(data.get("error"))
    return StatusReport(
        provider=provider,
        status=STATUSES[word],
        at=_timestamp(data.get("timestamp"), received_at),
        provider_message_id=message_id,
        error_code=code,
        error_message=said,
        dedupe_key=f"{provider}:status:{message_id}:{word}",
    )


def _timestamp(value: Any, received_at: datetime) -> datetime:
    if value is None:
        return received_at
    if not isinstance(value, str):
        raise BadItem(f"'data.timestamp' must be an ISO 8601 string, got {_kind(value)}")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadItem(f"'data.timestamp' {value!r} is not an ISO 8601 time") from None
    try:
        return in_utc(when.replace(tzinfo=UTC) if when.tzinfo is None else when)
    except ValueError:  # past year 9999 (or before year 1) in UTC
        raise BadItem(f"'data.timestamp' {value!r} is outside the dates disparo can keep") from None


def _error_of(error: Any) -> tuple[str | None, str | None]:
    if isinstance(error, dict):
        code, said = error.get("code"), error.get("message")
        return (str(code) if code is not None else None, str(said) if said is not None else None)
    if isinstance(error, str) and error.strip():
        return None, error
    return None, None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
