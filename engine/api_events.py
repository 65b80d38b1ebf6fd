"""``POST /v1/events``: inbound facts about contacts, and status reports.

A request is checked whole before anything of it is stored: each item's shape
(400), then the contacts and messages it names (404), every problem named by its
field and, in a list, by its index (``[1].contact``). Only then is it written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from pydantic import ValidationError

from engine.api import ENGINE
from engine.api_body import read_json
from engine.api_models import ContactIn, EventIn, pydantic_details
from engine.errors import FieldError, RequestError
from engine.event_fields import stray_fields
from engine.event_times import describe, never_on, too_far_ahead
from engine.models import ContactEvent, Message, MessageStatus, StatusReport, missing_for_type
from engine.runtime import ACCEPTED_OUTCOMES, Engine

Namer = Callable[[int, str], str]


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/events", post_events)


async def post_events(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    data = await read_json(request)
    listed = isinstance(data, list)
    items = data if listed else [data]

    def name(index: int, field: str) -> str:
        return f"[{index}].{field}" if listed else field

    events = _parse(items, listed)
    now = engine.clock.now()
    problems = [
        FieldError(field=name(index, field), message=message)
        for index, event in enumerate(events)
        for field, message in _shape_problems(event, now)
    ]
    if problems:
        raise _refused(400, "VALIDATION_ERROR", problems, len(items))
    messages, unknown = await _lookups(engine, events, name)
    if unknown:
        raise _refused(404, "NOT_FOUND", unknown, len(items))
    reports = [
        _report(event, messages[event.message_id], now)
        for event in events
        if event.type == "status" and event.message_id is not None
    ]
    contact_events = [_contact_event(event, now) for event in events if event.type != "status"]
    # One outcome per event, in the order given, whatever each was stored as.
    by_status = await engine.ingest_status_reports(reports) if reports else []
    by_contact = await engine.ingest_contact_events(contact_events) if contact_events else []
    statuses, others = iter(by_status), iter(by_contact)
    outcomes = [next(statuses if event.type == "status" else others) for event in events]
    accepted = sum(o in ACCEPTED_OUTCOMES for o in outcomes)
    return web.json_response({"accepted": accepted, "outcomes": outcomes}, status=202)


def _parse(items: list[object], listed: bool) -> list[EventIn]:
    parsed: list[EventIn] = []
    details: list[FieldError] = []
    for index, item in enumerate(items):
        try:
            parsed.append(EventIn.model_validate(item))
        except ValidationError as exc:
            details += pydantic_details(exc, prefix=f"[{index}]." if listed else "")
    if details:
        raise _refused(400, "VALIDATION_ERROR", details, len(items))
    return parsed


def _refused(status: int, code: str, details: list[FieldError], count: int) -> RequestError:
    what = "the event" if count == 1 else "events of the list"
    why = "are invalid" if status == 400 else "name what does not exist"
    if count == 1:
        why = "is invalid" if status == 400 else "names what does not exist"
    return RequestError(
        status=status,
        code=code,
        message=f"{what} {why}; nothing of the request was stored",
        details=details,
    )


def _shape_problems(event: EventIn, now: datetime) -> list[tuple[str, str]]:
    """``(field, message)`` for each thing wrong with ``event`` on its own."""
    problems = []
    ahead = too_far_ahead(event.at, now) if event.at is not None else None
    if event.at is not None and ahead is not None:
        problems.append(
            (
                "at",
                f"{event.at.isoformat()} is {describe(ahead)} ahead of now "
                f"({now.isoformat()}); send when it happened, in UTC (…Z) or with its "
                "offset (…-03:00)",
            )
        )
    if event.type == "attendance_started" and (why := never_on(event.at or now, event.until)):
        problems.append(
            (
                "until",
                f"{why}; give when it ends, or leave `until` out for an attendance that "
                "lasts until attendance_ended",
            )
        )
    given = (name for name in event.model_fields_set if getattr(event, name) is not None)
    problems.extend(stray_fields(event.type, given))
    if event.type == "status":
        if not event.message_id:
            problems.append(("message_id", "required for type status: the message's id"))
        if event.status is None:
            problems.append(("status", "required for type status: sent, delivered, read or failed"))
        return problems
    missing = missing_for_type(
        event.type, text=event.text, button_id=event.button_id, attachment=event.attachment
    )
    if missing is not None:
        problems.append(missing)
    if event.contact is None:
        problems.append(("contact", 'required: a contact id or {"phone": "+5511999998888"}'))
    elif isinstance(event.contact, ContactIn) and not (event.contact.id or event.contact.phone):
        problems.append(
            ("contact", "give an id or a phone; an e-mail alone cannot be resolved to a contact")
        )
    elif isinstance(event.contact, ContactIn):
        problems += _unused_contact_fields(event.contact)
    return problems


def _unused_contact_fields(contact: ContactIn) -> list[tuple[str, str]]:
    """An event names its contact by id or phone; anything else in that object would
    be dropped without a word, so each such field is a problem of its own."""
    return [
        (
            f"contact.{field}",
            f"an event names its contact by `id` or `phone` only; store its {field} "
            "with PUT /v1/contacts/{id} (before or after the event) instead",
        )
        for field in _EXTRA_CONTACT_FIELDS
        if getattr(contact, field) is not None
    ]


# What PUT /v1/contacts takes beyond the id and phone an event is resolved by.
_EXTRA_CONTACT_FIELDS = tuple(f for f in ContactIn.model_fields if f not in ("id", "phone"))


async def _lookups(
    engine: Engine, events: list[EventIn], name: Namer
) -> tuple[dict[str, Message], list[FieldError]]:
    """The messages the status events name, and an error per unknown message or contact id."""
    messages: dict[str, Message] = {}
    unknown: list[FieldError] = []
    named = {_contact_id(event)[1] for event in events if event.type != "status"}
    ids = sorted(contact_id for contact_id in named if contact_id is not None)
    existing = await engine.store.get_contacts(ids) if ids else {}
    for index, event in enumerate(events):
        if event.type == "status" and event.message_id is not None:
            message = messages.get(event.message_id) or await engine.store.get_message(
                event.message_id
            )
            if message is None:
                unknown.append(
                    FieldError(
                        field=name(index, "message_id"),
                        message=f"message {event.message_id} does not exist",
                    )
                )
            else:
                messages[message.id] = message
            continue
        field, contact_id = _contact_id(event)
        if contact_id is not None and contact_id not in existing:
            unknown.append(
                FieldError(
                    field=name(index, field),
                    message=f"contact {contact_id} does not exist; create it with PUT "
                    "/v1/contacts/{id}, or name the contact by its phone",
                )
            )
    return messages, unknown


def _contact_id(event: EventIn) -> tuple[str, str | None]:
    """The field naming the event's contact by id, and that id (None: by phone)."""
    if isinstance(event.contact, str):
        return "contact", event.contact
    if event.contact is not None and event.contact.id:
        return "contact.id", event.contact.id
    return "contact", None


def _report(event: EventIn, message: Message, now: datetime) -> StatusReport:
    assert event.status is not None  # _shape_problems
    return StatusReport(
        provider=message.provider,
        status=MessageStatus(event.status),
        at=(event.at or now).astimezone(UTC),
        idempotency_key=message.idempotency_key,
        error_message=event.error,
        dedupe_key=f"api:{event.id}" if event.id else None,
    )


def _contact_event(event: EventIn, now: datetime) -> ContactEvent:
    assert event.type != "status"  # reports are built by _report
    _, contact_id = _contact_id(event)
    phone = event.contact.phone if isinstance(event.contact, ContactIn) else None
    return ContactEvent(
        type=event.type,
        at=(event.at or now).astimezone(UTC),
        contact_id=contact_id,
        phone=None if contact_id is not None else phone,
        text=event.text,
        button_id=event.button_id,
        attendant=event.attendant,
        until=event.until.astimezone(UTC) if event.until else None,
        source="api",
        dedupe_key=f"api:{event.id}" if event.id else None,
        channel=event.channel,
        attachment=event.attachment.as_data() if event.attachment is not None else None,
    )
