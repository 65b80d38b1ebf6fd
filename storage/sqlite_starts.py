"""Bulk run starts on SQLite: the write unit of ``Store.start_runs``.

``start_runs`` is one write unit (one savepoint in the group-commit batch) for a
whole batch of requests: two reads find the keys already stored and the contacts
already in the flow, ``storage.bulk_starts`` decides each request, the contacts of
the requests that start are written when the batch carries them
(``storage.sqlite_contacts``), then ``executemany`` inserts write the runs, their
START rows (carrying the data of their ``run.started`` event, written at entry) and
the refusals' events. The unit holds SQLite's write lock from its reads to its
inserts, so nothing can start the same key or enter the same contact in between.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from storage.base import BulkStart, BulkStartResult
from storage.bulk_starts import check_requests, plan_starts, starting_requests
from storage.sqlite_codec import to_us
from storage.sqlite_contacts import upsert_contacts

_INSERT_RUN = (
    "INSERT INTO runs (id, flow, flow_version, contact_id, step, status, vars, "
    "idempotency_key, version, step_seq, exclusive, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, NULL, 'active', '{}', ?, 1, 0, ?, ?, ?)"
)
_INSERT_START = (
    "INSERT INTO due_work (kind, due_at, run_id, payload, created_at) VALUES ('start', ?, ?, ?, ?)"
)
_INSERT_EVENT = (
    "INSERT INTO events (contact_id, run_id, kind, data, dedupe_key, at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)

# Values per lookup statement: under SQLite's oldest bound of 999 parameters.
LOOKUP = 500


def start_runs(db: sqlite3.Connection, starts: BulkStart) -> BulkStartResult:
    """Write ``starts`` (see ``Store.start_runs``); runs inside the caller's savepoint."""
    check_requests(starts)
    requests = starts.requests
    if not requests:
        return BulkStartResult()
    stored_keys = found(
        db,
        "SELECT idempotency_key FROM runs WHERE idempotency_key IN ({})",
        (),
        [key for _, key, _ in requests],
    )
    busy: set[str] = set()
    if starts.exclusive:
        busy = found(
            db,
            "SELECT contact_id FROM runs WHERE flow = ? AND contact_id IN ({}) "
            "AND status IN ('active', 'waiting')",
            (starts.flow,),
            [contact for contact, _, _ in requests],
        )
    plan = plan_starts(starts, stored_keys, busy)
    now = to_us(starts.now)
    if starts.contacts:
        contacts = starts.contacts
        upsert_contacts(db, [contacts[i] for i in starting_requests(starts, plan)], now)
    flow, version, exclusive = starts.flow, starts.flow_version, int(starts.exclusive)
    db.executemany(
        _INSERT_RUN,
        [
            (run_id, flow, version, contact_id, key, exclusive, now, now)
            for run_id, contact_id, key, _ in plan.runs
        ],
    )
    db.executemany(
        _INSERT_START, [(now, run_id, started, now) for run_id, _, _, started in plan.runs]
    )
    if plan.events:
        db.executemany(_INSERT_EVENT, [(*event, now) for event in plan.events])
    return plan.result()


def found(db: sqlite3.Connection, sql: str, fixed: tuple[Any, ...], values: list[str]) -> set[str]:
    """The first column of ``sql`` (its ``IN ({})`` filled with ``values``), a set, asked
    ``LOOKUP`` values at a time (SQLite bounds the parameters of one statement)."""
    out: set[str] = set()
    for at in range(0, len(values), LOOKUP):
        part = values[at : at + LOOKUP]
        query = sql.format(",".join("?" * len(part)))
        out.update(row[0] for row in db.execute(query, (*fixed, *part)))
    return out
