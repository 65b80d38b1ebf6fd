"""WAL checkpoints on a thread of their own, off the event loop.

With SQLite's automatic checkpoint, the COMMIT that crosses the WAL's threshold
also copies the WAL into the database file and fsyncs it, on the event-loop
thread: measured in ``bench/dispatch.py``, that made the average group COMMIT
about 30% longer (3.9 vs 3.0 ms), all of it time the loop could not parse,
render or send.

Here a daemon thread with its own connection runs ``PRAGMA
wal_checkpoint(PASSIVE)``: PASSIVE never waits for and never blocks the writer
or the readers, and ``sqlite3`` releases the GIL while SQLite works, so the copy
and its fsync overlap the loop's work. The loop only nudges the thread after
commits. The store's own connection keeps a much higher automatic-checkpoint
threshold as a safety net: should this thread fall behind, the WAL stays bounded.

Durability is unchanged: a transaction is durable once its COMMIT has synced the
WAL; the checkpoint only moves committed pages into the main file.

After an erasure the WAL still holds the pages as they were before it, the
person's data in them: ``empty_wal`` asks this thread for a ``TRUNCATE``
checkpoint, which copies every page into the main file and cuts the WAL to zero
bytes. It needs every reader on the newest snapshot and the write lock, so it waits
for them at most ``EMPTY_WAIT_MS`` (a short stall of the engine's next write, never
a blocked loop); when another connection keeps reading, it gives up, logs so, and
tries again after later commits and every ``EMPTY_RETRY_SECONDS`` until it succeeds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from concurrent.futures import Future

log = logging.getLogger("disparo.store")

# Pages the loop's own connection lets the WAL grow to before it checkpoints
# itself (SQLite's default is 1,000): reached only if the thread falls behind.
FALLBACK_AUTOCHECKPOINT_PAGES = 16_000
# At most one checkpoint per this many seconds, so bursts of tiny commits do not
# turn into as many checkpoints (each one fsyncs the database file).
MIN_INTERVAL = 0.2
# How long a TRUNCATE checkpoint waits for readers and the writer, and how often it
# is tried again while it could not empty the WAL.
EMPTY_WAIT_MS = 200
EMPTY_RETRY_SECONDS = 5.0


class Checkpointer:
    """Checkpoints the WAL of ``path`` in the background; ``nudge`` after commits."""

    def __init__(self, path: str, *, timeout_ms: int) -> None:
        self.path = path
        self._timeout_ms = timeout_ms
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.checkpoints = 0
        self._lock = threading.Lock()
        self._empty_waiters: list[Future[bool]] = []
        self._empty_pending = False  # an erasure's old pages may still be in the WAL
        self._ended = False
        self._thread = threading.Thread(
            target=self._run, name="disparo-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def nudge(self) -> None:
        """Something was committed: checkpoint soon."""
        self._wake.set()

    def empty_wal(self) -> Future[bool]:
        """Cut the WAL to zero bytes soon (after an erasure); the future says whether
        it was emptied (False: another connection held it; tried again later)."""
        asked: Future[bool] = Future()
        with self._lock:
            if self._ended:
                asked.set_result(False)
                return asked
            self._empty_waiters.append(asked)
            self._empty_pending = True
        self._wake.set()
        return asked

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a checkpoint in progress finishes first)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=self._timeout_ms / 1000)
        except sqlite3.Error as exc:
            log.warning("WAL checkpoints stay on the store's connection: %s", exc)
            self._end()
            return
        try:
            while True:
                self._wake.wait(EMPTY_RETRY_SECONDS if self._empty_pending else None)
                if self._stop.is_set():
                    return
                self._wake.clear()
                if self._empty_pending:
                    self._empty(db)
                else:
                    self._passive(db)
                # Pace: the commits of the next MIN_INTERVAL are checkpointed together.
                if self._stop.wait(MIN_INTERVAL):
                    return
        finally:
            db.close()
            self._end()

    def _passive(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as exc:
            # The store's own connection still checkpoints past the fallback
            # threshold; this one tries again after the next commit.
            log.warning("background WAL checkpoint failed: %s", exc)

    def _empty(self, db: sqlite3.Connection) -> None:
        with self._lock:
            waiters, self._empty_waiters = self._empty_waiters, []
        emptied = False
        try:
            db.execute(f"PRAGMA busy_timeout = {EMPTY_WAIT_MS}")
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            emptied = busy == 0
            self.checkpoints += 1
        except sqlite3.Error as exc:
            log.warning("emptying the WAL failed: %s", exc)
        finally:
            db.execute(f"PRAGMA busy_timeout = {self._timeout_ms}")
        with self._lock:
            if emptied and not self._empty_waiters:
                self._empty_pending = False
        if emptied and not waiters:  # a retry succeeded: say the earlier warning is over
            log.info("the WAL of %s is emptied: no copies of erased data are left in it", self.path)
        for waiter in waiters:
            waiter.set_result(emptied)

    def _end(self) -> None:
        with self._lock:
            self._ended = True
            waiters, self._empty_waiters = self._empty_waiters, []
        for waiter in waiters:
            waiter.set_result(False)
