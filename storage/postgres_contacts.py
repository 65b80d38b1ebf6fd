"""Contact upserts in bulk on PostgreSQL: the contacts a ``Store.start_runs`` carries.

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

from engine.models import ContactUpsert
from storage.postgres_codec import encode_unit, upsert_unit

_UPSERT = "SELECT disparo_upsert_contact($1::jsonb)"


def encode_upserts(upserts: Sequence[ContactUpsert], now: datetime) -> list[tuple[str, str]]:
    """(contact id, unit JSON) per upsert; ``ValueError`` for text PostgreSQL cannot store."""
    return [(upsert.id, encode_unit(upsert_unit(upsert, now))) for upsert in upserts]


async def upsert_contacts(connection: Any, encoded: Sequence[tuple[str, str]]) -> None:
    """Apply ``encode_upserts``'s units in the caller's transaction, in contact id order."""
    if encoded:
        ordered = sorted(encoded, key=lambda item: item[0])
        await connection.executemany(_UPSERT, [(unit,) for _, unit in ordered])
