"""Bulk run starts on PostgreSQL: ``Store.start_runs`` as one transaction.

The transaction first takes the advisory key of every contact of the batch (the key
every writer of a contact's rows holds, migration 0011), then the advisory lock of
every (contact, flow), the lock ``disparo_commit`` takes before creating a run, each
in one sorted order: it waits for a batch writing the same contacts only before it
holds anything, so neither waits for the other in a cycle. Under those locks the key and
open-run checks see every run a concurrent creation committed, so processes
starting the same keys at once start each key once. ``storage.bulk_starts`` decides
each request; the contacts of the requests that start are written when the batch
carries them (``storage.postgres_contacts``); the runs, START rows (carrying the
data of their ``run.started`` event, written at entry) and the refusals' events go
in with one ``unnest`` insert each.
A deadlock (with a writer outside that protocol) is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from engine.errors import StoreUnavailable
from storage.base import BulkStart, BulkStartResult
from storage.bulk_starts import plan_starts, starting_requests
from storage.postgres_contacts import upsert_contacts

MAX_TRIES = 5

# The contact keys first, then the run keys (held under them), each kind ascending.
_LOCK = (
    "SELECT pg_advisory_xact_lock(k) FROM ("
    "SELECT DISTINCT 0 AS kind, disparo_contact_key(c) AS k FROM unnest($1::text[]) AS c "
    "UNION SELECT 1, hashtextextended('disparo.run/' || c || '/' || $2::text, 0) "
    "FROM unnest($1::text[]) AS c ORDER BY kind, k) AS locks"
)
_STORED_KEYS = "SELECT idempotency_key FROM runs WHERE idempotency_key = ANY($1::text[])"
_BUSY = (
    "SELECT contact_id FROM runs WHERE flow = $1 AND contact_id = ANY($2::text[]) "
    "AND status IN ('active', 'waiting')"
)
_INSERT_RUNS = (
    "INSERT INTO runs (id, flow, flow_version, contact_id, step, status, vars, "
    "idempotency_key, version, step_seq, exclusive, created_at, updated_at) "
    "SELECT r.id, $4, $5, r.contact_id, NULL, 'active', '{}', r.key, 1, 0, $6, $7, $7 "
    "FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS r(id, contact_id, key, n) "
    "ORDER BY r.n"
)
_INSERT_STARTS = (
    "INSERT INTO due_work (kind, due_at, run_id, payload, created_at) "
    "SELECT 'start', $3, r.id, r.started::json, $3 "
    "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(id, started, n) ORDER BY r.n"
)
_INSERT_EVENTS = (
    "INSERT INTO events (contact_id, run_id, kind, at, data, dedupe_key) "
    "SELECT e.contact_id, e.run_id, e.kind, $6, e.data::json, e.dedupe_key "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) "
    "WITH ORDINALITY AS e(contact_id, run_id, kind, data, dedupe_key, n) ORDER BY e.n "
    "ON CONFLICT DO NOTHING"
)


async def start_runs(
    connection: Any, starts: BulkStart, contacts: Sequence[tuple[str, str]] = ()
) -> BulkStartResult:
    """Write ``starts`` in one transaction of ``connection`` (see ``Store.start_runs``;
    ``check_requests`` and ``encode_upserts`` of ``starts.contacts`` into ``contacts``
    first, outside: their errors are the caller's, not the driver's)."""
    if not starts.requests:
        return BulkStartResult()
    for attempt in range(1, MAX_TRIES + 1):
        try:
            async with connection.transaction():
                return await _write(connection, starts, contacts)
        except asyncpg.exceptions.DeadlockDetectedError as exc:
            if attempt == MAX_TRIES:
                raise StoreUnavailable(
                    f"starting {len(starts.requests)} runs of flow {starts.flow!r} kept "
                    "deadlocking with other writers; retry later"
                ) from exc
    raise AssertionError("unreachable")


async def _write(
    connection: Any, starts: BulkStart, upserts: Sequence[tuple[str, str]]
) -> BulkStartResult:
    requests = starts.requests
    contacts = [contact for contact, _, _ in requests]
    await connection.execute(_LOCK, contacts, starts.flow)
    stored = await connection.fetch(_STORED_KEYS, [key for _, key, _ in requests])
    busy: set[str] = set()
    if starts.exclusive:
        busy = {row[0] for row in await connection.fetch(_BUSY, starts.flow, contacts)}
    plan = plan_starts(starts, {row[0] for row in stored}, busy)
    if upserts:
        await upsert_contacts(connection, [upserts[i] for i in starting_requests(starts, plan)])
    if plan.runs:
        ids, run_contacts, keys, started = (list(column) for column in zip(*plan.runs, strict=True))
        await connection.execute(
            _INSERT_RUNS,
            ids,
            run_contacts,
            keys,
            starts.flow,
            starts.flow_version,
            starts.exclusive,
            starts.now,
        )
        await connection.execute(_INSERT_STARTS, ids, started, starts.now)
    if plan.events:
        columns = [list(column) for column in zip(*plan.events, strict=True)]
        await connection.execute(_INSERT_EVENTS, *columns, starts.now)
    return plan.result()
