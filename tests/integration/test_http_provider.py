"""The http provider against the fake gateway: every fault becomes its exact typed error."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from engine.errors import (
    ProviderAmbiguous,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    ProviderUnreachable,
)
from engine.models import Channel, MessageStatus, OutboundMessage, Template, Text
from providers.http import HttpConfig, HttpProvider
from providers.registry import config_model_for, provider_class
from providers.transport import HttpTransport
from tests.fakes.gateway import FakeGateway, Fault
from tests.provider_kit import NoHost, outbound, started_providers

TOKEN = "gw-s3cr3t-token-5f1e9a"
AUTH = f"Bearer {TOKEN}"
PHONE = "+5511999991234"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

MakeProvider = Callable[..., Awaitable[HttpProvider]]


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


@pytest.fixture
async def make_provider(gateway: FakeGateway) -> AsyncIterator[MakeProvider]:
    def build(**config: Any) -> HttpProvider:
        settings = {
            "type": "http",
            "url": gateway.url,
            "headers": {"Authorization": AUTH},
            "timeout": 10,
            **config,
        }
        return HttpProvider("gw", HttpConfig.model_validate(settings), NoHost())

    async with started_providers(build) as make:
        yield make


def message(
    key: str = "run-1:lembrete:0", *, channel: Channel = "whatsapp", phone: str | None = PHONE
) -> OutboundMessage:
    return outbound(
        Text(body="Olá Ana"),
        key=key,
        channel=channel,
        phone=phone,
        email="ana@example.com",
        hints={"recent_contact_hours": 4},
    )


def assert_no_secret(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc)
    assert TOKEN not in text


# ---------------------------------------------------------------- success


async def test_a_send_posts_the_documented_body_and_returns_the_gateway_id(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    result = await provider.send(message("k-1"))
    assert result.status == MessageStatus.SENT
    assert result.provider_message_id == gateway.ids_by_key["k-1"]
    assert result.provider_message_id.startswith("gw-")
    assert gateway.received == [
        {
            "message_id": "msg-k-1",
            "idempotency_key": "k-1",
            "to": {"phone": PHONE, "email": "ana@example.com"},
            "channel": "whatsapp",
            "content": {"type": "text", "body": "Olá Ana", "preview_url": False},
            "flow": "cobranca",
            "step": "lembrete",
            "hints": {"recent_contact_hours": 4},
        }
    ]
    assert gateway.received_headers[0]["Idempotency-Key"] == "k-1"
    assert gateway.received_headers[0]["Content-Type"] == "application/json"
    assert provider.build_request(message("k-1")) == gateway.received[0]


async def test_a_resend_with_the_same_key_is_delivered_once(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    first = await provider.send(message("k-1"))
    again = await provider.send(message("k-1"))
    assert again.provider_message_id == first.provider_message_id
    assert gateway.requests_by_key["k-1"] == 2
    assert gateway.delivered_keys["k-1"] == 1
    assert provider.capabilities.idempotency_key is True


async def test_without_the_key_header_the_provider_says_so_and_resends_duplicate(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    provider = await make_provider(idempotency_header=None)
    await provider.send(message("k-1"))
    await provider.send(message("k-1"))
    assert provider.capabilities.idempotency_key is False
    assert "Idempotency-Key" not in gateway.received_headers[0]
    assert gateway.delivered_keys["k-1"] == 2  # why the engine never resends blindly then


async def test_id_field_reads_a_custom_path_and_null_accepts_no_id(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    gateway.fail_next(Fault.no_id())
    keyless = await make_provider(id_field=None)
    assert (await keyless.send(message("k-1"))).provider_message_id is None
    elsewhere = await make_provider(id_field="messages.1.id")
    with pytest.raises(ProviderAmbiguous, match=r"nothing at 'messages\.1\.id'"):
        await elsewhere.send(message("k-2"))


async def test_at_most_max_in_flight_requests_are_open_at_once(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    provider = await make_provider(max_in_flight=2, timeout=5)
    gateway.pause()
    sends = [asyncio.create_task(provider.send(message(f"k-{i}"))) for i in range(5)]
    for _ in range(200):
        if gateway.in_flight == 2:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)  # room for a third request to slip through if it could
    assert gateway.in_flight == 2
    gateway.resume()
    results = await asyncio.gather(*sends)
    assert len({r.provider_message_id for r in results}) == 5
    assert gateway.max_in_flight == 2


# ---------------------------------------------------------------- answers


async def test_429_is_rate_limited_with_retry_after_in_seconds(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    gateway.fail_next(Fault.rate_limit(retry_after="7"))
    with pytest.raises(ProviderRateLimited) as caught:
        await (await make_provider()).send(message())
    assert caught.value.retry_after == 7.0
    assert caught.value.status == 429
    assert caught.value.retryable is True
    assert gateway.delivered_keys == {}


async def test_429_with_an_http_date_waits_until_that_date(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    gateway.fail_next(Fault.rate_limit(retry_after=format_datetime(when, usegmt=True)))
    with pytest.raises(ProviderRateLimited) as caught:
        await (await make_provider()).send(message())
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_unavailable_and_retryable(
    gateway: FakeGateway, make_provider: MakeProvider, status: int
) -> None:
    gateway.fail_next(Fault.error(status))
    with pytest.raises(ProviderUnavailable) as caught:
        await (await make_provider()).send(message())
    assert caught.value.status == status
    assert caught.value.retryable is True
    assert caught.value.vendor_message == "upstream down"


async def test_a_key_that_fails_twice_succeeds_on_the_third_try_and_is_delivered_once(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    gateway.fail_key("k-1", Fault.error(500), times=2)
    provider = await make_provider()
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await provider.send(message("k-1"))
    assert (await provider.send(message("k-1"))).provider_message_id is not None
    assert (await provider.send(message("k-2"))).provider_message_id is not None
    assert gateway.requests_by_key == {"k-1": 3, "k-2": 1}
    assert gateway.delivered_keys == {"k-1": 1, "k-2": 1}


async def test_400_is_final_and_keeps_the_vendors_message(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    gateway.fail_next(Fault.reject("número não é WhatsApp"))
    with pytest.raises(ProviderRejected) as caught:
        await (await make_provider()).send(message())
    assert caught.value.retryable is False
    assert caught.value.status == 400
    assert caught.value.vendor_message == "número não é WhatsApp"
    assert "número não é WhatsApp" in str(caught.value)


async def test_wrong_credentials_are_an_auth_error(make_provider: MakeProvider) -> None:
    provider = await make_provider(headers={"Authorization": "Bearer wrong-token"})
    with pytest.raises(ProviderAuthError) as caught:
        await provider.send(message())
    assert caught.value.status == 401


# ---------------------------------------------------------------- lost answers


async def test_a_hang_after_the_gateway_took_the_message_is_ambiguous(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    gateway.fail_next(Fault.hang())
    impatient = await make_provider(timeout=0.2)  # only the hung request waits this little
    with pytest.raises(ProviderAmbiguous, match="no answer") as caught:
        await impatient.send(message("k-1"))
    assert caught.value.left is True
    # The gateway did deliver it: the same key again must not deliver twice.
    again = await (await make_provider()).send(message("k-1"))
    assert again.provider_message_id == gateway.ids_by_key["k-1"]
    assert gateway.delivered_keys["k-1"] == 1


async def test_a_connection_closed_after_the_body_was_read_is_ambiguous(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    gateway.fail_next(Fault.disconnect())
    with pytest.raises(ProviderAmbiguous, match="ServerDisconnectedError") as caught:
        await (await make_provider()).send(message())
    assert caught.value.left is True
    assert isinstance(caught.value.__cause__, aiohttp.ServerDisconnectedError)


@pytest.mark.parametrize("fault", [Fault.html(), Fault.no_id()])
async def test_a_200_without_a_message_id_is_ambiguous(
    gateway: FakeGateway, make_provider: MakeProvider, fault: Fault
) -> None:
    gateway.fail_next(fault)
    with pytest.raises(ProviderAmbiguous, match="200 without a message id") as caught:
        await (await make_provider()).send(message())
    assert caught.value.left is True
    assert caught.value.status == 200


async def test_a_refused_connection_never_left(make_provider: MakeProvider) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    provider = await make_provider(url=f"http://127.0.0.1:{dead}/v1/messages?token={TOKEN}")
    with pytest.raises(ProviderUnreachable, match="could not connect") as caught:
        await provider.send(message())
    assert caught.value.left is False
    assert caught.value.retryable is True
    assert_no_secret(caught.value)


def test_a_timeout_before_the_request_was_written_is_unavailable_not_ambiguous() -> None:
    transport = HttpTransport("gw", timeout=1, max_in_flight=1)
    url = "http://127.0.0.1:9/v1"
    before = transport.transport_error(aiohttp.ConnectionTimeoutError(), url, left=False)
    after = transport.transport_error(TimeoutError(), url, left=True)
    reset_before = transport.transport_error(aiohttp.ServerDisconnectedError(), url, left=False)
    assert (type(before), before.left) == (ProviderUnavailable, False)
    assert (type(after), after.left) == (ProviderAmbiguous, True)
    assert (type(reset_before), reset_before.left) == (ProviderUnreachable, False)


# ---------------------------------------------------------------- refused before sending


async def test_a_channel_or_content_the_gateway_does_not_take_is_rejected_unsent(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    provider = await make_provider(channels=["sms"], content_types=["text"])
    with pytest.raises(ProviderRejected, match="does not send whatsapp") as caught:
        await provider.send(message())
    assert caught.value.left is False
    templated = dataclasses.replace(message(channel="sms"), content=Template(name="lembrete"))
    with pytest.raises(ProviderRejected, match="does not take template"):
        await provider.send(templated)
    with pytest.raises(ProviderRejected, match="no phone number"):
        await provider.send(message(channel="sms", phone=None))
    assert gateway.requests_by_key == {}


async def test_the_fake_enforces_its_contract(gateway: FakeGateway) -> None:
    headers = {"Authorization": AUTH}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url, json={"to": {"phone": PHONE}}) as answer:
            assert answer.status == 401
        for body, said in [
            ({"channel": "sms", "content": {"type": "text"}}, "'to' is required"),
            ({"to": {}, "channel": "sms", "content": {"type": "text"}}, "phone or an email"),
            ({"to": {"phone": PHONE}, "channel": "fax", "content": {"type": "text"}}, "channel"),
        ]:
            async with session.post(gateway.url, json=body, headers=headers) as answer:
                assert answer.status == 400
                assert said in (await answer.json())["error"]["message"]
        async with session.get(gateway.url.replace("/v1/messages", "/_stats")) as answer:
            assert (await answer.json())["delivered"] == 0


# ---------------------------------------------------------------- secrets and config


async def test_secrets_never_reach_an_error_or_a_log_line(
    gateway: FakeGateway, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = await make_provider()
    impatient = await make_provider(timeout=0.2)  # for the hang alone: it times out
    faults = [
        Fault.rate_limit(),
        Fault.error(503),
        Fault.hang(),
        Fault.disconnect(),
        Fault.html(),
        Fault.reject(f"token {TOKEN} is not allowed to send"),
    ]
    errors: list[ProviderError] = []
    for fault in faults:
        gateway.fail_next(fault)
        sender = impatient if fault.kind == "hang" else provider
        with pytest.raises(ProviderError) as caught:
            await sender.send(message(f"k-{fault.kind}"))
        errors.append(caught.value)
    wrong = await make_provider(headers={"Authorization": "Bearer another-s3cret"})
    with pytest.raises(ProviderAuthError) as denied:
        await wrong.send(message())
    for error in [*errors, denied.value]:
        assert_no_secret(error)
        assert "another-s3cret" not in str(error)
    assert errors[-1].vendor_message == "token *** is not allowed to send"
    assert "Bearer" not in repr(provider.config)
    assert len(caplog.records) >= len(faults)
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert TOKEN not in text
        assert PHONE not in text


async def test_a_secret_cut_by_the_length_limit_of_an_error_leaves_no_prefix(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    # The vendor's words are cut to 300 characters before they are redacted: a token
    # echoed across the cut kept its first characters in `last_error`.
    provider = await make_provider()
    gateway.fail_next(Fault.reject("x" * 290 + f" {TOKEN} was refused"))
    with pytest.raises(ProviderError) as caught:
        await provider.send(message("k-cut"))
    said = caught.value.vendor_message or ""
    assert said.endswith(" ***…")
    assert TOKEN[:4] not in said
    assert TOKEN[:4] not in str(caught.value)


async def test_the_webhook_takes_statuses_by_our_key(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    body = json.dumps({"statuses": [{"key": "k-1", "status": "read"}]}).encode()
    (report,) = provider.parse_webhook(body, {}, NOW).statuses
    assert (report.provider, report.idempotency_key, report.status) == ("gw", "k-1", "read")


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"url": "ftp://gateway/x"}, "http"),
        ({"id_field": "messages..id"}, "dotted path"),
        ({"content_types": ["fax"]}, "unknown content type"),
        ({"headers": {"idempotency-key": "x"}}, "idempotency key"),
        ({"timeout": 0}, "timeout"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"heders": {}}, "heders"),
        (
            {"url": "https://bot:pw@gw.internal/v1", "headers": {"authorization": "Bearer x"}},
            "keep one of them",
        ),
    ],
)
def test_bad_configs_are_refused(config: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        HttpConfig.model_validate({"type": "http", "url": "https://gw.internal/v1", **config})


def test_registry_and_capabilities() -> None:
    assert provider_class("http") is HttpProvider
    assert config_model_for("http") is HttpConfig
    config = HttpConfig(url="https://gw.internal/v1", read_receipts=False, channels=("sms",))
    caps = HttpProvider("gw", config, NoHost()).capabilities
    assert (caps.read_receipts, caps.channels, caps.idempotency_key) == (
        False,
        frozenset({"sms"}),
        True,
    )
    assert len(caps.content_types) == 7


async def test_send_before_start_is_a_programming_error() -> None:
    provider = HttpProvider("gw", HttpConfig(url="https://gw.internal/v1"), NoHost())
    with pytest.raises(RuntimeError, match="before start"):
        await provider.send(message())
    await provider.close()


# ---------------------------------------------------------------- oversized answers

HUGE_ANSWER = 64 << 20  # what a broken gateway or a proxy in the way streams back


@pytest.fixture
async def flooding_gateway() -> AsyncIterator[tuple[str, list[int]]]:
    """A gateway that answers any send with ``?status=`` and 64 MiB of body; the list
    holds how many bytes each answer got out before the client stopped reading."""
    streamed: list[int] = []

    async def flood(request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = web.StreamResponse(status=int(request.query.get("status", "200")))
        answer.content_type = "application/json"
        await answer.prepare(request)
        sent, chunk = 0, b"[" * (256 << 10)
        streamed.append(0)
        try:
            while sent < HUGE_ANSWER:
                await answer.write(chunk)
                sent += len(chunk)
                streamed[-1] = sent
            await answer.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client hung up: what we want
        return answer

    app = web.Application()
    app.router.add_post("/v1/messages", flood)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1/messages", streamed
    finally:
        await runner.cleanup()


async def test_a_200_with_an_endless_body_is_ambiguous_without_reading_it_all(
    flooding_gateway: tuple[str, list[int]], make_provider: MakeProvider
) -> None:
    url, streamed = flooding_gateway
    provider = await make_provider(url=url, timeout=10)
    with pytest.raises(ProviderAmbiguous, match="larger than") as caught:
        await provider.send(message())
    # The gateway answered 200: it may have the message, so it is ambiguous, and the
    # engine stopped reading long before 64 MiB piled up in its memory.
    assert (caught.value.status, caught.value.left) == (200, True)
    assert streamed[0] < HUGE_ANSWER // 4, streamed


async def test_an_error_with_an_endless_body_keeps_its_status_without_reading_it_all(
    flooding_gateway: tuple[str, list[int]], make_provider: MakeProvider
) -> None:
    url, streamed = flooding_gateway
    provider = await make_provider(url=f"{url}?status=503", timeout=10)
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(message())
    assert caught.value.status == 503
    assert streamed[0] < HUGE_ANSWER // 4, streamed


async def test_a_credential_in_the_url_is_redacted_from_the_vendors_echo(
    gateway: FakeGateway, make_provider: MakeProvider
) -> None:
    # Gateways that take their key in the query string often echo the request they
    # refused; the key then reached the log and the message's last_error.
    key = "url-s3cr3t-key-90210"
    gateway.fail_next(Fault.reject(f"bad request to {gateway.url}?apikey={key}"))
    provider = await make_provider(url=f"{gateway.url}?apikey={key}")
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(message())
    text = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
    assert key not in text
    assert "apikey=***" in str(caught.value)
