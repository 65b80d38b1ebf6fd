"""The engine's answer to every kind of provider fault, end to end: a flow sending
through the `http` provider to the fake gateway, on a virtual clock."""

from __future__ import annotations

import random
import statistics
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import MessageStatus, StatusReport
from storage.base import Commit, reported_change
from tests.fakes.gateway import FakeGateway, Fault
from tests.integration.engine_kit import Harness, harness, settings_for

AUTH = "Bearer gw-test-token-0123456789"
FLOW = """\
flow: aviso
defaults: {provider: gateway, rules: {window: ignore}}
start: aviso
steps:
  aviso:
    send: {text: "Olá {{ contact.first_name }}, seu pedido saiu para entrega."}
    on: {failed: fim}
    next: fim
  fim: {end: completed}
"""


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


def settings_with(tmp_path: Path, name: str, config: Any) -> Any:
    """The `aviso` flow sending through provider ``name`` (a parsed ``config``), with
    3 attempts per message and a circuit that opens after 3 failures for 60 s."""
    flows = tmp_path / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "aviso.yaml").write_text(FLOW.replace("provider: gateway", f"provider: {name}"))
    settings = settings_for(
        tmp_path,
        flows=flows,
        dispatcher={"max_attempts": 3, "breaker_failures": 3, "breaker_cooldown": 60},
    )
    return settings.model_copy(update={"providers": {**settings.providers, name: config}})


def make_settings(tmp_path: Path, gateway: FakeGateway, **http: Any) -> Any:
    gateway_config = {
        "type": "http",
        "url": gateway.url,
        "headers": {"Authorization": AUTH},
        "timeout": 0.3,
        **http,
    }
    return settings_with(tmp_path, "gateway", _http(gateway_config))


def _http(config: dict[str, Any]) -> Any:
    from providers.http import HttpConfig

    return HttpConfig.model_validate(config)


async def only_message(h: Harness, run_id: str) -> Any:
    (message,) = await h.messages(run_id)
    return message


