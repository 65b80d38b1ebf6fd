"""One person's data on SQLite: every run of a contact (``Store.list_contact_runs``),
the messages of its newest runs (``Store.list_contact_messages``) and the contact's
erasure (``Store.erase_contact``), one write unit.

The erasure runs inside the group commit like every other write, so it is durable
when ``erase_contact`` returns; a failure anywhere undoes all of it. Its rows are
zeroed in the file as they are deleted (``PRAGMA secure_delete``, storage.
sqlite_schema); then the WAL, which still holds the pages as they were, is cut to
zero bytes (``Checkpointer.empty_wal``) before ``erase_contact`` returns. When
another connection is reading and the WAL cannot be emptied now, a warning says so
and the checkpoint thread empties it as soon as it can. Each statement
is served by an index (``runs_contact`` of migration 0005, then the indexes on
run, message and contact ids).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import datetime

from engine.models import Message, Run
from storage.columns import MESSAGE_COLUMNS, RUN_COLUMNS
from storage.erasure import DELETES, Erased, erase_statements, tally
from storage.sqlite_batch import GroupCommitConnection
from storage.sqlite_checkpoint import Checkpointer
from storage.sqlite_codec import message_from_row, run_from_row, to_us

_RUNS = f"SELECT {RUN_COLUMNS} FROM runs WHERE contact_id = ? ORDER BY created_at, id"
_CONTACT_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id IN (SELECT id FROM runs "
    "INDEXED BY runs_contact WHERE contact_id = ? ORDER BY created_at DESC, id DESC LIMIT ?) "
    "ORDER BY (SELECT r.created_at FROM runs AS r WHERE r.id = messages.run_id), run_id, "
    "created_at, rowid"
)
_STATEMENTS = erase_statements(":contact", ":now")
log = logging.getLogger("disparo.store")


class ContactDataMethods:
    """``Store.list_contact_runs``, ``Store.list_contact_messages`` and
    ``Store.erase_contact`` on the store's one connection."""

    path: str
    _checkpointer: Checkpointer | None  # None in memory: no file to empty

    def _ready(self) -> GroupCommitConnection:
        raise NotImplementedError  # SQLiteStore provides the open connection

    async def list_contact_runs(self, contact_id: str) -> list[Run]:
        """Every run of the contact, oldest first."""
        link = self._ready()
        rows = link.read(lambda: link.db.execute(_RUNS, (contact_id,)).fetchall())
        return [run_from_row(row) for row in rows]

    async def list_contact_messages(self, contact_id: str, *, runs: int) -> list[Message]:
        """The messages of the contact's newest ``runs`` runs, in one read."""
        link = self._ready()
        query = (contact_id, runs)
        rows = link.read(lambda: link.db.execute(_CONTACT_MESSAGES, query).fetchall())
        return [message_from_row(row) for row in rows]

    async def erase_contact(
        self, contact_id: str, *, keep_opt_out: bool, now: datetime
    ) -> Erased | None:
        """Delete the contact and everything kept about them (see the protocol)."""
        stamp = to_us(now)
        erased = await self._ready().write(lambda db: _erase(db, contact_id, keep_opt_out, stamp))
        checkpointer = self._checkpointer
        if erased is None or checkpointer is None:
            return erased
        if not await asyncio.wrap_future(checkpointer.empty_wal()):
            log.warning(
                "contact %s is erased, but copies of its data stay in %s-wal until "
                "the WAL can be emptied: another connection is reading the database; "
                "disparo tries again after its next writes",
                contact_id,
                self.path,
            )
        return erased


def _erase(db: sqlite3.Connection, contact_id: str, keep_opt_out: bool, now: int) -> Erased | None:
    row = db.execute("SELECT opted_out_at FROM contacts WHERE id = ?", (contact_id,)).fetchone()
    if row is None:
        return None
    params = {"contact": contact_id, "now": now}
    counts = {name: db.execute(_STATEMENTS[name], params).rowcount for name in DELETES}
    kept = keep_opt_out and row[0] is not None
    db.execute(_STATEMENTS["keep_opt_out" if kept else "contact"], params)
    return tally(counts, opt_out_kept=kept)
