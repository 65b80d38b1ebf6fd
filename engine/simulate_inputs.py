"""What `disparo simulate` reads: the contact file (its context, timestamps and
attendance) and the JSON Lines of events to inject, each refused with the file,
line and field when it cannot be what it says.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from engine.api_models import ContactIn, EventIn, pydantic_details
from engine.clock import utc
from engine.errors import Problem, UserInputError
from engine.event_fields import EVENT_TYPES, stray_fields
from engine.event_times import never_on
from engine.flow.problems import timezone_problem
from engine.flow.yaml_source import read_yaml
from engine.logs import mask_phone
from engine.models import (
    Channel,
    ContactEvent,
    ContactUpsert,
)

CONTACT_TIMESTAMPS = ("last_inbound_at", "last_interaction_at", "last_outbound_at", "opted_out_at")


def _read_document(path: str) -> Any:
    """A JSON or YAML file (YAML reads JSON too), with the flow loader's limits and
    ``file:line:col`` errors."""
    return read_yaml(Path(path)).data


def _read_lines(path: str, what: str) -> list[str]:
    try:
        # utf-8-sig: a file Notepad saved "with BOM" reads as the same text
        return Path(path).read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file (the {what})") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: the {what} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def parse_time(value: Any, field: str) -> datetime:
    try:
        parsed = (
            value
            if isinstance(value, datetime)
            else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        )
        return utc(parsed)
    except ValueError as exc:
        raise UserInputError(
            f"{field}: {value!r} is not an ISO-8601 time with a timezone ({exc})"
        ) from None
    except OverflowError:  # 9999-12-31T23:59-03:00 is in the year 10000 in UTC
        raise UserInputError(f"{field}: {value!r} is outside the dates disparo can keep") from None


def load_contact(
    path: str,
) -> tuple[ContactUpsert, dict[str, datetime], datetime | None, ContactEvent | None]:
    """The contact file: the contact, its timestamps, its ``now`` and, when it is
    attended, its ``attendance_started`` event (``since``, ``until``, ``attendant``)."""
    data = _read_document(path)
    if not isinstance(data, dict):
        raise UserInputError(
            f"{path}: the contact file must be a mapping with id, phone, context, ..."
        )
    data = dict(data.get("contact", data))
    now = parse_time(data.pop("now"), f"{path}: now") if "now" in data else None
    given = {k: data.pop(k) for k in CONTACT_TIMESTAMPS if k in data}  # null: none
    stamps = {k: parse_time(v, f"{path}: {k}") for k, v in given.items() if v}
    attendance = _attendance(data.pop("attendance", None), now, path)
    known = {"id", "phone", "email", "name", "tags", "context", "timezone"}
    unknown = sorted(set(data) - known)
    if unknown:
        allowed = ", ".join(sorted(known | set(CONTACT_TIMESTAMPS) | {"attendance", "now"}))
        raise UserInputError(
            f"{path}: unknown contact field(s) {', '.join(unknown)}; known: {allowed}"
        )
    zone = data.get("timezone")
    if zone is not None and (why := timezone_problem(str(zone))) is not None:
        raise UserInputError(f"{path}: timezone: {why}")
    contact = _contact_fields(data, path)
    ident = contact.id or contact.phone or "contato-simulado"
    upsert = contact.upsert(ident)
    return upsert, stamps, now, attendance


def _contact_fields(data: dict[str, Any], path: str) -> ContactIn:
    """The file's contact held to the rules of ``PUT /v1/contacts`` (its phone in
    E.164, as production sends it); YAML's bare numbers are an id and a phone."""
    fields = {
        key: str(value)
        if key in ("id", "phone") and isinstance(value, int | float) and not isinstance(value, bool)
        else value
        for key, value in data.items()
    }
    try:
        return ContactIn.model_validate(fields)
    except ValidationError as exc:
        problems = [
            Problem(message=f"{detail.field}: {detail.message}", file=path)
            for detail in pydantic_details(exc)
        ]
        raise UserInputError("\n".join(str(p) for p in problems), problems) from None


def _attendance(value: Any, now: datetime | None, path: str) -> ContactEvent | None:
    if not value:
        return None
    if not isinstance(value, dict) or not set(value) <= {"since", "until", "attendant"}:
        raise UserInputError(
            f"{path}: attendance: write it as {{since: ISO time, until: ISO time, "
            "attendant: name} (until and attendant may be left out)"
        )
    since = value.get("since", now)
    if since is None:
        raise UserInputError(f"{path}: attendance: give `since` (or the file's `now`)")
    until = value.get("until")
    starts = parse_time(since, f"{path}: attendance.since")
    ends = parse_time(until, f"{path}: attendance.until") if until else None
    _ends_after(starts, ends, f"{path}: attendance.until")
    return ContactEvent(
        type="attendance_started",
        at=starts,
        until=ends,
        attendant=str(value["attendant"]) if value.get("attendant") else None,
        source="simulate",
    )


