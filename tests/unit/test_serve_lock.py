"""A second `disparo serve` on one SQLite file is told so; PostgreSQL needs no lock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.serve_lock import lock_path, one_server_per_file


async def test_a_second_server_on_one_sqlite_file_is_warned_and_the_lock_ends_with_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = f"sqlite:///{tmp_path / 'var' / 'disparo.db'}"
    (tmp_path / "var").mkdir()
    with caplog.at_level(logging.WARNING, logger="disparo.serve"):
        async with one_server_per_file(storage) as first, one_server_per_file(storage) as second:
            pass
        async with one_server_per_file(storage) as after:
            pass

    assert (first, second, after) == (True, False, True)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert f"another disparo serve is running on {tmp_path / 'var' / 'disparo.db'}" in warning
    assert "PostgreSQL" in warning


async def test_postgresql_and_memory_take_no_lock(tmp_path: Path) -> None:
    assert lock_path("postgresql://postgres@127.0.0.1/test") is None
    assert lock_path("sqlite:///:memory:") is None
    dsn = "postgresql://postgres@127.0.0.1/test"
    async with one_server_per_file(dsn) as alone, one_server_per_file(dsn) as also:
        assert (alone, also) == (True, True)


async def test_the_database_and_lock_files_disparo_creates_are_for_its_user_alone(
    tmp_path: Path,
) -> None:
    # Contacts' phones and context, and the providers' stored login tokens: no other
    # user of the host reads them, whatever the umask.
    import os
    import stat

    from storage.sqlite_schema import connect

    path = tmp_path / "var" / "disparo.db"
    path.parent.mkdir()
    old = os.umask(0o022)
    try:
        async with one_server_per_file(f"sqlite:///{path}"):
            db = connect(str(path), "NORMAL")
            db.execute("CREATE TABLE t (x)")
            db.execute("INSERT INTO t VALUES (1)")
            made = sorted(p.name for p in path.parent.iterdir())
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
            db.close()
    finally:
        os.umask(old)

    assert made == ["disparo.db", "disparo.db-shm", "disparo.db-wal", "disparo.db.serve-lock"]
    assert modes == dict.fromkeys(made, 0o600)


def test_an_existing_database_keeps_the_mode_its_operator_gave_it(tmp_path: Path) -> None:
    import stat

    from storage.sqlite_schema import connect

    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    connect(str(path), "NORMAL").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
