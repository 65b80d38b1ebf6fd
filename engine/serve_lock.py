"""Telling an operator that a second `disparo serve` shares a SQLite file.

SQLite serves one process: two engines on one file stay correct (leases, fences and
the file's single writer hold), but they take turns at every write, and an operator
who started the second one by mistake (a forgotten terminal, a unit started twice)
gets no word of it. Each `serve` holds an advisory lock on ``<file>.serve-lock``
for as long as it runs; one that finds the lock held says so at WARNING and goes
on: a restart whose new process starts before the old one ends is normal.
PostgreSQL is the store for several engines; it needs no such lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from engine.stores import sqlite_file

log = logging.getLogger("disparo.serve")


def lock_path(storage: str) -> Path | None:
    """The lock file of a SQLite ``storage``; ``None`` for PostgreSQL or memory."""
    path = sqlite_file(storage)
    return None if path is None else Path(path).with_name(Path(path).name + ".serve-lock")


@contextlib.asynccontextmanager
async def one_server_per_file(storage: str) -> AsyncIterator[bool]:
    """Hold the SQLite file's serve lock while the block runs; yields False (after
    a warning) when another process holds it already."""
    lock = lock_path(storage)
    if lock is None:
        yield True
        return
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield True  # the store itself reports an unwritable directory, pointedly
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
            log.warning(
                "another disparo serve is running on %s (fine while a restart overlaps); "
                "SQLite serves one process, so two take turns at every write: stop one, "
                "or move to PostgreSQL to run several engines (README: Running several "
                "engines)",
                sqlite_file(storage),
            )
        yield alone
    finally:
        os.close(fd)  # releases the lock
