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
