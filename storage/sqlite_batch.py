"""One SQLite connection on the event-loop thread, with adaptive group commit.

Measured design (performance-limits.md sections 3 and 7): plain ``sqlite3`` on the
loop thread, and one COMMIT (one fsync) shared by every writer that became ready
in the same loop iteration.

- A write unit is a synchronous function of the connection. It runs inside a
  SAVEPOINT of the batch transaction, which the first unit of a batch opens with
  ``BEGIN IMMEDIATE`` (so the write lock is taken up front, never upgraded).
- Opening a batch schedules ``_finish`` with ``loop.call_soon``: it runs after every
  callback that is already ready, so every writer that is runnable now joins the
  batch, and then issues the one COMMIT.
- The COMMIT runs on a thread of its own. Writing the batch's pages to the WAL and
  fsyncing it took about 1 ms per batch in ``bench/dispatch.py``; ``sqlite3``
  releases the GIL meanwhile, so the loop goes on parsing webhooks, rendering and
  sending. No unit starts while a COMMIT is in flight: writers that become ready
  then wait for it and form the next batch, so there is still one transaction at
  a time and a writer is resumed only once its batch is durable.
- A unit that raises is rolled back to its own savepoint; the others are
  unaffected. Its caller still waits for the batch outcome, so an error decided on
  state that then failed to commit surfaces as ``StoreUnavailable``, not as a
  domain error about rows that never existed.
- If the COMMIT fails (disk full, I/O error), the transaction is rolled back and
  every unit of the batch gets ``StoreUnavailable``: nothing is half-written.
- Another process holding the write lock is waited for without blocking the loop
  (async back-off, for as long as ``busy_timeout``).

Reads run synchronously on the same connection, so they see the writes of the
batch about to commit (read-your-writes for optimistic concurrency). A read made
while a COMMIT is in flight waits for it inside SQLite (the connection is
serialized), as it waited for the inline COMMIT before. No asyncio task is ever
created; ``close`` commits the open batch, waits for its COMMIT and stops the
commit thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from engine.errors import (
    Conflict,
    DisparoError,
    NotFound,
    SchemaOutdated,
    StoreError,
    StoreUnavailable,
)

T = TypeVar("T")
P = ParamSpec("P")

BUSY_TIMEOUT_MS = 5000

# Primary result codes (https://www.sqlite.org/rescode.html).
_BUSY, _LOCKED, _NOMEM, _READONLY, _IOERR, _CORRUPT = 5, 6, 7, 8, 10, 11
_FULL, _CANTOPEN, _PROTOCOL, _CONSTRAINT, _NOTADB = 13, 14, 15, 19, 26
_CONSTRAINT_FOREIGNKEY = 787


@dataclass(slots=True)
class StoreStats:
    """Counters of the write path (exported by the engine's /metrics, printed by bench/).

    ``units / commits`` is the group-commit factor: how many store calls shared
    one fsync.
    """

    commits: int = 0  # COMMITs that succeeded
    units: int = 0  # write units (store calls) those COMMITs made durable
    largest_batch: int = 0  # most units one COMMIT carried
    failed_units: int = 0  # units rolled back to their savepoint (their caller got the error)
    failed_commits: int = 0  # batches lost to a failed COMMIT (every unit got StoreUnavailable)
    lock_waits: int = 0  # times a batch waited for another process's write lock

    @property
    def units_per_commit(self) -> float:
        return self.units / self.commits if self.commits else 0.0


def translate(exc: sqlite3.Error, where: str) -> DisparoError:
    """The domain error for a driver error; ``where`` names the database for operators."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError) or primary == _CONSTRAINT:
        if code == _CONSTRAINT_FOREIGNKEY or "FOREIGN KEY" in text:
            return NotFound(f"a change refers to a row that does not exist ({text})")
        return Conflict(f"a change conflicts with what is stored ({text})")
    if primary in (_BUSY, _LOCKED) or "locked" in text:
        return StoreUnavailable(
            f"the database at {where} is locked by another writer for too long; retry later"
        )
    if primary == _FULL or "full" in text:
        return StoreUnavailable(
            f"the disk holding the database at {where} is full; free space, then retry"
        )
    if primary in (_IOERR, _PROTOCOL, _NOMEM) or "I/O" in text:
        return StoreUnavailable(f"reading or writing the database at {where} failed ({text})")
    if primary == _CANTOPEN or "unable to open" in text:
        return StoreUnavailable(
            f"cannot open the database at {where}; check that the path exists and is writable"
        )
    if primary == _READONLY:
        return StoreUnavailable(f"the database at {where} is read-only; check its permissions")
    if primary in (_CORRUPT, _NOTADB):
        return StoreUnavailable(f"the file at {where} is not a usable SQLite database ({text})")
    if "no such table" in text or "no such column" in text:
        return SchemaOutdated(
            f"the database at {where} is missing schema ({text}); run `disparo migrate`"
        )
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        return StoreUnavailable(f"the store for {where} is closed")
    return StoreError(f"the database at {where} failed: {text}")


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_BUSY, _LOCKED)


