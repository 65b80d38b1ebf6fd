"""Whether the SQLite store can record anything now: the check behind ``GET /healthz``.

``SELECT 1`` answers as well from a database that can no longer be written: a file
opened read-only (its permissions, a read-only mount), a disk that filled up, a
file replaced or removed under the process (which then writes into a file no one
will read again). The check adds, cheaply:

- the file at the configured path is still the one the process opened (its
  permissions are not asked: a file made read-only after it was opened is still
  written through the open connection, and the next start says what is wrong);
- the outcome of the latest write (``GroupCommitConnection.write_failure``): a full
  disk or a read-only connection fails every write until it is fixed;
- when no write went through since the previous check (an idle process), or the
  latest one failed, one probe write: ``PRAGMA user_version`` set to its own value,
  committed like any change (one page). A busy process never probes: its own
  commits show that writing works.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from engine.errors import StoreUnavailable
from storage.sqlite_batch import GroupCommitConnection


@dataclass(slots=True)
class FileIdentity:
    """The device and inode of the database file when the store opened it."""

    device: int
    inode: int

    @classmethod
    def of(cls, path: str) -> FileIdentity | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return cls(stat.st_dev, stat.st_ino)


class WriteCheck:
    """``check()`` raises ``StoreUnavailable`` naming why nothing can be recorded."""

    def __init__(self, path: str, identity: FileIdentity | None) -> None:
        self.path = path
        self.identity = identity
        self._commits_seen = -1

    async def check(self, link: GroupCommitConnection) -> None:
        self._check_file()
        failure = link.write_failure
        if failure is None and link.stats.commits != self._commits_seen:
            self._commits_seen = link.stats.commits
            return  # something was committed since the last check: writing works
        try:
            await link.write(_rewrite_user_version)
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"cannot write: {exc}") from exc
        self._commits_seen = link.stats.commits

    def _check_file(self) -> None:
        if self.identity is None:  # in memory
            return
        now = FileIdentity.of(self.path)
        if now != self.identity:
            what = "removed" if now is None else "replaced by another file"
            raise StoreUnavailable(
                f"the database file at {self.path} was {what} while disparo had it open: "
                "what it writes now goes to a file no one will read; put the file back "
                "or restart disparo"
            )


def _rewrite_user_version(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    db.execute(f"PRAGMA user_version = {int(version)}")
