"""The write unit of ``Store.start_run`` on SQLite: one run and its contact.

It checks the key, writes the contact, builds the run's commit from the contact
as stored and applies it, all in one unit (one savepoint of the group-commit
batch): a refusal (``Conflict`` from the one-open-run rule) rolls the contact
back with the rest, and a key already used writes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from engine.models import Contact, ContactUpsert
from storage.changes import Commit, CommitResult
from storage.sqlite_commit import apply_commit, run_by_key
from storage.sqlite_contacts import upsert_contact


def start_run(
    db: sqlite3.Connection,
    upsert: ContactUpsert,
    *,
    key: str | None,
    now: int,
    build: Callable[[Contact], Commit],
) -> CommitResult:
    if key is not None:
        existing = run_by_key(db, key)
        if existing is not None:
            return CommitResult(run=existing, created=False)
    commit = build(upsert_contact(db, upsert, now))
    if commit.new_run is None:
        raise ValueError("Store.start_run: the commit built for the contact creates no run")
    return apply_commit(db, commit)
