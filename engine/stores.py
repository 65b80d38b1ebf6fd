"""The composition point of the stores: which ``Store`` a DSN names.

The rest of the engine knows stores only through ``storage.base``.
"""

from __future__ import annotations

from pathlib import Path

from storage.base import Store

__all__ = ["missing_database", "open_store", "sqlite_file"]


def open_store(dsn: str) -> Store:
    """The store a DSN names: ``sqlite:///path`` (default) or ``postgresql://...``."""
    if dsn.startswith(("postgresql://", "postgres://")):
        from storage.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]

        store: Store = PostgresStore(dsn)
        return store
    from storage.sqlite import SQLiteStore

    return SQLiteStore(dsn)


def missing_database(dsn: str) -> str | None:
    """The file a SQLite DSN names when it does not exist (opening would create an
    empty database there); ``None`` for an existing file, memory or PostgreSQL."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return None
    path = sqlite_file(dsn)
    return path if path is not None and not Path(path).exists() else None


def sqlite_file(dsn: str) -> str | None:
    """The database file of a SQLite DSN; ``None`` for memory or PostgreSQL."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return None
    from storage.sqlite import SQLiteStore

    path = SQLiteStore(dsn).path
    return None if path == ":memory:" else path
