"""Crash safety: `kill -9` of `disparo serve` mid-send loses no message and sends none twice.

A fake in-house gateway (``tests.fakes.gateway``) sits behind an ``http`` provider.
It answers slowly, and its first requests deliver and then hang, so when the engine
dies some messages are delivered with their answer lost, some are in the gateway
without being delivered, some are marked ``sending`` and some are still queued. A
second process on the same database reclaims the expired leases and finishes the
work: every run completes, every key reaches the gateway, and no key is accepted
twice (a resend of an ambiguous send carries the same idempotency key, which the
gateway answers with the first id instead of delivering again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import (
    DisparoServer,
    Gateway,
    finished_runs,
    free_port,
    gateway_flows,
    run_cli,
    start_gateway_runs,
    wait_for,
    write_config,
)
from tests.acceptance.conftest import gateway_provider as shared_gateway_provider

pytestmark = pytest.mark.acceptance

RUNS = 100
HUNG = 5  # the first requests: delivered by the gateway, never answered
GATEWAY_SLOTS = 8  # the http provider's max_in_flight
LATENCY = 0.1  # seconds the gateway takes per request
KILL_AFTER = HUNG + 10  # deliveries seen before the kill


def gateway_provider(gateway: Gateway) -> dict[str, Any]:
    # A timeout longer than the test: a hung request ends only by the crash.
    return shared_gateway_provider(gateway, timeout=30, max_in_flight=GATEWAY_SLOTS)


def crash_config(tmp_path: Path, gateway: Gateway, port: int) -> Path:
    return write_config(
        tmp_path,
        port=port,
        providers={"gateway": gateway_provider(gateway)},
        flows=gateway_flows(tmp_path),
        # Short leases: a restarted process reclaims the dead one's work within seconds.
        dispatcher={
            "lease_seconds": 2,
            "poll_interval": 0.2,
            "backoff_base": 0.2,
            "backoff_cap": 1,
        },
    )


def test_kill_9_mid_send_then_restart_delivers_every_message_exactly_once(tmp_path: Path) -> None:
    gateway = Gateway(free_port(), tmp_path / "gateway.log", latency=LATENCY)
    port = free_port()
    config = crash_config(tmp_path, gateway, port)
    run_cli(config, "check")
    run_cli(config, "migrate")

    first = DisparoServer(config, port, tmp_path / "serve-1.log")
    second = DisparoServer(config, free_port(), tmp_path / "serve-2.log")
    gateway.start()
    try:
        gateway.script_fault(kind="hang", times=HUNG)
        run_ids = start_gateway_runs(first.start(), RUNS, "crash")

        # Crash while sends are in flight: the hung ones at least, and most not yet sent.
        wait_for(
            gateway.stats,
            lambda s: s["delivered"] >= KILL_AFTER,
            what=f"{KILL_AFTER} deliveries at the gateway",
        )
        first.kill()
        at_kill = gateway.stats()
        assert at_kill["delivered"] < RUNS, "everything was sent before the crash: nothing tested"

        api = second.start()
        wait_for(
            gateway.stats,
            lambda s: s["delivered"] >= RUNS,
            what="every message delivered after the restart",
            timeout=45,
        )
        runs = finished_runs(api, run_ids, what="every run finished", timeout=30)
        stats = gateway.stats()
        # GET /v1/messages/{id} of every message the runs list.
        seen = [api.message(m["id"]) for r in runs for m in r["messages"]]
    finally:
        first.stop()
        second.stop()
        gateway.stop()

    # Every run finished, each with exactly one message, accepted by the gateway.
    assert [r["status"] for r in runs] == ["completed"] * RUNS, second.log()
    messages = [m for r in runs for m in r["messages"]]
    assert len(messages) == RUNS
    assert [len(r["messages"]) for r in runs] == [1] * RUNS
    keys = {m["idempotency_key"] for m in messages}
    assert len(keys) == RUNS

    # The gateway got every key, and accepted each one exactly once...
    assert set(stats["delivered_keys"]) == keys
    assert stats["duplicates"] == {}
    assert set(stats["delivered_keys"].values()) == {1}
    assert stats["delivered"] == RUNS
    # ...although some were sent twice: the hung ones (delivered, answer lost) at
    # least were resent by the second process, with the same key.
    resent = {k for k, n in stats["requests_by_key"].items() if n > 1}
    assert len(resent) >= HUNG
    assert resent <= keys

    # The engine's side agrees: each message is `sent`, once, with the gateway's id.
    assert [m["id"] for m in seen] == [m["id"] for m in messages]
    for message in seen:
        assert message["status"] == "sent", message
        assert message["provider"] == "gateway"
        assert message["provider_message_id"].startswith("gw-")
        assert message["last_error"] is None
    assert len({m["provider_message_id"] for m in seen}) == RUNS


REPEAT_RUNS = 120
KILLS_AT = (15, 45, 75)  # deliveries seen before each kill -9


def test_repeated_kill_9_during_recovery_still_delivers_every_message_exactly_once(
    tmp_path: Path,
) -> None:
    """Three crashes in a row, each soon after the restart before it (likely before
    the dead process's leases have even expired): the work passes through four
    processes, every run finishes, and the gateway gets each key once."""
    gateway = Gateway(free_port(), tmp_path / "gateway.log", latency=LATENCY)
    port = free_port()
    config = crash_config(tmp_path, gateway, port)
    run_cli(config, "migrate")
    servers = [
        DisparoServer(config, port if i == 0 else free_port(), tmp_path / f"serve-{i}.log")
        for i in range(len(KILLS_AT) + 1)
    ]
    gateway.start()
    try:
        gateway.script_fault(kind="hang", times=HUNG)
        run_ids = start_gateway_runs(servers[0].start(), REPEAT_RUNS, "again")
        for i, kill_at in enumerate(KILLS_AT):
            wait_for(
                gateway.stats,
                lambda s, n=kill_at: s["delivered"] >= n,
                what=f"{kill_at} deliveries before kill {i + 1}",
                timeout=45,
            )
            servers[i].kill()
            servers[i + 1].start()
        api = servers[-1].api
        runs = finished_runs(api, run_ids, what="every run finished after the last restart")
        stats = gateway.stats()
    finally:
        for server in servers:
            server.stop()
        gateway.stop()

    assert [r["status"] for r in runs] == ["completed"] * REPEAT_RUNS, servers[-1].log()
    assert all("sent message" in server.log() for server in servers)  # each did a share
    keys = {m["idempotency_key"] for r in runs for m in r["messages"]}
    assert len(keys) == REPEAT_RUNS
    assert set(stats["delivered_keys"]) == keys
    assert stats["duplicates"] == {}
    assert stats["delivered"] == REPEAT_RUNS
    # Each crash cut requests off mid-answer: those keys were sent again, and deduped.
    assert any(n > 1 for n in stats["requests_by_key"].values())


KEYLESS_RUNS = 24
KEYLESS_SLOTS = 4  # a small max_in_flight: most sends wait for a connection
SLOW = 1.0  # seconds the gateway takes per request


def test_kill_9_while_sends_wait_for_a_connection_leaves_them_queued_not_ambiguous(
    tmp_path: Path,
) -> None:
    """A provider without idempotency keys and few connections: when the process
    dies, most sends wait for a connection. Those never left, so they must still be
    `queued`, not `sending` (which the next process would have to call ambiguous,
    forever for a provider without status webhooks): the next process sends each
    once. Only a request that reached the gateway before the kill may be ambiguous."""
    gateway = Gateway(free_port(), tmp_path / "gateway.log", latency=SLOW)
    provider = {
        **shared_gateway_provider(gateway, timeout=30, max_in_flight=KEYLESS_SLOTS),
        "idempotency_header": None,
    }
    port = free_port()
    config = write_config(
        tmp_path,
        port=port,
        providers={"gateway": provider},
        flows=gateway_flows(tmp_path),
        dispatcher={"lease_seconds": 2, "poll_interval": 0.2},
    )
    run_cli(config, "migrate")
    first = DisparoServer(config, port, tmp_path / "serve-1.log")
    second = DisparoServer(config, free_port(), tmp_path / "serve-2.log")
    gateway.start()
    try:
        run_ids = start_gateway_runs(first.start(), KEYLESS_RUNS, "keyless")
        wait_for(
            gateway.stats,
            lambda s: len(s["requests_by_key"]) >= KEYLESS_SLOTS,
            what=f"{KEYLESS_SLOTS} requests at the gateway",
        )
        first.kill()
        left = set(gateway.stats()["requests_by_key"])  # nothing new arrives from the dead
        assert len(left) < KEYLESS_RUNS, "everything was sent before the crash: nothing tested"

        api = second.start()
        settled = {"sent", "ambiguous"}
        runs = wait_for(
            lambda: [api.run(run_id) for run_id in run_ids],
            lambda rs: all(m["status"] in settled for r in rs for m in r["messages"]),
            what="every message sent or ambiguous after the restart",
            timeout=60,
        )
        stats = gateway.stats()
    finally:
        first.stop()
        second.stop()
        gateway.stop()

    messages = [m for r in runs for m in r["messages"]]
    assert len(messages) == KEYLESS_RUNS, second.log()
    # Each key reached the gateway exactly once: nothing was resent blindly...
    assert set(stats["requests_by_key"]) == {m["idempotency_key"] for m in messages}
    assert set(stats["requests_by_key"].values()) == {1}
    # ...and only a request that had left before the kill is ambiguous: every send
    # that was waiting for a connection was sent by the second process.
    ambiguous = {m["idempotency_key"] for m in messages if m["status"] == "ambiguous"}
    assert ambiguous <= left
    for message in messages:
        if message["idempotency_key"] not in left:
            assert message["status"] == "sent", message
