"""SIGTERM under load: `disparo serve` stops claiming, finishes what is on the wire,
gives back what is not, and exits within its grace; a restart sends the rest once.

The gateway is slow and takes two requests at a time, so when the signal comes most
claimed messages wait for a connection slot. They have not left, so they must go back
to the queue at once (not wait out the grace, not be cancelled into ``sending``). The
provider has no idempotency key: a message left ``sending`` would become ``ambiguous``
after the restart and never be sent, so every one being sent exactly once proves
nothing was stranded.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
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

RUNS = 40
SLOTS = 2  # the provider's max_in_flight: most claimed sends wait for a slot
LATENCY = 0.5  # seconds the gateway takes per request
GRACE = 20.0  # far longer than the two requests on the wire need
SIGNAL_AFTER = 4  # deliveries seen before SIGTERM


def keyless_provider(gateway: Gateway) -> dict[str, Any]:
    provider = shared_gateway_provider(gateway, timeout=30, max_in_flight=SLOTS)
    del provider["idempotency_header"]  # a resend could deliver twice: never blind
    return provider


def message_states(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
        leased = conn.execute(
            "SELECT count(*) FROM due_work WHERE lease_owner IS NOT NULL AND lease_until > ?",
            (time.time() * 1_000_000,),
        ).fetchone()[0]
    return {**{str(s): int(n) for s, n in rows}, "leased": int(leased)}


def test_sigterm_under_load_finishes_what_left_and_requeues_the_rest(tmp_path: Path) -> None:
    gateway = Gateway(free_port(), tmp_path / "gateway.log", latency=LATENCY)
    port = free_port()
    config = write_config(
        tmp_path,
        port=port,
        providers={"gateway": keyless_provider(gateway)},
        flows=gateway_flows(tmp_path),
        dispatcher={"lease_seconds": 60, "poll_interval": 0.2, "shutdown_grace": GRACE},
    )
    run_cli(config, "migrate")
    first = DisparoServer(config, port, tmp_path / "serve-1.log")
    second = DisparoServer(config, free_port(), tmp_path / "serve-2.log")
    gateway.start()
    try:
        run_ids = start_gateway_runs(first.start(), RUNS, "term")
        wait_for(
            gateway.stats,
            lambda s: s["delivered"] >= SIGNAL_AFTER,
            what=f"{SIGNAL_AFTER} deliveries at the gateway",
        )
        assert first.proc is not None
        signalled = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        try:
            code = first.proc.wait(timeout=GRACE + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"disparo serve ignored SIGTERM:\n{first.log()}")
        took = time.monotonic() - signalled
        at_exit = gateway.stats()
        first.stop()
        states = message_states(tmp_path / "disparo.db")

        api = second.start()
        runs = finished_runs(api, run_ids, what="every run finished after the restart")
        stats = gateway.stats()
    finally:
        first.stop()
        second.stop()
        gateway.stop()

    log = first.log()
    assert code == 0, log
    # Only the requests on the wire were waited for, not the queue behind them.
    assert took < 10 * LATENCY, f"shutdown took {took:.1f}s\n{log}"
    assert at_exit["delivered"] < RUNS, "everything was sent before SIGTERM: nothing tested"
    # Nothing was stranded mid-send, and no work stays leased to the stopped process.
    assert "sending" not in states, states
    assert "ambiguous" not in states, states
    assert states["leased"] == 0, states
    assert states.get("sent", 0) == at_exit["delivered"], (states, at_exit)
    assert "stopped" in log.splitlines()[-1], log

    # The restart sent the rest, each exactly once (no key: nothing could dedupe it).
    assert [r["status"] for r in runs] == ["completed"] * RUNS, second.log()
    assert stats["delivered"] == RUNS
    assert stats["duplicates"] == {}
    assert set(stats["requests_by_key"].values()) == {1}