async def test_a_rejected_message_fails_at_once_with_the_vendor_words(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.fail_next(Fault.reject("destinatário inválido", status=422))
    async with harness(make_settings(tmp_path, gateway)) as h:
        run = await h.start("aviso")

        message = await only_message(h, run.id)
        assert message.status == MessageStatus.FAILED
        assert message.attempts == 1
        assert "destinatário inválido" in (message.last_error or "")
        assert gateway.stats()["requests"] == 1


async def test_5xx_is_retried_with_backoff_then_fails(tmp_path: Path, gateway: FakeGateway) -> None:
    gateway.fail_next(Fault.error(503), times=10)
    async with harness(make_settings(tmp_path, gateway)) as h:
        run = await h.start("aviso")
        first = await only_message(h, run.id)
        assert first.status == MessageStatus.QUEUED
        assert first.next_attempt_at is not None
        assert first.next_attempt_at > h.clock.now()

        await h.advance(timedelta(minutes=30))

        message = await only_message(h, run.id)
        assert message.status == MessageStatus.FAILED
        assert message.attempts == 3
        assert "gave up after 3 attempts" in (message.last_error or "")


async def test_429_waits_for_retry_after(tmp_path: Path, gateway: FakeGateway) -> None:
    gateway.fail_next(Fault.rate_limit(retry_after="120"))
    async with harness(make_settings(tmp_path, gateway)) as h:
        run = await h.start("aviso")
        waiting = await only_message(h, run.id)
        assert waiting.next_attempt_at is not None
        assert waiting.next_attempt_at - h.clock.now() >= timedelta(seconds=120)

        await h.advance(timedelta(seconds=119))
        assert gateway.stats()["delivered"] == 0
        await h.advance(timedelta(seconds=60))

        assert (await only_message(h, run.id)).status == MessageStatus.SENT
        assert gateway.stats()["delivered"] == 1


async def test_a_lost_answer_without_an_idempotency_key_is_ambiguous_not_resent(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.fail_next(Fault.disconnect())
    async with harness(make_settings(tmp_path, gateway, idempotency_header=None)) as h:
        run = await h.start("aviso")
        await h.advance(timedelta(hours=1))

        message = await only_message(h, run.id)
        assert message.status == MessageStatus.AMBIGUOUS
        assert gateway.stats()["requests"] == 1  # never resent blindly
        assert gateway.stats()["delivered"] == 1


async def test_a_lost_answer_with_an_idempotency_key_is_resent_and_delivered_once(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.fail_next(Fault.disconnect())
    async with harness(make_settings(tmp_path, gateway)) as h:
        run = await h.start("aviso")
        await h.advance(timedelta(minutes=5))

        message = await only_message(h, run.id)
        assert message.status == MessageStatus.SENT
        assert gateway.stats()["requests"] == 2
        assert gateway.stats()["duplicates"] == {}


async def test_a_provider_that_is_down_opens_its_circuit(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.fail_next(Fault.error(502), times=3)
    async with harness(make_settings(tmp_path, gateway)) as h:
        runs = [
            await h.start("aviso", contact=f"c-{i}", phone=f"+55119999900{i:02d}") for i in range(6)
        ]
        # Three failures in a row open the circuit: the other three are not attempted.
        assert gateway.stats()["requests"] == 3
        metrics = h.engine.metrics.render().decode()
        assert 'disparo_provider_circuit_open{provider="gateway"} 1.0' in metrics

        await h.advance(timedelta(seconds=59))
        assert gateway.stats()["requests"] == 3

        await h.advance(timedelta(minutes=10))
        statuses = [(await only_message(h, r.id)).status for r in runs]
        assert statuses == [MessageStatus.SENT] * 6
        metrics = h.engine.metrics.render().decode()
        assert 'disparo_provider_circuit_open{provider="gateway"} 0.0' in metrics


async def test_every_error_a_provider_answers_is_counted_by_its_code(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    """/metrics tells an outage or a flaky provider before its circuit opens or its
    messages fail: each error, retried or not, by provider and code."""
    gateway.fail_next(Fault.error(503))
    gateway.fail_next(Fault.rate_limit(retry_after="1"))
    async with harness(make_settings(tmp_path, gateway)) as h:
        run = await h.start("aviso")
        await h.advance(timedelta(minutes=5))

        assert (await only_message(h, run.id)).status == MessageStatus.SENT
        metrics = h.engine.metrics.render().decode()
    for code in ("PROVIDER_UNAVAILABLE", "PROVIDER_RATE_LIMITED"):
        assert f'disparo_provider_errors_total{{code="{code}",provider="gateway"}} 1.0' in metrics
    assert 'disparo_messages_total{provider="gateway",status="sent"} 1.0' in metrics


async def test_refused_credentials_pause_the_provider_instead_of_failing_the_backlog(
    tmp_path: Path, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The account's key was revoked: every request answers 401. Three refusals open
    the circuit and the other messages wait unattempted. The probe message fails
    once its attempts are spent; once the key works again the rest are sent."""
    configured = gateway.auth_value
    gateway.auth_value = "Bearer a-key-the-vendor-issued-after-the-rotation"
    async with harness(make_settings(tmp_path, gateway)) as h:
        runs = [
            await h.start("aviso", contact=f"c-{i}", phone=f"+55119999900{i:02d}") for i in range(6)
        ]
        assert gateway.stats()["requests"] == 3
        waiting = [await only_message(h, r.id) for r in runs]
        assert [m.status for m in waiting] == [MessageStatus.QUEUED] * 6
        metrics = h.engine.metrics.render().decode()
        assert 'disparo_provider_circuit_open{provider="gateway"} 1.0' in metrics
        refusals = [r for r in caplog.records if r.levelname == "ERROR"]
        assert refusals, "an operator must hear about refused credentials"
        assert "fix providers.gateway in the config" in refusals[0].getMessage()
        assert configured.split()[-1] not in caplog.text

        # Still refused: one probe per cooldown, not a burst, until the probed
        # message has spent its three attempts.
        await h.advance(timedelta(minutes=4))
        # Half-open after 60 s and again 120 s later: one request each time.
        assert gateway.stats()["requests"] == 3 + 2
        statuses = [(await only_message(h, r.id)).status for r in runs]
        assert statuses.count(MessageStatus.FAILED) == 1
        assert statuses.count(MessageStatus.QUEUED) == 5

        gateway.auth_value = configured  # the operator restores the key
        await h.advance(timedelta(minutes=10))

        messages = [await only_message(h, r.id) for r in runs]
        (failed,) = [m for m in messages if m.status == MessageStatus.FAILED]
        assert [m.status for m in messages].count(MessageStatus.SENT) == 5
        assert gateway.stats()["delivered"] == 5
        assert failed.attempts == 3
        assert "gave up after 3 attempts: gateway refused the credentials (401)" in (
            failed.last_error or ""
        )


async def test_a_retry_after_of_years_waits_only_the_configured_cap(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.fail_next(Fault.rate_limit(retry_after="999999999"))
    async with harness(make_settings(tmp_path, gateway)) as h:
        run = await h.start("aviso")
        waiting = await only_message(h, run.id)
        assert waiting.status == MessageStatus.QUEUED
        assert waiting.next_attempt_at is not None
        assert waiting.next_attempt_at - h.clock.now() == timedelta(hours=1)

        await h.advance(timedelta(hours=1, minutes=1))
        assert (await only_message(h, run.id)).status == MessageStatus.SENT
        assert gateway.stats()["delivered"] == 1


@pytest.mark.parametrize(
    ("fault", "http"),
    [
        (Fault.error(503), {}),  # retried from queued...
        (Fault.disconnect(), {"idempotency_header": None}),  # ...or marked ambiguous
    ],
    ids=["5xx", "lost-answer-without-key"],
)
async def test_a_failed_send_the_provider_reported_meanwhile_keeps_the_report(
    tmp_path: Path, gateway: FakeGateway, fault: Fault, http: dict[str, Any]
) -> None:
    """A 504 from a proxy while the vendor took the message, and its `delivered`
    webhook landing before the engine records the failure: the report wins, the
    message is not put back in the queue (a second send) nor marked ambiguous."""
    gateway.fail_next(fault)
    async with harness(make_settings(tmp_path, gateway, **http)) as h:
        provider = h.engine.providers["gateway"]
        real_send = provider.send

        async def report_arrives_during_the_post(message: Any) -> Any:
            try:
                return await real_send(message)
            finally:
                reported = reported_change(
                    message.message_id,
                    stored=MessageStatus.SENDING,
                    new=MessageStatus.DELIVERED,
                    at=h.clock.now(),
                    error=None,
                )
                await h.engine.store.commit(Commit(now=h.clock.now(), messages=[reported]))

        provider.send = report_arrives_during_the_post  # type: ignore[method-assign]
        run = await h.start("aviso")
        await h.advance(timedelta(hours=1))

        message = await only_message(h, run.id)
        assert message.status == MessageStatus.DELIVERED
        assert gateway.stats()["requests"] == 1  # an hour later: never sent again


async def test_a_send_cut_off_after_it_left_is_ambiguous_on_recovery_and_a_report_settles_it(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    """The worker dies after the gateway took the message (kill -9 stands here as an
    exception the dispatcher can't classify): the message stays `sending`. Its work
    comes back, and for a provider without idempotency keys the engine must not
    resend: the message becomes ambiguous, until a status report settles it."""
    async with harness(make_settings(tmp_path, gateway, idempotency_header=None)) as h:
        provider = h.engine.providers["gateway"]
        real_send = provider.send
        sent: list[Any] = []

        async def dies_after_the_post(message: Any) -> Any:
            result = await real_send(message)
            sent.append(result)
            if len(sent) == 1:
                raise RuntimeError("worker killed before recording the answer")
            return result

        provider.send = dies_after_the_post  # type: ignore[method-assign]
        run = await h.start("aviso")
        assert (await only_message(h, run.id)).status == MessageStatus.SENDING

        await h.advance(timedelta(hours=1))
        message = await only_message(h, run.id)
        assert message.status == MessageStatus.AMBIGUOUS
        assert gateway.stats()["requests"] == 1

        await h.engine.ingest_status_reports(
            [
                StatusReport(
                    provider="gateway",
                    status=MessageStatus.DELIVERED,
                    at=h.clock.now(),
                    provider_message_id=sent[0].provider_message_id,
                    idempotency_key=message.idempotency_key,
                )
            ]
        )
        await h.engine.settle()
        assert (await only_message(h, run.id)).status == MessageStatus.DELIVERED
        assert gateway.stats()["requests"] == 1


async def test_messages_refused_together_come_back_spread_out_not_as_one_burst(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.fail_next(Fault.error(503), times=20)
    settings = make_settings(tmp_path, gateway)
    settings = settings.model_copy(
        update={
            "dispatcher": settings.dispatcher.model_copy(
                update={"breaker_failures": 100, "backoff_base": 2.0, "backoff_cap": 300.0}
            )
        }
    )
    async with harness(settings) as h:
        h.engine.dispatcher.rng = random.Random(20261123)
        runs = [await h.start("aviso", contact=f"c-{n}", phone=f"+55119{n:08d}") for n in range(20)]
        waiting = [await only_message(h, run.id) for run in runs]
        delays = [(m.next_attempt_at - h.clock.now()).total_seconds() for m in waiting]

    # Full jitter: each retry lands anywhere up to the ceiling (2 s x 2 for the first
    # retry), never straight back and never all at one moment the gateway then meets.
    assert all(m.status == MessageStatus.QUEUED and m.attempts == 1 for m in waiting)
    assert all(0.4 <= d <= 4.0 for d in delays), delays
    assert len({round(d, 3) for d in delays}) == 20, delays
    assert statistics.pstdev(delays) / statistics.mean(delays) > 0.2, delays
