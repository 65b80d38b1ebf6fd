"""Where the SQLite database lives, how it is opened, and its versioned migrations.

Migrations are the ``NNNN_name.sql`` files of ``storage/migrations/sqlite`` (read
with importlib.resources, so they ship in the wheel). Each is applied in its own
``BEGIN IMMEDIATE`` transaction together with its row in ``schema_migrations``, so
a crash leaves it either fully applied and recorded or not at all, and two
processes migrating at once apply it once.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Literal

from engine.errors import ConfigError, StoreUnavailable
from storage.sqlite_batch import BUSY_TIMEOUT_MS, translate

MEMORY = ":memory:"
Synchronous = Literal["FULL", "NORMAL"]

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""


def database_path(dsn_or_path: str) -> str:
    """The file a DSN names (or ``:memory:``).

    ``sqlite:///relative/path.db`` is relative to the working directory,
    ``sqlite:////abs/path.db`` absolute; a plain path is taken as is.
    """
    if dsn_or_path in (MEMORY, "sqlite://", "sqlite:///:memory:", "sqlite://:memory:"):
        return MEMORY
    if dsn_or_path.startswith("sqlite:"):
        if not dsn_or_path.startswith("sqlite:///") or len(dsn_or_path) == len("sqlite:///"):
            raise ConfigError(
                f"storage {dsn_or_path!r} is not a SQLite DSN; write "
                "sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        return dsn_or_path[len("sqlite:///") :]
    if not dsn_or_path:
        raise ConfigError("storage is empty; write sqlite:///var/disparo.db")
    return dsn_or_path


def _create_private(path: str) -> None:
    """Create the database file readable by its user alone (contacts' phones and
    context, providers' stored login tokens), whatever the umask; SQLite gives its
    ``-wal`` and ``-shm`` files the database's mode. An existing file keeps its mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def connect(path: str, synchronous: Synchronous) -> sqlite3.Connection:
    """An autocommit connection in WAL mode, with foreign keys and a busy timeout."""
    if synchronous not in ("FULL", "NORMAL"):
        raise ConfigError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    if path != MEMORY:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the directory of the database at {path} ({exc.strerror})"
            ) from exc
        try:
            _create_private(path)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the database at {path} ({exc.strerror})"
            ) from exc
    try:
        # isolation_level=None: the store issues BEGIN/COMMIT itself (group commit).
        # check_same_thread=False: COMMIT runs on the batch's commit thread while no
        # unit is open (sqlite_batch); everything else stays on the loop thread.
        db = sqlite3.connect(
            path,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            cached_statements=256,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
    try:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if path != MEMORY and str(mode).lower() != "wal":
            raise StoreUnavailable(
                f"the database at {path} cannot use WAL journaling (got {mode}); "
                "put it on a local disk"
            )
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("PRAGMA foreign_keys = ON")
        # Each write unit is a SAVEPOINT; its sub-journal in memory instead of a temp
        # file cut the cost of a unit's savepoint from about 30 to 10 µs (measured).
        db.execute("PRAGMA temp_store = MEMORY")
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Deleted and overwritten rows are zeroed, their freed pages too, so an
        # erased contact leaves no bytes in the file. On for every write, not only
        # around an erasure: an update (a contact's new context, a run's vars) frees
        # the old copy of its row, and a page freed while merging keeps copies of the
        # rows it held; with this off those copies would outlive an erasure.
        db.execute("PRAGMA secure_delete = ON")
    except sqlite3.Error as exc:
        db.close()
        raise translate(exc, path) from exc
    except BaseException:
        db.close()
        raise
    return db


def available() -> list[tuple[str, str]]:
    """Every migration shipped with disparo, as (name, SQL), in order."""
    folder = resources.files("storage").joinpath("migrations", "sqlite")
    found = sorted(
        (entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if _MIGRATION_NAME.match(entry.name)
    )
    return found


def applied(db: sqlite3.Connection) -> list[str]:
    db.execute(_BOOTSTRAP)
    return [row[0] for row in db.execute("SELECT name FROM schema_migrations ORDER BY name")]


def pending(db: sqlite3.Connection) -> list[str]:
    done = set(applied(db))
    return [name for name, _ in available() if name not in done]


def unknown(db: sqlite3.Connection) -> list[str]:
    """Migrations recorded in the database that this disparo does not ship (it is older)."""
    known = {name for name, _ in available()}
    return [name for name in applied(db) if name not in known]


def statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit mid-way)."""
    found: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            found.append(buffer.strip())
            buffer = ""
    return found


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the pending migrations, each in its own transaction; return their names."""
    done: list[str] = []
    db.execute(_BOOTSTRAP)
    for name, script in available():
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-checked under the write lock: another process may have just applied it.
            seen = db.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (name,))
            if seen.fetchone() is None:
                for statement in statements(script):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (name, applied_at) "
                    "VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    (name,),
                )
                done.append(name)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return done


def outdated_message(where: str, names: list[str]) -> str:
    count = len(names)
    plural = "migration" if count == 1 else "migrations"
    return (
        f"the database at {where} has {count} pending {plural} ({', '.join(names)}); "
        "run `disparo migrate`"
    )
