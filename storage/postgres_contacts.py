"""Contacts on PostgreSQL: the contacts with a phone (``Store.find_contacts_by_phone``,
every one, oldest first, through the ``contacts_phone`` index: phones are not
unique; ``Store.find_phone_opt_outs``, the opted-out ones only), and contact
upserts in bulk: the contacts a ``Store.start_runs`` carries.

Each contact is written by ``disparo_upsert_contact``, the very function behind
``Store.upsert_contact`` (same units, same merge: ``None`` fields keep what is
stored, context merged key by key), called once per upsert inside the caller's
transaction through one pipelined ``executemany``. The upserts go in contact id
order (a stable sort: one contact's upserts keep their order), so two batches lock
their contact rows in the same order and never wait for each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engine.models import Contact, ContactUpsert
from storage.columns import CONTACT_COLUMNS
from storage.postgres_codec import contact_from_row, encode_unit, upsert_unit

_UPSERT = "SELECT disparo_upsert_contact($1::jsonb)"
CONTACTS_BY_PHONE = (
    f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE phone = $1 ORDER BY created_at, id"
)
PHONE_OPT_OUTS = (
    f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE phone = $1 AND opted_out_at IS NOT NULL "
    "AND opted_out_at <= $2 ORDER BY opted_out_at, id"
)


class PhoneMethods:
    """``Store.find_contacts_by_phone``, ``Store.find_contact_by_phone`` and
    ``Store.find_phone_opt_outs``; ``PostgresStore`` provides the read."""

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def find_contacts_by_phone(self, phone: str) -> list[Contact]:
        """Every contact with this phone, oldest first (phones are not unique)."""
        return [contact_from_row(row) for row in await self._fetch(CONTACTS_BY_PHONE, phone)]

    async def find_phone_opt_outs(self, phone: str, before: datetime) -> list[Contact]:
        """The contacts with this phone that opted out at or before ``before``,
        earliest opt-out first."""
        rows = await self._fetch(PHONE_OPT_OUTS, phone, before)
        return [contact_from_row(row) for row in rows]

    async def find_contact_by_phone(self, phone: str) -> Contact | None:
        """The oldest contact with this phone."""
        found = await self.find_contacts_by_phone(phone)
        return found[0] if found else None


def encode_upserts(upserts: Sequence[ContactUpsert], now: datetime) -> list[tuple[str, str]]:
    """(contact id, unit JSON) per upsert; ``ValueError`` for text PostgreSQL cannot store."""
    return [(upsert.id, encode_unit(upsert_unit(upsert, now))) for upsert in upserts]


async def upsert_contacts(connection: Any, encoded: Sequence[tuple[str, str]]) -> None:
    """Apply ``encode_upserts``'s units in the caller's transaction, in contact id order."""
    if encoded:
        ordered = sorted(encoded, key=lambda item: item[0])
        await connection.executemany(_UPSERT, [(unit,) for _, unit in ordered])
