"""Whom an inbound contact event is about, before it is stored.

An event names its contact by id, or by the phone a provider saw. A phone is
read as E.164 first, the way the API stores phones (``5521987654321`` and
``+55 21 98765-4321`` are one number), and reaches the contact that has it; a
phone no contact has yet, or an id not seen yet, gets a contact of its own, since
its reply opens the window. A reply whose text is an opt-out keyword also
counts as an opt-out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from engine.errors import UserInputError
from engine.models import ContactEvent, ContactUpsert
from engine.opt_out import is_opt_out
from engine.phones import InvalidPhone, normalise_phone
from storage.base import Store


async def resolve_contacts(
    store: Store, events: Sequence[ContactEvent], now: datetime, opt_out_keywords: Sequence[str]
) -> list[ContactEvent]:
    """``events`` with their ``contact_id`` set (contacts created as needed), each
    opt-out reply followed by its opt-out. A contactless event raises
    ``UserInputError`` before any contact is created."""
    if any(event.contact_id is None and not event.phone for event in events):
        raise UserInputError("a contact event needs a contact id or a phone number")
    resolved: list[ContactEvent] = []
    for event in events:
        contact_id = event.contact_id
        if contact_id is None:
            assert event.phone is not None
            phone = e164(event.phone)
            found = await store.find_contact_by_phone(phone)
            if found is None:
                found = await store.upsert_contact(ContactUpsert(id=phone, phone=phone), now)
            contact_id = found.id
            event = replace(event, phone=phone)
        elif await store.get_contact(contact_id) is None:
            await store.upsert_contact(ContactUpsert(id=contact_id), now)
        event = replace(event, contact_id=contact_id)
        resolved.append(event)
        if event.type == "reply" and event.text and is_opt_out(event.text, opt_out_keywords):
            resolved.append(
                ContactEvent(
                    type="opt_out",
                    at=event.at,
                    contact_id=contact_id,
                    text=event.text,
                    source=event.source,
                    dedupe_key=f"{event.dedupe_key}:opt_out" if event.dedupe_key else None,
                )
            )
    return resolved


def e164(phone: str) -> str:
    """``phone`` in E.164 (``engine.phones``); a number that cannot be read as one is
    kept as the provider sent it, and matches only a contact stored that way."""
    try:
        return normalise_phone(phone)
    except InvalidPhone:
        return phone
