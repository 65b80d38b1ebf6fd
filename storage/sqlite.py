"""``SQLiteStore``: the embedded default store (one machine, one SQLite file).

Design decided by measurement (``shared/research/performance-limits.md`` sections
3 and 7): plain ``sqlite3`` on the event-loop thread, WAL, ``synchronous=FULL`` by
default, ``busy_timeout`` 5 s, foreign keys on, and adaptive group commit
(``storage.sqlite_batch``): every store call that writes awaits a COMMIT shared
with every other writer that was ready in the same loop iteration, issued on a
commit thread so its fsync does not stall the loop. A call returns only once what
it wrote is durable.

Layout: ``sqlite_schema`` (DSN, PRAGMAs, migrations), ``sqlite_batch`` (the
group-commit connection and driver-error mapping), ``sqlite_codec`` (rows <->
records; timestamps are integer microseconds UTC), and the write units:
``sqlite_commit`` (runs, messages, contacts, events), ``sqlite_contacts``
(the contacts with a phone; contact upserts, one or a batch), ``sqlite_due`` (leases and
fences), ``sqlite_ingest`` (status reports and contact events), ``sqlite_triggers``
(the trigger schedule, cron firings, contact pages for fan-outs and sweeps),
``sqlite_provider_state`` (rate budgets and credentials providers share),
``sqlite_retention`` (the purge of what finished long ago) and
``sqlite_contact_data`` (deleting one contact and everything kept about them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from engine.errors import SchemaOutdated, StoreError, StoreUnavailable
from engine.models import (
    Contact,
    ContactEvent,
    ContactUpsert,
    DueWork,
    Event,
    Message,
    MessageStatus,
    Run,
    StatusReport,
)
from storage import sqlite_schema as schema
from storage.base import IngestOutcome, RunIgnores
from storage.changes import Commit, CommitResult
from storage.columns import CONTACT_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS, RUN_COLUMNS
from storage.run_message_reads import MessageState
from storage.sqlite_batch import BUSY_TIMEOUT_MS, GroupCommitConnection, StoreStats
from storage.sqlite_checkpoint import FALLBACK_AUTOCHECKPOINT_PAGES, Checkpointer
from storage.sqlite_codec import (
    contact_from_row,
    dumps,
    event_from_row,
    from_us,
    message_from_row,
    run_from_row,
    to_us,
)
from storage.sqlite_commit import OPEN_STATUSES_SQL, apply_commit, run_by_key
from storage.sqlite_contact_data import ContactDataMethods
from storage.sqlite_contacts import PhoneMethods, upsert_contact
from storage.sqlite_due import bring_sends_forward, claim, extend
from storage.sqlite_health import FileIdentity, WriteCheck
from storage.sqlite_ingest import (
    check_events,
    check_reports,
    ingest_contact_events,
    ingest_status_reports,
)
from storage.sqlite_outbound import OutboundMethods
from storage.sqlite_overview import OverviewMethods
from storage.sqlite_provider_state import ProviderStateMethods
from storage.sqlite_retention import RetentionMethods
from storage.sqlite_run_start import start_run
from storage.sqlite_triggers import TriggerMethods

__all__ = ["SQLiteStore", "StoreStats"]


class SQLiteStore(
    TriggerMethods,
    ProviderStateMethods,
    RetentionMethods,
    ContactDataMethods,
    OverviewMethods,
    OutboundMethods,
    PhoneMethods,
):
    """The ``storage.base.Store`` protocol on one SQLite database.

    ``dsn_or_path``: ``sqlite:///relative/path.db``, ``sqlite:////abs/path.db``, a
    plain path, or ``:memory:`` (``disparo simulate``; migrated on ``open``, since
    nobody else can reach it). The directory of the file is created if missing.
    ``synchronous="NORMAL"`` trades the last commits on power loss (not on a
    process crash) for speed; keys and fences still hold.

    ``stats`` counts commits and the units (store calls) they carried.
    """

    def __init__(self, dsn_or_path: str, *, synchronous: schema.Synchronous = "FULL") -> None:
        self.path = schema.database_path(dsn_or_path)
        self.where = str(self.path)
        self.synchronous: schema.Synchronous = synchronous
        self.stats = StoreStats()
        self._link: GroupCommitConnection | None = None
        self._checkpointer: Checkpointer | None = None
        self._open = False
        self._write_check = WriteCheck(self.path, None)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect and check the schema; ``SchemaOutdated`` when migrations are pending."""
        if self._open:
            return
        link = self._connection()
        try:
            if self.path == schema.MEMORY:
                link.read(schema.migrate, link.db)
            names = link.read(schema.pending, link.db)
            if names:
                raise SchemaOutdated(schema.outdated_message(self.path, names))
            newer = link.read(schema.unknown, link.db)
            if newer:
                raise StoreError(
                    f"the database at {self.path} was migrated by a newer disparo "
                    f"({', '.join(newer)}); upgrade disparo"
                )
        except BaseException:
            await self.close()
            raise
        if self.path != schema.MEMORY:
            self._write_check = WriteCheck(self.path, FileIdentity.of(self.path))
        self._open = True

    async def close(self) -> None:
        """Commit what is pending, then close; idempotent. Nothing stays scheduled."""
        link, self._link, self._open = self._link, None, False
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        if link is not None:
            await link.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations (``open`` is not needed first); return their names."""
        link = self._connection()
        await link.flush()
        return link.read(schema.migrate, link.db)

    async def pending_migrations(self) -> list[str]:
        link = self._connection()
        return link.read(schema.pending, link.db)

    async def ping(self) -> None:
        self._fetch_one("SELECT 1", ())

    async def health(self) -> None:
        """``ping``, and whether a write would be recorded (``storage.sqlite_health``)."""
        await self.ping()
        await self._write_check.check(self._ready())

    async def database_time(self) -> datetime | None:
        return None  # a file of one process: no other clock to compare with

    def _connection(self) -> GroupCommitConnection:
        if self._link is None:
            db = schema.connect(self.path, self.synchronous)
            nudge = None
            if self.path != schema.MEMORY:
                # WAL checkpoints run on their own thread (storage.sqlite_checkpoint).
                db.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_AUTOCHECKPOINT_PAGES}")
                self._checkpointer = Checkpointer(self.path, timeout_ms=BUSY_TIMEOUT_MS)
                nudge = self._checkpointer.nudge
            self._link = GroupCommitConnection(
                db, where=self.path, stats=self.stats, on_commit=nudge
            )
        return self._link

    def _ready(self) -> GroupCommitConnection:
        if not self._open or self._link is None:
            raise StoreUnavailable(f"the store for {self.path} is not open")
        return self._link

    def _fetch_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        link = self._ready()
        return link.read(_one, link.db, sql, params)

    def _fetch_all(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        link = self._ready()
        return link.read(_all, link.db, sql, params)

    # ------------------------------------------------------------------ contacts

    async def upsert_contact(self, upsert: ContactUpsert, now: datetime) -> Contact:
        """Create or update; ``None`` fields keep what is stored.

        ``context`` is merged key by key (a ``None`` value deletes the key) unless
        ``replace_context``, which stores it exactly as given.
        """
        stamp = to_us(now)
        return await self._ready().write(lambda db: upsert_contact(db, upsert, stamp))

    async def get_contact(self, contact_id: str) -> Contact | None:
        row = self._fetch_one(f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ?", (contact_id,))
        return None if row is None else contact_from_row(row)

    async def get_contacts(self, contact_ids: Sequence[str]) -> dict[str, Contact]:
        """The stored contacts among ``contact_ids``, in one query."""
        rows = self._fetch_all(
            f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE id IN (SELECT value FROM json_each(?))",
            (dumps(list(contact_ids)),),
        )
        contacts = (contact_from_row(row) for row in rows)
        return {contact.id: contact for contact in contacts}

    # ------------------------------------------------------------------ flows

    async def save_flow_version(self, flow: str, version: str, source: str) -> None:
        """Keep ``source`` under (flow, version); a version already saved is kept as is."""
        await self._ready().write(
            lambda db: db.execute(
                "INSERT INTO flow_versions (flow, version, source) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (flow, version, source),
            )
        )

    async def has_queued_status(self, message_id: str) -> bool:
        row = self._fetch_one(
            "SELECT 1 FROM due_work WHERE message_id = ? AND kind = 'status' LIMIT 1",
            (message_id,),
        )
        return row is not None

    async def get_flow_source(self, flow: str, version: str) -> str | None:
        row = self._fetch_one(
            "SELECT source FROM flow_versions WHERE flow = ? AND version = ?",
            (flow, version),
        )
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ runs, messages, events

    async def commit(self, commit: Commit) -> CommitResult:
        """Write ``commit`` atomically (see ``storage.base`` for the rules).

        A message change whose status may not move (``status_can_advance``) drops
        the status alone; the other fields it sets are written.
        """
        return await self._ready().write(lambda db: apply_commit(db, commit))

    async def start_run(
        self,
        upsert: ContactUpsert,
        *,
        key: str | None,
        flow: str,
        exclusive: bool,
        now: datetime,
        build: Callable[[Contact], Commit],
    ) -> CommitResult:
        """The contact and its run in one write unit (see ``Store.start_run``)."""
        stamp = to_us(now)
        return await self._ready().write(
            lambda db: start_run(db, upsert, key=key, now=stamp, build=build)
        )

    async def get_run(self, run_id: str) -> Run | None:
        row = self._fetch_one(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return None if row is None else run_from_row(row)

    async def get_run_by_key(self, idempotency_key: str) -> Run | None:
        link = self._ready()
        return link.read(run_by_key, link.db, idempotency_key)

    async def list_open_runs(self, contact_id: str) -> list[Run]:
        """The contact's active and waiting runs, oldest first."""
        rows = self._fetch_all(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE contact_id = ? "
            f"AND status IN {OPEN_STATUSES_SQL} ORDER BY created_at, id",
            (contact_id,),
        )
        return [run_from_row(row) for row in rows]

    async def get_message(self, message_id: str) -> Message | None:
        row = self._fetch_one(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        return None if row is None else message_from_row(row)

    async def list_run_messages(self, run_id: str) -> list[Message]:
        """The run's messages, oldest first."""
        rows = self._fetch_all(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = ? ORDER BY created_at, rowid",
            (run_id,),
        )
        return [message_from_row(row) for row in rows]

    async def run_has_message_in(
        self, run_id: str, statuses: Collection[MessageStatus], *, besides: str
    ) -> bool:
        row = self._fetch_one(
            "SELECT 1 FROM messages INDEXED BY messages_run WHERE run_id = ? AND id != ? "
            "AND status IN (SELECT value FROM json_each(?)) LIMIT 1",
            (run_id, besides, dumps([str(status) for status in statuses])),
        )
        return row is not None

    async def latest_message_before(self, run_id: str, step_seq: int) -> MessageState | None:
        row = self._fetch_one(
            "SELECT id, step_seq, status FROM messages INDEXED BY messages_run "
            "WHERE run_id = ? AND step_seq < ? ORDER BY step_seq DESC, created_at, rowid LIMIT 1",
            (run_id, step_seq),
        )
        return None if row is None else MessageState(row[0], row[1], MessageStatus(row[2]))

    async def list_queued_run_messages(self, run_id: str) -> list[Message]:
        rows = self._fetch_all(
            f"SELECT {MESSAGE_COLUMNS} FROM messages INDEXED BY messages_run "
            "WHERE run_id = ? AND status = 'queued' ORDER BY created_at, rowid",
            (run_id,),
        )
        return [message_from_row(row) for row in rows]

    async def list_ambiguous_messages(self, *, limit: int) -> list[Message]:
        rows = self._fetch_all(
            f"SELECT {MESSAGE_COLUMNS} FROM messages INDEXED BY messages_ambiguous "
            "WHERE status = 'ambiguous' ORDER BY created_at, id LIMIT ?",
            (limit,),
        )
        return [message_from_row(row) for row in rows]

    async def find_message(
        self,
        provider: str,
        *,
        provider_message_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Message | None:
        """By (provider, provider id), else by idempotency key (unique across providers)."""
        row = None
        if provider_message_id is not None:
            row = self._fetch_one(
                f"SELECT {MESSAGE_COLUMNS} FROM messages "
                "WHERE provider = ? AND provider_message_id = ?",
                (provider, provider_message_id),
            )
        if row is None and idempotency_key is not None:
            row = self._fetch_one(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE idempotency_key = ?",
                (idempotency_key,),
            )
        return None if row is None else message_from_row(row)

    async def list_events(
        self,
        *,
        contact_id: str | None = None,
        run_id: str | None = None,
        kind_prefix: str | None = None,
        limit: int = 200,
    ) -> list[Event]:
        """Events newest first (by append order), filtered by every argument given."""
        where: list[str] = []
        params: list[Any] = []
        if contact_id is not None:
            where.append("contact_id = ?")
            params.append(contact_id)
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if kind_prefix:
            where.append("substr(kind, 1, ?) = ?")
            params += [len(kind_prefix), kind_prefix]
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._fetch_all(
            f"SELECT {EVENT_COLUMNS} FROM events {clause}ORDER BY id DESC LIMIT ?",
            (*params, max(0, limit)),
        )
        return [event_from_row(row) for row in rows]

    # ------------------------------------------------------------------ due work

    async def claim_due_work(
        self, *, owner: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[DueWork]:
        """Claim up to ``limit`` rows due at ``now`` that nobody holds: those of runs under
        way first, then the work that starts runs (START rows, fan-out and sweep
        chunks), each oldest due first.

        Each claimed row gets ``owner``, ``lease_until = now + lease_seconds`` and
        its fence + 1; the lease is durable before this returns.
        """
        if limit <= 0:
            return []
        stamp = to_us(now)
        # An idle poll stays a read: no write lock taken, nothing for other nodes to wait on.
        claimable = self._fetch_one(
            "SELECT 1 FROM due_work WHERE due_at <= ? AND (lease_until IS NULL OR lease_until < ?) "
            "LIMIT 1",
            (stamp, stamp),
        )
        if claimable is None:
            return []
        until = to_us(now + timedelta(seconds=lease_seconds))
        return await self._ready().write(lambda db: claim(db, owner, stamp, until, limit))

    async def extend_leases(
        self, *, owner: str, work: Sequence[DueWork], until: datetime
    ) -> set[int]:
        """Move ``lease_until`` of the rows ``owner`` still holds at the same fence."""
        if not work:
            return set()
        stamp = to_us(until)
        return await self._ready().write(lambda db: extend(db, owner, work, stamp))

    async def bring_sends_forward(self, run_id: str, now: datetime) -> int:
        stamp = to_us(now)
        return await self._ready().write(lambda db: bring_sends_forward(db, run_id, stamp))

    async def next_due_at(self) -> datetime | None:
        """The earliest moment a row becomes claimable (a lease expires 1 µs after it ends)."""
        row = self._fetch_one(
            "SELECT min(t) FROM ("
            "SELECT * FROM (SELECT due_at AS t FROM due_work WHERE lease_until IS NULL "
            "ORDER BY due_at LIMIT 1) "
            "UNION ALL SELECT min(max(due_at, lease_until + 1)) FROM due_work "
            "WHERE lease_until IS NOT NULL)",
            (),
        )
        return None if row is None or row[0] is None else from_us(row[0])

    # ------------------------------------------------------------------ what comes in

    async def ingest_status_reports(
        self,
        reports: Sequence[StatusReport],
        now: datetime,
        *,
        run_ignores: RunIgnores | None = None,
    ) -> list[IngestOutcome]:
        """Queue each report as STATUS work for its message, or keep it pending.

        One transaction for the batch, durable before this returns. Per report:
        ``duplicate`` (its dedupe key was seen), ``queued`` (an event
        ``status.<status>`` is logged and a STATUS row is due ``now``), ``applied``
        (logged likewise, and ``run_ignores`` said the run ignores it: the message's
        status moved here, see the protocol) or ``pending`` (no such message yet;
        applied when its provider id is recorded). A report with neither a
        provider id nor an idempotency key is a ``ValueError`` (nothing written).
        """
        check_reports(reports)
        if not reports:
            return []
        stamp = to_us(now)
        return await self._ready().write(
            lambda db: ingest_status_reports(db, reports, stamp, run_ignores)
        )

    async def ingest_contact_events(
        self, events: Sequence[ContactEvent], now: datetime
    ) -> list[IngestOutcome]:
        """Record contact facts and queue INBOUND work for each open run (see the protocol).

        Every event needs ``contact_id`` (``ValueError`` otherwise, nothing
        written). Attendance and opt-out changes apply only if no newer one was
        recorded; a repeated opt-out keeps the first ``opted_out_at``.
        """
        check_events(events)
        if not events:
            return []
        stamp = to_us(now)
        return await self._ready().write(lambda db: ingest_contact_events(db, events, stamp))


# ---------------------------------------------------------------- queries


def _one(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = db.execute(sql, params).fetchone()
    return row


def _all(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()
