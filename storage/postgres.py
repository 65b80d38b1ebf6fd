"""``PostgresStore``: the shared store for more than one disparo process (asyncpg).

Any number of ``disparo serve`` processes on any number of hosts share one database.
Due work is claimed with ``FOR UPDATE SKIP LOCKED`` under a lease and a fence; a
commit that completes a claimed row locks it and checks the fence first, so a
process whose lease was taken over can never write over the newer claim.

Writes are group-committed (``storage.postgres_batch``): the units ready in one loop
iteration go as one ``disparo_apply`` call (a subtransaction each, applied by the
PL/pgSQL of ``migrations/postgres``); point reads by id are coalesced the same way.

Layout: ``postgres_pool`` (DSN, pool, reconnection, driver-error mapping),
``postgres_schema`` (migrations), ``postgres_batch`` (group commit, read
coalescing), ``postgres_codec`` (rows <-> records, write units),
``postgres_triggers`` (the trigger schedule and the contact pages sweeps walk),
``postgres_provider_state`` (rate budgets and credentials providers share),
``postgres_retention`` (the purge of what finished long ago),
``postgres_contacts`` (the contacts with a phone; bulk upserts) and
``postgres_contact_data`` (deleting one contact and everything kept about them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from engine.errors import Conflict, SchemaOutdated, StoreError, StoreUnavailable
from engine.models import (
    Contact,
    ContactEvent,
    ContactUpsert,
    Event,
    Message,
    MessageStatus,
    Run,
    StatusReport,
)
from storage import postgres_schema as schema
from storage.base import IngestOutcome, RunIgnores
from storage.changes import Commit, CommitResult
from storage.columns import (
    CONTACT_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    RUN_COLUMNS,
)
from storage.postgres_batch import BatchStats, GroupCommitter, Lookups
from storage.postgres_codec import (
    commit_unit,
    contact_events_unit,
    contact_from_row,
    event_from_row,
    message_from_row,
    run_from_row,
    status_reports_unit,
    upsert_unit,
)
from storage.postgres_contact_data import ContactDataMethods
from storage.postgres_contacts import PhoneMethods
from storage.postgres_due import DueWorkMethods
from storage.postgres_messages import RunMessageMethods
from storage.postgres_overview import OverviewMethods
from storage.postgres_pool import Pool
from storage.postgres_provider_state import ProviderStateMethods
from storage.postgres_retention import RetentionMethods
from storage.postgres_triggers import TriggerMethods
from storage.sqlite_ingest import check_events, check_reports

__all__ = ["BatchStats", "PostgresStore"]

T = TypeVar("T")

_OPEN = "status IN ('active', 'waiting')"
_LEFT = "status IN ('sent', 'delivered', 'read')"


class PostgresStore(
    TriggerMethods,
    ProviderStateMethods,
    RetentionMethods,
    ContactDataMethods,
    OverviewMethods,
    PhoneMethods,
    RunMessageMethods,
    DueWorkMethods,
):
    """The ``storage.base.Store`` protocol on one PostgreSQL database.

    ``dsn``: ``postgresql://user[:password]@host[:port]/database``; other query
    parameters are passed to the server as settings (``?search_path=tenant_a``).
    ``max_connections`` bounds the pool. ``stats`` counts batches and the units
    they carried.
    """

    def __init__(self, dsn: str, *, min_connections: int = 0, max_connections: int = 10) -> None:
        self._pool = Pool(dsn, min_size=min_connections, max_size=max_connections)
        self.where = self._pool.where
        self.stats = BatchStats()
        self._writer = GroupCommitter(self._pool, self.stats)
        self._contacts = Lookups(
            self._pool, f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ANY($1::text[])"
        )
        self._runs = Lookups(
            self._pool, f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ANY($1::text[])"
        )
        self._messages = Lookups(
            self._pool, f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ANY($1::text[])"
        )
        self._open = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect and check the schema; ``SchemaOutdated`` when migrations are pending."""
        if self._open:
            return
        try:
            names = await self._with_schema(schema.pending)
            if names:
                raise SchemaOutdated(schema.outdated_message(self.where, names))
            newer = await self._with_connection(schema.unknown)
            if newer:
                raise StoreError(
                    f"the PostgreSQL database {self.where} was migrated by a newer disparo "
                    f"({', '.join(newer)}); upgrade disparo"
                )
        except BaseException:
            await self.close()
            raise
        self._open = True

    async def close(self) -> None:
        """Finish the writes in flight, then close every connection; idempotent."""
        self._open = False
        if self._closed:
            return
        self._closed = True
        await self._writer.drain()
        for lookups in (self._contacts, self._runs, self._messages):
            await lookups.drain()
        await self._pool.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations (``open`` is not needed first); return their names."""
        return await self._with_schema(schema.migrate)

    async def pending_migrations(self) -> list[str]:
        return await self._with_schema(schema.pending)

    async def ping(self) -> None:
        self._ready()
        await self._pool.fetchval("SELECT 1")

    async def health(self) -> None:
        self._ready()
        await self._pool.check_writable()

    async def database_time(self) -> datetime | None:
        self._ready()
        moment: datetime = await self._pool.fetchval("SELECT clock_timestamp()")
        return moment

    async def _with_schema(self, work: Callable[[schema.Connection], Awaitable[T]]) -> T:
        return await self._pool.on_connection(schema.in_schema(self.where, work))

    async def _with_connection(self, work: Callable[[schema.Connection], Awaitable[T]]) -> T:
        return await self._pool.on_connection(work)

    def _ready(self) -> None:
        if not self._open:
            raise StoreUnavailable(f"the store for {self.where} is not open")

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self._ready()
        return await self._pool.fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self._ready()
        return await self._pool.fetchrow(sql, *args)

    async def _apply(self, unit: dict[str, Any]) -> Any:
        self._ready()
        return await self._writer.apply(unit)

    async def _in_transaction(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` inside one transaction on a pool connection (no retry)."""
        self._ready()

        async def transaction(connection: Any) -> T:
            async with connection.transaction():
                return await work(connection)

        return await self._pool.on_connection(transaction)

    # ------------------------------------------------------------------ contacts

    async def upsert_contact(self, upsert: ContactUpsert, now: datetime) -> Contact:
        """Create or update; ``None`` fields keep what is stored.

        ``context`` is merged key by key (a ``None`` value deletes the key) unless
        ``replace_context``, which stores it exactly as given.
        """
        return contact_from_row(await self._apply(upsert_unit(upsert, now)))

    async def get_contact(self, contact_id: str) -> Contact | None:
        self._ready()
        row = await self._contacts.get(contact_id)
        return None if row is None else contact_from_row(row)

    async def get_contacts(self, contact_ids: Sequence[str]) -> dict[str, Contact]:
        """The stored contacts among ``contact_ids``, in one query."""
        if not contact_ids:
            self._ready()
            return {}
        rows = await self._fetch(
            f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ANY($1::text[])",
            list(contact_ids),
        )
        contacts = (contact_from_row(row) for row in rows)
        return {contact.id: contact for contact in contacts}

    # ------------------------------------------------------------------ flows

    async def save_flow_version(self, flow: str, version: str, source: str) -> None:
        """Keep ``source`` under (flow, version); a version already saved is kept as is."""
        self._ready()
        await self._pool.write(
            "INSERT INTO flow_versions (flow, version, source) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            flow,
            version,
            source,
        )

    async def get_flow_source(self, flow: str, version: str) -> str | None:
        row = await self._fetchrow(
            "SELECT source FROM flow_versions WHERE flow = $1 AND version = $2", flow, version
        )
        return None if row is None else str(row["source"])

    # ------------------------------------------------------------------ runs, messages, events

    async def commit(self, commit: Commit) -> CommitResult:
        """Write ``commit`` atomically (see ``storage.base`` for the rules).

        A message change whose status may not move (``status_can_advance``) drops
        the status alone; the other fields it sets are written.
        """
        result = await self._apply(commit_unit(commit))
        run = result.get("run")
        applied = result.get("applied") or {}
        return CommitResult(
            run=None if run is None else run_from_row(run),
            created=bool(result.get("created")),
            status_applied={key: MessageStatus(value) for key, value in applied.items()},
        )

    async def get_run(self, run_id: str) -> Run | None:
        self._ready()
        row = await self._runs.get(run_id)
        return None if row is None else run_from_row(row)

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
        """See ``Store.start_run``. Here the contact and the run are two transactions,
        each batched with other callers': the checks come first, so a replayed or
        refused start writes nothing; a start racing another one on the same key or
        open run is still decided by ``commit``, after its contact was written."""
        if key is not None:
            existing = await self.get_run_by_key(key)
            if existing is not None:
                return CommitResult(run=existing, created=False)
        if exclusive and any(run.flow == flow for run in await self.list_open_runs(upsert.id)):
            raise Conflict(f"contact {upsert.id} already has an open run of flow {flow!r}")
        commit = build(await self.upsert_contact(upsert, now))
        if commit.new_run is None:
            raise ValueError("Store.start_run: the commit built for the contact creates no run")
        return await self.commit(commit)

    async def get_run_by_key(self, idempotency_key: str) -> Run | None:
        row = await self._fetchrow(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE idempotency_key = $1", idempotency_key
        )
        return None if row is None else run_from_row(row)

    async def list_open_runs(self, contact_id: str) -> list[Run]:
        """The contact's active and waiting runs, oldest first."""
        rows = await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE contact_id = $1 AND {_OPEN} "
            "ORDER BY created_at, id",
            contact_id,
        )
        return [run_from_row(row) for row in rows]

    async def get_message(self, message_id: str) -> Message | None:
        self._ready()
        row = await self._messages.get(message_id)
        return None if row is None else message_from_row(row)

    async def list_ambiguous_messages(self, *, limit: int) -> list[Message]:
        rows = await self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'ambiguous' "
            "ORDER BY created_at, id LIMIT $1",
            limit,
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
            row = await self._fetchrow(
                f"SELECT {MESSAGE_COLUMNS} FROM messages "
                "WHERE provider = $1 AND provider_message_id = $2",
                provider,
                provider_message_id,
            )
        if row is None and idempotency_key is not None:
            row = await self._fetchrow(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE idempotency_key = $1",
                idempotency_key,
            )
        if row is None:
            self._ready()
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
            params.append(contact_id)
            where.append(f"contact_id = ${len(params)}")
        if run_id is not None:
            params.append(run_id)
            where.append(f"run_id = ${len(params)}")
        if kind_prefix:
            params.append(kind_prefix)
            where.append(f"starts_with(kind, ${len(params)})")
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        params.append(max(0, limit))
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events {clause}ORDER BY id DESC LIMIT ${len(params)}",
            *params,
        )
        return [event_from_row(row) for row in rows]

    async def count_outbound(self, contact_id: str, since: datetime) -> int:
        """Messages to the contact that are ``sending``, or that left (sent or beyond)
        at or after ``since`` (``disparo_check_outbound`` counts the same)."""
        row = await self._fetchrow(
            f"SELECT (SELECT count(*) FROM messages WHERE contact_id = $1 AND left_at >= $2 "
            f"AND {_LEFT}) + (SELECT count(*) FROM messages WHERE contact_id = $1 "
            "AND status = 'sending') AS n",
            contact_id,
            since,
        )
        return int(row["n"]) if row is not None else 0

    async def last_outbound_at(
        self, contact_id: str, *, exclude_run: str | None = None
    ) -> datetime | None:
        """A ``sending`` message counts from its ``sending`` commit (``updated_at``)."""
        row = await self._fetchrow(
            "SELECT greatest((SELECT max(left_at) FROM messages WHERE contact_id = $1 "
            f"AND run_id IS DISTINCT FROM $2 AND {_LEFT}), (SELECT max(updated_at) "
            "FROM messages WHERE contact_id = $1 AND run_id IS DISTINCT FROM $2 "
            "AND status = 'sending')) AS at",
            contact_id,
            exclude_run,
        )
        return None if row is None else row["at"]

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
        ``status.<status>`` is logged and a STATUS row is due ``now``) or
        ``pending`` (no such message yet; applied when its provider id is recorded).
        A report with neither a provider id nor an idempotency key is a
        ``ValueError`` (nothing written).

        ``run_ignores`` is never called: the batch runs as one server-side function
        call, with no round trip to ask the engine, so every report is queued.
        """
        check_reports(reports)
        if not reports:
            self._ready()
            return []
        outcomes: list[IngestOutcome] = await self._apply(status_reports_unit(reports, now))
        return outcomes

    async def ingest_contact_events(
        self, events: Sequence[ContactEvent], now: datetime
    ) -> list[IngestOutcome]:
        """Record contact facts and queue INBOUND work for each open run (one transaction).

        ``duplicate`` when the event's dedupe key was seen, ``unknown_contact`` when no
        such contact exists; ``ValueError`` (nothing written) for an event without a
        contact id.
        """
        check_events(events)
        if not events:
            self._ready()
            return []
        outcomes: list[IngestOutcome] = await self._apply(contact_events_unit(events, now))
        return outcomes