def _ends_after(starts: datetime, ends: datetime | None, where: str) -> None:
    """An attendance that ends by the time it starts is never on (the API refuses it)."""
    if why := never_on(starts, ends):
        raise UserInputError(f"{where}: {why}; give when it ends, or leave `until` out")


def load_events(path: str, contact: ContactUpsert | None = None) -> list[dict[str, Any]]:
    """The events file, each event checked as ``POST /v1/events`` checks it; an event
    naming another contact than ``contact`` (the one simulated) is refused."""
    events = []
    for number, line in enumerate(_read_lines(path, "events file"), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{number}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise UserInputError(f"{path}:{number}: the event nests too deeply") from None
        if not isinstance(event, dict) or "at" not in event or "type" not in event:
            raise UserInputError(f"{path}:{number}: every event needs `at` and `type`")
        where = f"{path}:{number}"
        _check_event(event, where)
        event["at"] = parse_time(event["at"], f"{where}: at")
        # `step` (which message a status is about) is simulate's own field.
        api_fields = {key: value for key, value in event.items() if key != "step"}
        api_event = _as_api_event(api_fields, where)
        event["until"] = api_event.until
        # Kept as serve keeps it: the fields given, as the API read them.
        if api_event.attachment is not None:
            event["attachment"] = api_event.attachment.as_data()
        if contact is not None:
            _same_contact(api_event, contact, where)
        if event["type"] == "attendance_started" and event["until"] is not None:
            _ends_after(event["at"], event["until"], f"{where}: until")
        events.append(event)
    return sorted(events, key=lambda e: e["at"])


_REPORTED = ("sent", "delivered", "read", "failed")


def _same_contact(event: EventIn, contact: ContactUpsert, where: str) -> None:
    """Simulate follows one contact: an event naming another would be applied to it."""
    named = event.contact
    if named is None:
        return
    if isinstance(named, str):
        matches, said = named == contact.id, f"contact {named!r}"
    else:
        matches = (named.id is None or named.id == contact.id) and (
            named.phone is None or named.phone == contact.phone
        )
        said = f"contact {named.id!r}" if named.id else f"phone {mask_phone(named.phone or '')}"
    if not matches:
        raise UserInputError(
            f"{where}: `contact` names {said}, but the simulated contact is {contact.id!r}; "
            "simulate follows one contact: leave `contact` out or name that one"
        )


def _as_api_event(event: dict[str, Any], where: str) -> EventIn:
    """The event held to what ``POST /v1/events`` takes (field types, unknown fields,
    dates UTC can hold), each problem naming the line and the field."""
    try:
        return EventIn.model_validate(event)
    except ValidationError as exc:
        raise UserInputError(
            "\n".join(f"{where}: {d.field}: {d.message}" for d in pydantic_details(exc))
        ) from None


def _check_event(event: dict[str, Any], where: str) -> None:
    """Refuse an event the engine could not use, naming the line and what to write."""
    kind = event["type"]
    if kind not in EVENT_TYPES:
        raise UserInputError(
            f"{where}: unknown event type {kind!r}; use one of {', '.join(EVENT_TYPES)}"
        )
    if kind == "status" and event.get("status") not in _REPORTED:
        raise UserInputError(
            f"{where}: a status event needs `status`: one of {', '.join(_REPORTED)}"
            f" (got {event.get('status')!r})"
        )
    if event.get("channel") not in (None, *get_args(Channel)):
        raise UserInputError(
            f"{where}: `channel` is what the event came in on: whatsapp, sms or email "
            f"(got {event['channel']!r}); only a WhatsApp message opens the 24 h window"
        )
    for field, problem in stray_fields(kind, (k for k, v in event.items() if v is not None)):
        raise UserInputError(f"{where}: `{field}` {problem}")
    if kind == "status" and not isinstance(event.get("step", ""), str):
        raise UserInputError(f"{where}: `step` names the step whose message the status is about")
    if kind == "reply" and not event.get("text") and event.get("attachment") is None:
        raise UserInputError(
            f"{where}: a reply event needs `text` (what the contact wrote) or an "
            "`attachment` (a file or map pin it sent)"
        )
    if kind in ("button", "choice") and not event.get("button_id"):
        raise UserInputError(f"{where}: a {kind} event needs `button_id`, the id that was tapped")
