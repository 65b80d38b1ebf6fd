"""Whom an inbound contact event is about, before it is stored.

An event names its contact by id, or by the phone a provider saw. A phone is
read as E.164 first, the way the API stores phones (``5521987654321`` and
``+55 21 98765-4321`` are one number); a phone no contact has yet, or an id not
seen yet, gets a contact of its own, since its reply opens the window. A reply
whose text is an opt-out keyword also counts as an opt-out.

Phones are not unique: a CRM often holds two records of one person. An opt-out
by phone applies to every contact with that phone (the person said stop, whatever
record is messaging them). Any other event by phone goes to the contact that most
plausibly expects it (``expecting``): one with an open run, the most recently
messaged first; else the most recently messaged; else the oldest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from engine.errors import UserInputError
from engine.models import Channel, Contact, ContactEvent, ContactUpsert
from engine.opt_out import is_opt_out
from engine.phones import InvalidPhone, normalise_phone
from providers.base import Capabilities
from storage.base import IngestOutcome, Store

_NEVER = datetime.min.replace(tzinfo=UTC)


async def resolve_contacts(
    store: Store, events: Sequence[ContactEvent], now: datetime, opt_out_keywords: Sequence[str]
) -> tuple[list[ContactEvent], list[int]]:
    """``events`` with their ``contact_id`` set (contacts created as needed), an
    opt-out by phone repeated for each contact with the phone, each opt-out reply
    followed by its opt-out(s); and, for each, the index of the event it comes from.
    A contactless event raises ``UserInputError`` before any contact is created."""
    if any(event.contact_id is None and not event.phone for event in events):
        raise UserInputError("a contact event needs a contact id or a phone number")
    origins: list[int] = []  # the index in ``events`` each stored event comes from
    resolved: list[ContactEvent] = []
    # A batch names the same contacts many times: each is looked up once.
    named = sorted({event.contact_id for event in events if event.contact_id is not None})
    known = set(await store.get_contacts(named)) if named else set()
    by_phone: dict[str, tuple[list[str], str]] = {}  # phone -> its contacts, the expected one
    for index, event in enumerate(events):
        first = len(resolved)
        if event.contact_id is not None:
            if event.contact_id not in known:
                await store.upsert_contact(ContactUpsert(id=event.contact_id), now)
                known.add(event.contact_id)
            contacts = [event.contact_id]
        else:
            assert event.phone is not None
            phone = e164(event.phone)
            if phone not in by_phone:
                found = await store.find_contacts_by_phone(phone)
                if not found:
                    found = [await store.upsert_contact(ContactUpsert(id=phone, phone=phone), now)]
                by_phone[phone] = ([c.id for c in found], (await expecting(store, found)).id)
            contacts, expected = by_phone[phone]
            event = replace(event, phone=phone)
            if event.type != "opt_out":
                event = replace(event, contact_id=expected)
        if event.type == "opt_out":
            resolved += opt_outs(event, contacts)
        else:
            resolved.append(event)
            if event.type == "reply" and event.text and is_opt_out(event.text, opt_out_keywords):
                dedupe_key = f"{event.dedupe_key}:opt_out" if event.dedupe_key else None
                opt_out = replace(event, type="opt_out", button_id=None, dedupe_key=dedupe_key)
                resolved += opt_outs(opt_out, contacts)
        origins += [index] * (len(resolved) - first)
    return resolved, origins


# What one event says when it was stored as several (an opt-out per record of a
# phone, a keyword reply and its opt-out): the first of these its parts say.
_PREFERRED: tuple[IngestOutcome, ...] = ("queued", "applied", "pending", "duplicate")


def outcome_per_event(
    outcomes: Sequence[IngestOutcome], origins: Sequence[int], events: int
) -> list[IngestOutcome]:
    """One outcome per event given, from the outcomes of what each was stored as."""
    parts: list[list[IngestOutcome]] = [[] for _ in range(events)]
    for outcome, origin in zip(outcomes, origins, strict=True):
        parts[origin].append(outcome)  # every event is stored as one thing at least
    return [next((o for o in _PREFERRED if o in mine), mine[0]) for mine in parts]


def opt_outs(event: ContactEvent, contact_ids: Sequence[str]) -> list[ContactEvent]:
    """The opt-out ``event`` once per contact (oldest first). The first keeps the
    event's dedupe key, the others get theirs suffixed with their contact id: the
    store's dedupe on keys still makes a retry a duplicate for each contact, and a
    phone one contact has keeps the keys it always had."""
    return [
        replace(
            event,
            contact_id=contact_id,
            dedupe_key=(
                f"{event.dedupe_key}:{contact_id}"
                if event.dedupe_key and index
                else event.dedupe_key
            ),
        )
        for index, contact_id in enumerate(contact_ids)
    ]


async def expecting(store: Store, contacts: Sequence[Contact]) -> Contact:
    """Among ``contacts`` (oldest first, at least one), the one an inbound event by
    their shared phone is most plausibly about: one with an open run (active or
    waiting) before one without, then the most recently messaged
    (``last_outbound_at``), then the oldest. Deterministic for the same store."""
    if len(contacts) == 1:
        return contacts[0]
    open_ = {contact.id for contact in contacts if await store.list_open_runs(contact.id)}
    # max keeps the first of equals: the oldest.
    return max(
        contacts, key=lambda contact: (contact.id in open_, contact.last_outbound_at or _NEVER)
    )


def came_in_on(events: Sequence[ContactEvent], provider: Capabilities) -> list[ContactEvent]:
    """``events`` a provider's webhook brought, each with the channel it came in on
    when known: the one an item names, else that of a provider that sends no WhatsApp
    (an SMS gateway), where a reply opens no WhatsApp window. Else None, taken as
    WhatsApp."""
    if "whatsapp" in provider.channels or not provider.channels:
        return list(events)
    channel: Channel = "sms" if "sms" in provider.channels else "email"
    return [replace(event, channel=event.channel or channel) for event in events]


def e164(phone: str) -> str:
    """``phone`` in E.164 (``engine.phones``); a number that cannot be read as one is
    kept as the provider sent it, and matches only a contact stored that way."""
    try:
        return normalise_phone(phone)
    except InvalidPhone:
        return phone
