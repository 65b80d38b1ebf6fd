"""`max_attempts` counts the tries that may have reached the provider: a refused
connection or a 429 sent nothing and does not use it up, so the next 5xx is retried
as the budget says; and a provider with idempotency keys that never answers usably
is not resent for ever."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

from engine.models import MessageStatus
from tests.fakes.gateway import FakeGateway, Fault
from tests.integration.engine_kit import harness
from tests.integration.test_provider_faults import AUTH, _http, only_message, settings_with


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_refused_connections_do_not_use_up_the_budget_a_5xx_then_needs(
    tmp_path: Path,
) -> None:
    port = _free_port()
    config = _http(
        {"type": "http", "url": f"http://127.0.0.1:{port}/v1/messages",
         "headers": {"Authorization": AUTH}, "timeout": 0.3}
    )  # fmt: skip
    async with harness(settings_with(tmp_path, "gateway", config)) as h:  # max_attempts 3
        run = await h.start("aviso")
        await h.advance(timedelta(minutes=30))  # nobody listens: nothing ever left
        unreached = await only_message(h, run.id)
        gateway = FakeGateway(auth_value=AUTH)
        await gateway.start(port=port)
        try:
            gateway.fail_next(Fault.error(503), times=2)  # two real tries fail, the third goes
            await h.advance(timedelta(minutes=30))
            message = await only_message(h, run.id)
            requests = gateway.stats()["requests"]
        finally:
            await gateway.close()

    assert unreached.status == MessageStatus.QUEUED
    assert unreached.attempts == 0
    assert message.status == MessageStatus.SENT, message.last_error
    assert message.attempts == 3
    assert requests == 3


async def test_a_keyed_provider_that_never_answers_usably_is_tried_max_attempts_times(
    tmp_path: Path,
) -> None:
    async with FakeGateway(auth_value=AUTH) as gateway:
        gateway.fail_for(Fault.html(), seconds=10**9)  # a 200 with an HTML page, for ever
        config = _http(
            {"type": "http", "url": gateway.url, "headers": {"Authorization": AUTH},
             "timeout": 0.3}
        )  # fmt: skip
        async with harness(settings_with(tmp_path, "gateway", config)) as h:  # max_attempts 3
            run = await h.start("aviso")
            await h.advance(timedelta(hours=1))
            message = await only_message(h, run.id)
        requests = gateway.stats()["requests"]

    assert requests == 3
    assert message.status == MessageStatus.AMBIGUOUS
    assert message.last_error is not None
    assert message.last_error.startswith("no usable answer after 3 attempts")