class _Batch:
    __slots__ = ("failure", "handle", "units", "waiters")

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[None]] = []
        self.units = 0
        self.failure: DisparoError | None = None  # set when SQLite dropped the whole transaction
        self.handle: asyncio.Handle | None = None


class GroupCommitConnection:
    """The store's only connection: synchronous reads, group-committed write units."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        where: str,
        stats: StoreStats,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._db: sqlite3.Connection | None = db
        self._on_commit = on_commit  # told after every successful COMMIT
        self._where = where
        self._batch: _Batch | None = None
        self._opening: asyncio.Future[None] | None = None
        # Set while a batch's COMMIT runs on the commit thread; no unit starts until then.
        self._committing: asyncio.Future[None] | None = None
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="disparo-sqlite-commit")
        self._lost: str | None = None  # why the connection was dropped, if it was
        self.stats = stats
        # Why the latest write could not be made durable (read-only file, full disk),
        # until a write goes through again: what ``GET /healthz`` reports.
        self.write_failure: StoreUnavailable | None = None

    @property
    def db(self) -> sqlite3.Connection:
        """The connection for synchronous work outside a batch (migrations)."""
        if self._db is None:
            raise StoreUnavailable(self._lost or f"the store for {self._where} is closed")
        return self._db

    def read(self, query: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``query(*args)`` now; driver errors become domain errors."""
        try:
            return query(*args, **kwargs)
        except sqlite3.Error as exc:
            raise translate(exc, self._where) from exc

    async def write(self, unit: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``unit`` in the current batch and return once its batch is durable.

        The unit runs synchronously (no other coroutine interleaves with it). If it
        raises, only its own changes are rolled back and the error reaches this
        caller once the batch has committed. If the batch fails, every caller of the
        batch gets ``StoreUnavailable``.
        """
        try:
            result = await self._write(unit)
        except StoreUnavailable as exc:
            self.write_failure = exc
            raise
        self.write_failure = None
        return result

    async def _write(self, unit: Callable[[sqlite3.Connection], T]) -> T:
        batch = await self._current_batch()
        db = self.db
        try:
            db.execute("SAVEPOINT unit")
        except sqlite3.Error as exc:
            raise translate(exc, self._where) from exc
        error: Exception | None = None
        try:
            result = unit(db)
            db.execute("RELEASE unit")
        except sqlite3.Error as exc:
            error = translate(exc, self._where)
            error.__cause__ = exc
        except Exception as exc:
            error = exc
        except BaseException:
            self._undo_unit(batch, StoreUnavailable("interrupted"))
            raise
        if error is None:
            batch.units += 1
        else:
            self.stats.failed_units += 1
            self._undo_unit(batch, error)
        waiter = asyncio.get_running_loop().create_future()
        batch.waiters.append(waiter)
        # A failed batch raises StoreUnavailable here, whatever the unit decided.
        await waiter
        if error is not None:
            raise error
        return result

    async def flush(self) -> None:
        """Commit the open batch now (before migrations or close)."""
        batch = self._batch
        if batch is not None:
            if batch.handle is not None:
                batch.handle.cancel()
            self._finish(batch)
        while self._committing is not None:
            await asyncio.shield(self._committing)

    async def close(self) -> None:
        """Commit the open batch, then close the connection; idempotent."""
        await self.flush()
        if self._db is not None:
            db, self._db = self._db, None
            db.close()
        self._committer.shutdown(wait=True)  # idle: flush waited for the last COMMIT

    # ------------------------------------------------------------------ batches

    async def _current_batch(self) -> _Batch:
        while self._batch is None:
            if self._committing is not None:
                # The previous batch is being committed off the loop: the next one
                # starts once it is durable (one transaction at a time).
                await asyncio.shield(self._committing)
                continue
            if self._opening is not None:
                # Someone is waiting for the write lock; its batch is ours too.
                await asyncio.shield(self._opening)
                continue
            loop = asyncio.get_running_loop()
            opening = self._opening = loop.create_future()
            try:
                await self._begin()
            finally:
                self._opening = None
                opening.set_result(None)  # waiters re-check (and retry the lock if it failed)
            batch = _Batch()
            batch.handle = loop.call_soon(self._finish, batch)
            self._batch = batch
        return self._batch

    async def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, waiting asynchronously while another process writes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
        delay = 0.0005
        while True:
            db = self.db
            try:
                # A lock held by another process is waited for below, off the loop.
                db.execute("PRAGMA busy_timeout = 0")
                try:
                    db.execute("BEGIN IMMEDIATE")
                    return
                finally:
                    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            except sqlite3.Error as exc:
                if not _is_busy(exc) or loop.time() >= deadline:
                    raise translate(exc, self._where) from exc
            self.stats.lock_waits += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _undo_unit(self, batch: _Batch, error: BaseException) -> None:
        db = self.db
        if db.in_transaction:
            try:
                db.execute("ROLLBACK TO unit")
                db.execute("RELEASE unit")
                return
            except sqlite3.Error:
                pass
        # SQLite dropped the whole transaction (full disk, I/O error) or the savepoint
        # could not be undone: the batch is lost; the next writer starts a new one.
        if isinstance(error, StoreUnavailable):
            batch.failure = error
        else:
            batch.failure = StoreUnavailable(
                f"the database at {self._where} could not undo a failed change; retry"
            )
        self._abandon(batch)

    def _abandon(self, batch: _Batch) -> None:
        if self._batch is batch:
            self._batch = None
        db = self.db
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                # A transaction that can be neither committed nor rolled back leaves
                # the connection unusable; SQLite recovers the file on the next open.
                self._lost = (
                    f"the connection to the database at {self._where} was lost ({exc}); "
                    "restart disparo"
                )
                self._db = None
                db.close()

    def _finish(self, batch: _Batch) -> None:
        if self._batch is batch:
            self._batch = None
        db = self._db
        if batch.failure is None and db is not None:
            # COMMIT writes the WAL and fsyncs it with the GIL released: on a thread
            # of its own, the loop goes on parsing, rendering and sending meanwhile.
            loop = asyncio.get_running_loop()
            self._committing = loop.create_future()
            done = loop.run_in_executor(self._committer, self._commit, db)
            done.add_done_callback(lambda f: self._committed(batch, f))
            return
        failure = batch.failure or StoreUnavailable(f"the store for {self._where} was closed")
        self._fail(batch, failure)

    @staticmethod
    def _commit(db: sqlite3.Connection) -> None:
        """On the commit thread: make the open transaction durable."""
        db.execute("COMMIT")

    def _committed(self, batch: _Batch, done: asyncio.Future[None]) -> None:
        committing, self._committing = self._committing, None
        exc = done.exception()
        if exc is None:
            self.stats.commits += 1
            self.stats.units += batch.units
            self.stats.largest_batch = max(self.stats.largest_batch, batch.units)
            if self._on_commit is not None:
                self._on_commit()
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_result(None)
        else:
            failure = translate(exc, self._where) if isinstance(exc, sqlite3.Error) else None
            if not isinstance(failure, StoreUnavailable):
                failure = StoreUnavailable(
                    f"committing to the database at {self._where} failed ({exc}); retry"
                )
            self._abandon(batch)
            self._fail(batch, failure)
        if committing is not None and not committing.done():
            committing.set_result(None)

    def _fail(self, batch: _Batch, failure: DisparoError) -> None:
        self.stats.failed_commits += 1
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_exception(StoreUnavailable(str(failure)))
