"""Three `disparo serve` processes on one PostgreSQL database, one of them killed -9.

A fake in-house gateway (``tests.fakes.gateway``, counting deliveries per key) sits
behind an ``http`` provider. 2,000 runs are started through the three processes'
APIs in turn, one in ten a second time through another process with the same
idempotency key (a client retrying elsewhere). Half way through the deliveries one
process is killed with SIGKILL and started again; a request that meets it dead is
retried on the next process, as a load balancer would. Every run finishes, and every
message reaches the gateway exactly once: the other processes take over the dead
one's leases, a resend carries the same key, and due work is never claimed twice.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import yaml

from tests.acceptance.conftest import (
    GATEWAY_FLOW,
    Api,
    DisparoServer,
    Gateway,
    Reply,
    finished_runs,
    free_port,
    run_cli,
    wait_for,
    write_config,
)
from tests.acceptance.conftest import gateway_provider as shared_gateway_provider

pytestmark = [pytest.mark.acceptance, pytest.mark.postgres]

RUNS = 2000
AGAIN_EVERY = 10  # every 10th run is started a second time, through another process
POSTERS = 12

FLOW = GATEWAY_FLOW.format(name="aviso_multi")


async def _schema(dsn: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A DSN on a fresh schema of the test server, dropped afterwards."""
    dsn = os.environ.get("DISPARO_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("PostgreSQL tests skipped: set DISPARO_TEST_POSTGRES_DSN to run them")
    name = f"disparo_multi_{uuid.uuid4().hex[:12]}"
    asyncio.run(_schema(dsn, f'CREATE SCHEMA "{name}"'))
    parts = urlsplit(dsn)
    query = urlencode([*parse_qsl(parts.query), ("search_path", name)])
    try:
        yield urlunsplit(parts._replace(query=query))
    finally:
        asyncio.run(_schema(dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


def gateway_provider(gateway: Gateway) -> dict[str, Any]:
    return shared_gateway_provider(gateway, timeout=10, max_in_flight=16)


class Starter:
    """Starts runs through the servers in turn; a server that is down is skipped."""

    def __init__(self, servers: list[DisparoServer]) -> None:
        self.servers = servers
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def start(self, n: int, *, skip: int = 0) -> Reply:
        body = {
            "flow": "aviso_multi",
            "contact": {"id": f"multi-{n}", "phone": f"+55119{n:08d}", "name": f"Pessoa {n}"},
            "context": {"n": n},
            "idempotency_key": f"multi-run-{n}",
        }
        with self._lock:
            first = next(self._turn) + skip
        for attempt in range(30):
            server = self.servers[(first + attempt) % len(self.servers)]
            try:
                reply = server.api.post("/v1/runs", body)
            except OSError:
                continue  # that process is down: the next one takes the request
            if reply.status != 503:
                return reply
        pytest.fail(f"no process accepted run {n}")


@pytest.mark.timeout(300)
def test_three_processes_one_killed_deliver_every_message_exactly_once(
    tmp_path: Path, postgres_dsn: str
) -> None:
    gateway = Gateway(free_port(), tmp_path / "gateway.log", latency=0.01)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "aviso_multi.yaml").write_text(FLOW, encoding="utf-8")
    servers: list[DisparoServer] = []
    for index in range(3):
        folder = tmp_path / f"node{index}"
        folder.mkdir()
        port = free_port()
        config = write_config(
            folder,
            port=port,
            providers={"gateway": gateway_provider(gateway)},
            flows=flows,
            dispatcher={"lease_seconds": 2, "poll_interval": 0.2, "backoff_base": 0.2},
        )
        settings = yaml.safe_load(config.read_text(encoding="utf-8"))
        settings["storage"] = postgres_dsn
        config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        servers.append(DisparoServer(config, port, folder / "serve.log"))
    run_cli(servers[0].config, "migrate")
    victim = servers[1]

    gateway.start()
    try:
        for server in servers:
            server.start()
        starter = Starter(servers)
        with ThreadPoolExecutor(max_workers=POSTERS) as pool:
            firsts = pool.map(starter.start, range(RUNS))
            agains = pool.map(lambda n: starter.start(n, skip=1), range(0, RUNS, AGAIN_EVERY))
            wait_for(
                gateway.stats,
                lambda s: s["delivered"] >= RUNS // 2,
                what=f"{RUNS // 2} deliveries at the gateway",
                timeout=90,
            )
            victim.kill()
            killed_at = gateway.stats()["delivered"]
            victim.start()
            first_replies, again_replies = list(firsts), list(agains)

        wait_for(
            gateway.stats,
            lambda s: s["delivered"] >= RUNS,
            what="every message delivered",
            timeout=90,
        )
        api: Api = servers[0].api
        run_ids = [reply.body["run_id"] for reply in first_replies]
        runs = finished_runs(api, run_ids)
        stats = gateway.stats()
    finally:
        for server in servers:
            server.stop()
        gateway.stop()

    assert killed_at < RUNS, "everything was sent before the kill: nothing tested"
    # One run per idempotency key, whichever process answered and how often.
    assert {r.status for r in first_replies} <= {200, 201}
    assert len(set(run_ids)) == RUNS
    assert [r.status for r in again_replies] == [200] * len(again_replies)
    assert [r.body["run_id"] for r in again_replies] == run_ids[::AGAIN_EVERY]
    # Every run completed with its one message, accepted by the gateway exactly once.
    assert [r["status"] for r in runs] == ["completed"] * RUNS, victim.log()[-3000:]
    keys = {m["idempotency_key"] for r in runs for m in r["messages"]}
    assert [len(r["messages"]) for r in runs] == [1] * RUNS
    assert len(keys) == RUNS
    assert set(stats["delivered_keys"]) == keys
    assert stats["duplicates"] == {}
    assert stats["delivered"] == RUNS
    for server in servers:
        assert "Traceback" not in server.log(), server.log()[-3000:]
