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
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("disparo.store")

# Pages the loop's own connection lets the WAL grow to before it checkpoints
# itself (SQLite's default is 1,000): reached only if the thread falls behind.
FALLBACK_AUTOCHECKPOINT_PAGES = 16_000
# At most one checkpoint per this many seconds, so bursts of tiny commits do not
# turn into as many checkpoints (each one fsyncs the database file).
MIN_INTERVAL = 0.2


class Checkpointer:
    """Checkpoints the WAL of ``path`` in the background; ``nudge`` after commits."""

    def __init__(self, path: str, *, timeout_ms: int) -> None:
        self.path = path
        self._timeout_ms = timeout_ms
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.checkpoints = 0
        self._thread = threading.Thread(
            target=self._run, name="disparo-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def nudge(self) -> None:
        """Something was committed: checkpoint soon."""
        self._wake.set()

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
            return
        try:
            while True:
                self._wake.wait()
                if self._stop.is_set():
                    return
                self._wake.clear()
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:
                    # The store's own connection still checkpoints past the fallback
                    # threshold; this one tries again after the next commit.
                    log.warning("background WAL checkpoint failed: %s", exc)
                # Pace: the commits of the next MIN_INTERVAL are checkpointed together.
                if self._stop.wait(MIN_INTERVAL):
                    return
        finally:
            db.close()
