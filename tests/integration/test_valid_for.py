"""`valid_for`: a message that could not leave in time fails with the reason
`expired` and its step routes `failed`, instead of going out late after an outage or
a deferral; a resend that may already have reached the contact is never expired."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.models import MessageStatus, RunStatus
from providers.http import HttpConfig
from tests.fakes.gateway import FakeGateway, Fault
from tests.integration.engine_kit import harness, settings_with_flows
from tests.integration.test_provider_faults import AUTH

FLOW = """\
flow: boleto
defaults:
  provider: gateway
  rules: {window: ignore, valid_for: 2h}
start: lembrete
steps:
  lembrete:
    send: {text: "Oi {{ contact.first_name }}, seu boleto vence hoje."}
    on: {failed: atrasou, sent: fim}
  atrasou:
    set: {context.lembrete_expirou: true}
    next: fim
  fim: {end: completed}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _settings(tmp_path: Path, url: str, flow: str = FLOW, **http: Any) -> Any:
    gateway = HttpConfig.model_validate(
        {"type": "http", "url": url, "headers": {"Authorization": AUTH}, "timeout": 0.3, **http}
    )
    return settings_with_flows(
        tmp_path,
        flow,
        providers={"gateway": gateway},
        dispatcher={"max_attempts": 3, "breaker_failures": 1000},
    )


async def test_a_provider_down_past_valid_for_fails_the_message_and_routes_failed(
    tmp_path: Path,
) -> None:
    port = _free_port()  # nobody listens: every try is a refused connection
    url = f"http://127.0.0.1:{port}/v1/messages"
    async with harness(_settings(tmp_path, url)) as h:
        started = h.clock.now()
        run = await h.start("boleto")
        await h.advance(timedelta(minutes=90))
        waiting = (await h.messages(run.id))[0]
        await h.advance(timedelta(hours=1))
        (message,) = await h.messages(run.id)
        gateway = FakeGateway(auth_value=AUTH)
        await gateway.start(port=port)  # the provider is back: nothing late goes out
        try:
            await h.advance(timedelta(hours=3))
            requests = gateway.stats()["requests"]
        finally:
            await gateway.close()
        finished = await h.run(run.id)
        kinds = await h.kinds(run.id)
        contact = await h.engine.store.get_contact("c-1")
        metrics = h.engine.metrics.render().decode()

    assert waiting.status == MessageStatus.QUEUED  # still worth sending at 1 h 30
    assert message.status == MessageStatus.FAILED
    assert message.last_error is not None
    assert message.last_error.startswith("expired: not sent within valid_for 2h"), (
        message.last_error
    )
    assert "PROVIDER_UNREACHABLE" in message.last_error
    # It failed as soon as a retry would land past the deadline, not after it.
    assert message.updated_at <= started + timedelta(hours=2)
    assert requests == 0
    assert finished.status == RunStatus.COMPLETED
    assert "message.failed" in kinds
    assert contact is not None
    assert contact.context["lembrete_expirou"] is True
    assert 'disparo_messages_expired_total{provider="gateway"} 1.0' in metrics


async def test_a_deferral_past_valid_for_fails_at_once(tmp_path: Path) -> None:
    flow = FLOW.replace(
        "{window: ignore, valid_for: 2h}",
        '{window: ignore, valid_for: 2h, quiet_hours: "20:00-08:00"}',
    )
    evening = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 21:00 in São Paulo
    async with FakeGateway(auth_value=AUTH) as gateway:
        async with harness(_settings(tmp_path, gateway.url, flow), at=evening) as h:
            run = await h.start("boleto")
            (message,) = await h.messages(run.id)
            finished = await h.run(run.id)
            decisions = await h.decisions(run.id)
            await h.advance(timedelta(hours=12))
        requests = gateway.stats()["requests"]

    assert message.status == MessageStatus.FAILED
    assert message.last_error is not None
    assert (
        "(until 2026-11-22T23:00:00-03:00); deferred until 2026-11-23T08:00:00-03:00 (quiet_hours"
        in (message.last_error)
    )
    assert finished.status == RunStatus.COMPLETED  # through `atrasou`, at 21:00
    assert [d["rule"] for d in decisions if d["outcome"] == "defer"] == ["quiet_hours"]
    assert requests == 0


async def test_a_deferral_within_valid_for_still_sends(tmp_path: Path) -> None:
    flow = FLOW.replace(
        "{window: ignore, valid_for: 2h}",
        '{window: ignore, valid_for: 12h, quiet_hours: "20:00-08:00"}',
    )
    evening = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 21:00; 08:00 is 11 h away
    async with FakeGateway(auth_value=AUTH) as gateway:
        async with harness(_settings(tmp_path, gateway.url, flow), at=evening) as h:
            run = await h.start("boleto")
            deferred = (await h.messages(run.id))[0]
            await h.advance(timedelta(hours=11, minutes=1))
            (message,) = await h.messages(run.id)
        requests = gateway.stats()["requests"]

    assert deferred.status == MessageStatus.QUEUED
    assert message.status == MessageStatus.SENT, message.last_error
    assert requests == 1


async def test_a_keyed_resend_is_not_expired_it_may_have_reached_the_contact(
    tmp_path: Path,
) -> None:
    flow = FLOW.replace("valid_for: 2h", "valid_for: 1m")
    async with FakeGateway(auth_value=AUTH) as gateway:
        gateway.fail_for(Fault.html(), seconds=10**9)  # a 200 nobody can read: ambiguous
        settings = _settings(tmp_path, gateway.url, flow, idempotency_header="Idempotency-Key")
        async with harness(settings) as h:
            run = await h.start("boleto")
            await h.advance(timedelta(hours=1))
            (message,) = await h.messages(run.id)
        requests = gateway.stats()["requests"]

    # Resent with the same key until the budget, then left to an operator: never
    # `failed`, which would send the fallback to someone who may have the message.
    assert requests == 3
    assert message.status == MessageStatus.AMBIGUOUS
    assert not (message.last_error or "").startswith("expired")
