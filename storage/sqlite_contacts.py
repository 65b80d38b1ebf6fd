"""Contacts on SQLite: the contacts with a phone (``Store.find_contacts_by_phone``,
``Store.find_phone_opt_outs``), and upserts of one contact (``Store.upsert_contact``)
or a batch of them (the contacts of a ``Store.start_runs`` that carries them),
decided in Python.

Phones are not unique (a CRM often holds two records of one person): a phone
finds every contact with it, oldest first, through the ``contacts_phone`` index.

One read fetches the stored rows of the batch, each upsert is merged into its row
in order (``None`` fields keep what is stored; context merged key by key by
``merge_context``, a ``None`` value deleting the key, unless ``replace_context``),
and one ``executemany`` writes the rows. The write unit holds SQLite's write lock
from the read to the write, so nothing changes the rows in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.models import Contact, ContactUpsert
from storage.columns import CONTACT_COLUMNS
from storage.sqlite_codec import contact_from_row, dumps, loads, to_us

# (id, phone, email, name, tags JSON, context, timezone): what an upsert may change.
ContactFields = tuple[str, str | None, str | None, str | None, str, dict[str, Any], str | None]

# INDEXED BY: a query the index cannot serve fails instead of scanning every contact.
CONTACTS_BY_PHONE = (
    f"SELECT {CONTACT_COLUMNS} FROM contacts INDEXED BY contacts_phone WHERE phone = ? "
    "ORDER BY created_at, id"
)
# Only opted-out rows are decoded: a phone's contacts are read on every send.
PHONE_OPT_OUTS = (
    f"SELECT {CONTACT_COLUMNS} FROM contacts INDEXED BY contacts_phone WHERE phone = ? "
    "AND opted_out_at IS NOT NULL AND opted_out_at <= ? ORDER BY opted_out_at, id"
)
_STORED = (
    "SELECT id, phone, email, name, tags, context, timezone FROM contacts "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_WRITE = (
    "INSERT INTO contacts (id, phone, email, name, tags, context, timezone, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "phone = excluded.phone, email = excluded.email, name = excluded.name, "
    "tags = excluded.tags, context = excluded.context, timezone = excluded.timezone, "
    "updated_at = excluded.updated_at"
)


class PhoneMethods:
    """``Store.find_contacts_by_phone``, ``Store.find_contact_by_phone`` and
    ``Store.find_phone_opt_outs``; ``SQLiteStore`` provides the read."""

    def _fetch_all(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # SQLiteStore reads on its connection

    async def find_contacts_by_phone(self, phone: str) -> list[Contact]:
        """Every contact with this phone, oldest first (phones are not unique)."""
        return [contact_from_row(row) for row in self._fetch_all(CONTACTS_BY_PHONE, (phone,))]

    async def find_phone_opt_outs(self, phone: str, before: datetime) -> list[Contact]:
        """The contacts with this phone that opted out at or before ``before``,
        earliest opt-out first."""
        rows = self._fetch_all(PHONE_OPT_OUTS, (phone, to_us(before)))
        return [contact_from_row(row) for row in rows]

    async def find_contact_by_phone(self, phone: str) -> Contact | None:
        """The oldest contact with this phone."""
        found = await self.find_contacts_by_phone(phone)
        return found[0] if found else None


def upsert_contact(db: sqlite3.Connection, upsert: ContactUpsert, now: int) -> Contact:
    """Write one upsert (see ``Store.upsert_contact``); the contact as stored now."""
    upsert_contacts(db, [upsert], now)
    row = db.execute(f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ?", (upsert.id,))
    return contact_from_row(row.fetchone())


def upsert_contacts(db: sqlite3.Connection, upserts: Sequence[ContactUpsert], now: int) -> None:
    """Write ``upserts`` in order, each as ``upsert_contact`` would, with one read and
    one ``executemany``; runs inside the caller's write unit."""
    if not upserts:
        return
    ids = list(dict.fromkeys(upsert.id for upsert in upserts))
    rows: dict[str, ContactFields] = {
        id_: (id_, phone, email, name, tags, loads(context), timezone)
        for id_, phone, email, name, tags, context, timezone in db.execute(_STORED, (dumps(ids),))
    }
    for upsert in upserts:
        rows[upsert.id] = merged(rows.get(upsert.id), upsert)
    db.executemany(
        _WRITE,
        [
            (id_, phone, email, name, tags, dumps(context), timezone, now, now)
            for id_, phone, email, name, tags, context, timezone in rows.values()
        ],
    )


def merge_context(stored: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Key-by-key merge; a ``None`` value deletes the key."""
    out = dict(stored)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def merged(stored: ContactFields | None, upsert: ContactUpsert) -> ContactFields:
    """The contact's fields once ``upsert`` is applied to ``stored`` (None: a new contact)."""
    if stored is None:
        stored = (upsert.id, None, None, None, "[]", {}, None)
    _, phone, email, name, tags, context, timezone = stored
    if upsert.replace_context:
        context = dict(upsert.context or {})
    elif upsert.context:
        context = merge_context(context, upsert.context)
    return (
        upsert.id,
        phone if upsert.phone is None else upsert.phone,
        email if upsert.email is None else upsert.email,
        name if upsert.name is None else upsert.name,
        tags if upsert.tags is None else dumps(list(upsert.tags)),
        context,
        timezone if upsert.timezone is None else upsert.timezone,
    )
