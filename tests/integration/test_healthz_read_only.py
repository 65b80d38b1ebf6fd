"""/healthz when the store answers but can no longer record anything.

``SELECT 1`` works on a SQLite database opened read-only, on a full disk and on a
file replaced under the process; the engine then fails every write. A load
balancer must take such a process out (503), and the body must name the problem.

Read-only, for real and as root: ``PRAGMA query_only`` makes SQLite itself refuse
every write with ``SQLITE_READONLY``, the error a file opened read-only gives (a
chmod does not bite on root, and a read-only mount needs privileges a test lacks).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.errors import StoreUnavailable
from storage.postgres import PostgresStore
from tests.contract.conftest import fresh_postgres_schema, postgres_dsn_or_skip

AUTH = {"Authorization": "Bearer test-token-0123456789"}
RUN = {
    "flow": "cobranca_boleto",
    "contact": {"id": "c-1", "phone": "+55 11 99999-8888"},
    "context": {"valor": 1670, "vencimento": "2026-11-30"},
}


async def test_a_read_only_database_is_a_503_naming_it_and_a_200_once_writable(
    api: Any,
) -> None:
    client, h = api
    assert (await client.get("/healthz")).status == 200
    h.engine.store._link.db.execute("PRAGMA query_only = 1")

    health = await client.get("/healthz")
    run = await client.post("/v1/runs", json=RUN, headers=AUTH)

    assert health.status == 503
    body = await health.json()
    assert body["status"] == "unavailable"
    assert "cannot write" in body["store"]
    assert "read-only" in body["store"]
    assert run.status == 503
    assert (await client.get("/livez")).status == 200  # alive: no restart would help

    h.engine.store._link.db.execute("PRAGMA query_only = 0")
    assert (await client.get("/healthz")).status == 200


async def test_a_failed_write_keeps_healthz_503_until_a_write_goes_through(api: Any) -> None:
    client, h = api
    db = h.engine.store._link.db
    db.execute("PRAGMA query_only = 1")
    assert (await client.post("/v1/runs", json=RUN, headers=AUTH)).status == 503

    assert (await client.get("/healthz")).status == 503  # the first probe: the write failed
    db.execute("PRAGMA query_only = 0")
    assert (await client.get("/healthz")).status == 200
    assert (await client.post("/v1/runs", json=RUN, headers=AUTH)).status == 201


async def test_a_database_file_replaced_or_removed_under_the_process_is_a_503(
    api: Any, tmp_path: Path
) -> None:
    client, h = api
    path = Path(h.engine.store.path)
    shutil.copy(path, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", path)  # a restore from backup over the live file

    replaced = await client.get("/healthz")

    assert replaced.status == 503
    assert "was replaced by another file" in (await replaced.json())["store"]
    os.unlink(path)
    removed = await client.get("/healthz")
    assert "was removed" in (await removed.json())["store"]


@pytest.mark.postgres
async def test_a_read_only_postgresql_server_is_a_503_naming_it() -> None:
    async for dsn in fresh_postgres_schema(postgres_dsn_or_skip()):
        writer = PostgresStore(dsn)
        await writer.migrate()
        await writer.open()
        await writer.health()  # writable: no error
        await writer.close()
        # A standby after a failover answers reads and refuses writes, as this does.
        reader = PostgresStore(f"{dsn}&default_transaction_read_only=on")
        await reader.open()
        try:
            with pytest.raises(StoreUnavailable, match="is read-only"):
                await reader.health()
        finally:
            await reader.close()
