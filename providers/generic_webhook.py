"""disparo's own webhook format, spoken by the sandbox and by in-house HTTP gateways.

One JSON object with a ``statuses`` list, an ``inbound`` list, or both::

    {"statuses": [
        {"id": "sbx-…", "key": "<idempotency key>", "status": "delivered",
         "at": "2024-05-01T12:00:00Z"},
        {"key": "…", "status": "failed", "error": {"code": "invalid_number", "message": "…"}}
     ],
     "inbound": [
        {"id": "in-1", "from": "+5511999999999", "type": "reply", "text": "sim",
         "at": "2024-05-01T12:01:00Z"},
        {"from": "+5511999999999", "type": "button", "button_id": "confirm", "text": "Confirmar"},
        {"from": "+5511999999999", "type": "choice", "button_id": "row-2"}
     ]}

Status items name the message by our provider id (``id``), by the idempotency key
we sent (``key``), or both; ``status`` is one of sent, delivered, read, failed;
``error`` is ``{"code", "message"}`` or a plain string. Inbound items carry the
contact's phone in ``from`` (the engine reads it as E.164, so ``5511…`` without
the ``+``, or ``+55 (11) 99999-8888`` as a person writes it, reaches the contact
stored as ``+5511…``) and a ``type``: reply (needs
``text``, an ``attachment`` (``providers.base.Attachment``: a file or map pin), or
both), button and choice (need ``button_id``: the button id or list row id),
interaction, opt_out, opt_in, attendance_started and attendance_ended (optional
``attendant`` and ``until``).
An inbound ``id`` makes redeliveries of the same event harmless.

``at`` is ISO 8601 with a timezone; when absent the time the webhook is processed
is used, which is what the sandbox relies on (its callbacks run when they are due).
Unknown fields are errors, so a misspelt ``stauts`` is reported instead of dropped.
A body that is not such an object is rejected whole; inside the lists each bad item
is reported in ``ParsedWebhook.errors`` and the good ones are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.errors import ProviderRejected
from engine.models import (
    Channel,
    ContactEvent,
    ContactEventType,
    MessageStatus,
    StatusReport,
    in_utc,
    missing_for_type,
)
from providers.base import Attachment, ParsedWebhook
from providers.webhook_json import load_json
from providers.webhook_json import rejected as webhook_rejected

_TOP_LEVEL = frozenset({"statuses", "inbound"})
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
# How people and CRMs write a number ("+55 (11) 99999-8888"): dropped before the check.
_PHONE_MARKS = re.compile(r"[\s().\-]")
ReportedStatus = Literal["sent", "delivered", "read", "failed"]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("at", "until", mode="after", check_fields=False)
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """Times in UTC, so one outside UTC's dates is this item's error, not a crash."""
        return None if value is None else in_utc(value)


class _StatusError(_Item):
    code: str | None = None
    message: str | None = None


class _StatusItem(_Item):
    id: str | None = Field(default=None, min_length=1)
    key: str | None = Field(default=None, min_length=1)
    status: ReportedStatus
    at: AwareDatetime | None = None
    error: _StatusError | str | None = None

    @model_validator(mode="after")
    def _names_a_message(self) -> _StatusItem:
        if self.id is None and self.key is None:
            raise ValueError("a status needs 'id' (provider message id) or 'key' (idempotency key)")
        return self


class _InboundItem(_Item):
    id: str | None = Field(default=None, min_length=1)
    from_: str = Field(alias="from")
    type: ContactEventType
    text: str | None = None
    button_id: str | None = Field(default=None, min_length=1)
    attendant: str | None = None
    until: AwareDatetime | None = None
    at: AwareDatetime | None = None
    channel: Channel | None = None  # what it came in on; only whatsapp opens the window
    attachment: Attachment | None = None  # a file or map pin a reply brought

    @field_validator("from_")
    @classmethod
    def _a_phone(cls, value: str) -> str:
        # Not the value: refusals are logged, and this one is a phone or near it.
        # The marks go; the engine reads the digits as E.164 (adding a missing ninth digit).
        digits = _PHONE_MARKS.sub("", value)
        if not _PHONE.fullmatch(digits):
            raise ValueError(
                "not a phone number: 6 to 15 digits with or without a leading +, e.g. 5511999998888"
            )
        return digits

    @model_validator(mode="after")
    def _has_what_its_type_needs(self) -> _InboundItem:
        missing = missing_for_type(
            self.type, text=self.text, button_id=self.button_id, attachment=self.attachment
        )
        if self.attachment is not None and self.type != "reply":
            raise ValueError(f"attachment: a {self.type} brings none; send it as a reply")
        if missing is not None:
            raise ValueError(missing[1])
        return self


class _StatusesOnly(_Item):
    """A body of status reports only, every one of them valid: the common webhook."""

    statuses: list[_StatusItem] = Field(min_length=1)


def parse_generic_webhook(body: bytes, *, provider: str, received_at: datetime) -> ParsedWebhook:
    """Parse a body in disparo's webhook format (see the module docstring).

    Raises ``ProviderRejected`` (status 400) when the body is not JSON or not an object
    with ``statuses``/``inbound`` lists; a bad item only lands in ``errors``.
    Reports carry ``provider`` as their source and stable dedupe keys, so a
    redelivered webhook changes nothing.
    """
    try:
        # One pass of pydantic's JSON parser; any other body (inbound items, a bad
        # item, not JSON at all) takes the item-by-item path, which says what is wrong.
        whole = _StatusesOnly.model_validate_json(body)
    except ValidationError:
        pass
    else:
        return ParsedWebhook(
            statuses=[_status_report(item, provider, received_at) for item in whole.statuses]
        )
    return parse_item_by_item(body, provider=provider, received_at=received_at)


def parse_item_by_item(body: bytes, *, provider: str, received_at: datetime) -> ParsedWebhook:
    """``parse_generic_webhook`` one item at a time: the good items are kept, each bad
    one is named in ``errors``."""
    document = _load(body, provider)
    statuses: list[StatusReport] = []
    events: list[ContactEvent] = []
    errors: list[str] = []
    for index, raw in enumerate(document.get("statuses", [])):
        where = f"statuses[{index}]"
        item = _validate(_StatusItem, raw, where, errors)
        if isinstance(item, _StatusItem):
            statuses.append(_status_report(item, provider, received_at))
    for index, raw in enumerate(document.get("inbound", [])):
        where = f"inbound[{index}]"
        item = _validate(_InboundItem, raw, where, errors)
        if isinstance(item, _InboundItem):
            event = _contact_event(item, raw, provider, received_at)
            if event.type == "attendance_started" and event.until and event.until <= event.at:
                # An attendance that is never on: the bot would talk over the agent.
                errors.append(
                    f"{where}: until: {event.until.isoformat()} is not after the attendance "
                    f"starts ({event.at.isoformat()}); leave it out for no set end"
                )
                continue
            events.append(event)
    return ParsedWebhook(statuses=statuses, contact_events=events, errors=errors)


def status_body(
    *,
    provider_message_id: str | None,
    idempotency_key: str | None,
    status: MessageStatus,
    at: datetime | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> bytes:
    """One status in this format, as bytes ready for ``ProviderHost.schedule_callback``."""
    item: dict[str, Any] = {"status": str(status)}
    if provider_message_id is not None:
        item["id"] = provider_message_id
    if idempotency_key is not None:
        item["key"] = idempotency_key
    if at is not None:
        item["at"] = at.isoformat()
    if error_code is not None or error_message is not None:
        item["error"] = {"code": error_code, "message": error_message}
    return json.dumps({"statuses": [item]}, ensure_ascii=False).encode()


def _load(body: bytes, provider: str) -> dict[str, Any]:
    def rejected(why: str) -> ProviderRejected:
        return webhook_rejected(provider, why)

    document = load_json(body, provider)
    if not isinstance(document, dict):
        raise rejected(f"expected a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - _TOP_LEVEL)
    if unknown:
        raise rejected(f"unknown field(s) {', '.join(unknown)}; use 'statuses' and/or 'inbound'")
    if not document:
        raise rejected("the object has neither 'statuses' nor 'inbound'")
    for name in _TOP_LEVEL & set(document):
        if not isinstance(document[name], list):
            raise rejected(f"'{name}' must be a list, got {type(document[name]).__name__}")
    return document


def _validate(
    model: type[_StatusItem] | type[_InboundItem], raw: Any, where: str, errors: list[str]
) -> _StatusItem | _InboundItem | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be an object, got {type(raw).__name__}")
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors.append(f"{where}: {_explain(exc)}")
        return None


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in error["loc"])
        said = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            said = "unknown field; remove it or check its spelling"
        elif error["type"] == "model_type":  # pydantic names the Python class
            said = "must be a JSON object ({...}) with its 'type'"
        parts.append(f"{field}: {said}" if field else said)
    return "; ".join(parts)


def _status_report(item: _StatusItem, provider: str, received_at: datetime) -> StatusReport:
    error = item.error
    code, message = (
        (error.code, error.message) if isinstance(error, _StatusError) else (None, error)
    )
    return StatusReport(
        provider=provider,
        status=MessageStatus(item.status),
        at=item.at or received_at,
        provider_message_id=item.id,
        idempotency_key=item.key,
        error_code=code,
        error_message=message,
        dedupe_key=f"{provider}:status:{item.id or item.key}:{item.status}",
    )


def _contact_event(
    item: _InboundItem, raw: dict[str, Any], provider: str, received_at: datetime
) -> ContactEvent:
    return ContactEvent(
        type=item.type,
        at=item.at or received_at,
        phone=item.from_,
        text=item.text,
        button_id=item.button_id,
        attendant=item.attendant,
        until=item.until,
        source=provider,
        dedupe_key=_inbound_dedupe_key(item, raw, provider),
        channel=item.channel,
        attachment=item.attachment.as_data() if item.attachment is not None else None,
    )


def _inbound_dedupe_key(item: _InboundItem, raw: dict[str, Any], provider: str) -> str | None:
    if item.id is not None:
        return f"{provider}:inbound:{item.id}"
    if item.at is None:
        return None  # two identical replies at unknown times may both be real
    # Same content at the same instant is the same event delivered twice.
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False).encode())
    return f"{provider}:inbound:{digest.hexdigest()[:32]}"
