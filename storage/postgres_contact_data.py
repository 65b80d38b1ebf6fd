"""One person's data on PostgreSQL: every run of a contact (``Store.list_contact_runs``),
the messages of its newest runs (``Store.list_contact_messages``) and the contact's
erasure (``Store.erase_contact``), one transaction.

The contact's advisory key (migration 0011: every writer of a contact's rows holds
it) is taken first, then the contact row (``FOR UPDATE``), so a start or an event
for the same contact waits for the erasure and then finds the contact gone (or
bare), and a batch committing the contact's runs finishes before the erasure
deletes them instead of waiting for the contact row the erasure holds. A
status report for one of the contact's messages may still be queued between the
delete of the due work and the delete of the messages: the delete then breaks the
foreign key of ``due_work.message_id``, the transaction rolls back and is taken
again at once, and this time deletes that report's row too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from engine.models import Message, Run
from storage.columns import MESSAGE_COLUMNS, RUN_COLUMNS
from storage.erasure import DELETES, Erased, erase_statements, tally
from storage.postgres_codec import message_from_row, run_from_row
from storage.postgres_pool import deleted, retry_foreign_key_races

T = TypeVar("T")

_RUNS = f"SELECT {RUN_COLUMNS} FROM runs WHERE contact_id = $1 ORDER BY created_at, id"
_CONTACT_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id IN (SELECT id FROM runs "
    "WHERE contact_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2) "
    "ORDER BY (SELECT r.created_at FROM runs AS r WHERE r.id = messages.run_id), run_id, "
    "created_at, seq"
)
_STATEMENTS = erase_statements("$1", "$2")
# An erasure that lost the race described above is taken again this many times.
_ATTEMPTS = 3


class ContactDataMethods:
    """``Store.list_contact_runs``, ``Store.list_contact_messages`` and
    ``Store.erase_contact``; ``PostgresStore`` provides the queries and the transaction."""

    async def _in_transaction(self, work: Callable[[Any], Awaitable[T]]) -> T:
        raise NotImplementedError  # PostgresStore runs it on a pool connection

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def list_contact_runs(self, contact_id: str) -> list[Run]:
        """Every run of the contact, oldest first."""
        return [run_from_row(row) for row in await self._fetch(_RUNS, contact_id)]

    async def list_contact_messages(self, contact_id: str, *, runs: int) -> list[Message]:
        """The messages of the contact's newest ``runs`` runs, in one read."""
        rows = await self._fetch(_CONTACT_MESSAGES, contact_id, runs)
        return [message_from_row(row) for row in rows]

    async def erase_contact(
        self, contact_id: str, *, keep_opt_out: bool, now: datetime
    ) -> Erased | None:
        """Delete the contact and everything kept about them (see the protocol)."""

        async def work(connection: Any) -> Erased | None:
            return await _erase(connection, contact_id, keep_opt_out, now)

        return await retry_foreign_key_races(lambda: self._in_transaction(work), tries=_ATTEMPTS)


async def _erase(
    connection: Any, contact_id: str, keep_opt_out: bool, now: datetime
) -> Erased | None:
    await connection.execute("SELECT pg_advisory_xact_lock(disparo_contact_key($1))", contact_id)
    row = await connection.fetchrow(
        "SELECT opted_out_at FROM contacts WHERE id = $1 FOR UPDATE", contact_id
    )
    if row is None:
        return None
    counts = {name: await deleted(connection, _STATEMENTS[name], contact_id) for name in DELETES}
    kept = keep_opt_out and row["opted_out_at"] is not None
    if kept:
        await connection.execute(_STATEMENTS["keep_opt_out"], contact_id, now)
    else:
        await connection.execute(_STATEMENTS["contact"], contact_id)
    return tally(counts, opt_out_kept=kept)
