"""Timer events an earlier release wrote without their contact, after an upgrade.

Before disparo wrote a fired timer's event with the run's contact, `disparo why`,
the decisions API and the export (which select a contact's events by contact)
missed every timeout and wait that moved a run. An upgraded database must explain
the runs of before the upgrade too: a migration gives those events their run's
contact.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import asyncpg

from engine.runtime import open_store
from tests.integration.engine_kit import harness, settings_for
from tests.integration.test_cli import _local_config, disparo

MIGRATION = {"sqlite": "0009_event_contacts", "postgresql": "0010_event_contacts"}


async def _as_the_earlier_release_left_it(storage: str) -> None:
    """Timer events without a contact, and the migration not applied yet."""
    backend = storage.split(":", 1)[0]
    forget = "DELETE FROM schema_migrations WHERE name = '" + MIGRATION[backend] + "'"
    strip = "UPDATE events SET contact_id = NULL WHERE kind = 'timer'"
    if backend == "sqlite":
        with sqlite3.connect(storage.removeprefix("sqlite:///")) as db:
            assert db.execute(strip).rowcount == 1
            assert db.execute(forget).rowcount == 1
        return
    db = await asyncpg.connect(storage)
    try:
        assert await db.execute(strip) == "UPDATE 1"
        assert await db.execute(forget) == "DELETE 1"
    finally:
        await db.close()


async def test_why_shows_a_timeout_that_fired_before_the_upgrade(
    tmp_path: Path, storage: str
) -> None:
    config = _local_config(tmp_path)
    config.write_text(
        config.read_text().replace(f"sqlite:///{tmp_path / 'd.db'}", storage.replace("%", "%%"))
    )
    settings = settings_for(
        tmp_path, storage=storage, provider_changes={"sandbox": {"read_after": None}}
    )
    async with harness(settings) as h:  # 10:00 in São Paulo
        run = await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})
        await h.advance(timedelta(hours=2, seconds=5))  # not read in 2 h: the SMS
    await _as_the_earlier_release_left_it(storage)

    migrated = disparo("migrate", "--config", str(config))
    result = disparo("why", "c-1", "--config", str(config))

    assert migrated.returncode == 0, migrated.stderr
    assert result.returncode == 0, result.stderr
    timer = [line for line in result.stdout.splitlines() if " timer " in line]
    assert len(timer) == 1, result.stdout
    assert re.match(rf"2026-11-23 12:00:0\d  run {run.id[:8]}  lembrete +timer +timeout", timer[0])
    store = open_store(storage)
    try:
        assert await store.pending_migrations() == []
    finally:
        await store.close()
