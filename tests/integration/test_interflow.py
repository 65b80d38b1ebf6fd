"""The Interflow adapter against a fake that enforces Interflow's send-message document.

Time for the rate limit is a manual clock shared by the adapter and the fake: a send
that waits for a slot moves the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr, ValidationError

from engine.circuit import unwell
from engine.errors import (
    ProviderAmbiguous,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    ProviderUnreachable,
)
from engine.models import (
    Button,
    Buttons,
    Channel,
    Content,
    Email,
    ListMenu,
    ListRow,
    ListSection,
    Location,
    Media,
    MessageStatus,
    OutboundMessage,
    Template,
    Text,
)
from engine.settings import Settings
from providers.base import ProviderHost
from providers.interflow import InterflowConfig, InterflowProvider
from providers.interflow_rate_limit import read_rate_limit_headers
from providers.registry import config_model_for, provider_class
from providers.transport import Answer
from tests.fakes.interflow import FakeInterflow, Fault, status_event
from tests.provider_kit import NoHost, outbound

API_KEY = "if_live_s3cr3t_9f8e7d6c5b4a"
CHANNEL = "550e8400-e29b-41d4-a716-446655440000"
UNKNOWN_CHANNEL = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
OFFLINE_CHANNEL = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
PHONE = "+5511999999999"  # the document's recipient
WALL_START = 1_700_000_000.0
NOW = datetime(2024, 1, 15, 10, 31, tzinfo=UTC)


class ManualClock:
    """Monotonic and wall time that move only when a sleeper asks; sleepers never wait.

    Before moving, a sleeper lets the requests already under way reach the fake, so
    the fake stamps them with the time they were started at, not a later one.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.requests_under_way = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        wake_at = self.now + seconds
        await self._idle.wait()
        self.now = max(self.now, wake_at)  # sleepers to the same instant move it once
        await asyncio.sleep(0)

    def count_requests(self, provider: InterflowProvider) -> None:
        """Track ``provider``'s requests under way (see the class docstring)."""
        transport = provider._http
        request = transport.request

        async def counted(*args: Any, **kwargs: Any) -> Answer:
            self.requests_under_way += 1
            self._idle.clear()
            try:
                return await request(*args, **kwargs)
            finally:
                self.requests_under_way -= 1
                if not self.requests_under_way:
                    self._idle.set()

        transport.request = counted  # type: ignore[method-assign]


MakeProvider = Callable[..., Awaitable[InterflowProvider]]
NO_HOST: ProviderHost = NoHost()  # no store: the rate limit stays in memory
LONG_PHONE = "+55119999999999999"  # too long: Interflow's 400 echoes it


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def fake(clock: ManualClock) -> AsyncIterator[FakeInterflow]:
    async with FakeInterflow(
        api_keys={API_KEY: ("messages:write",), "if_live_readonly_1234": ("messages:read",)},
        channels={CHANNEL: "connected", OFFLINE_CHANNEL: "disconnected"},
        limit_per_minute=300,
        monotonic=clock.monotonic,
        wall_clock=clock.wall,
    ) as server:
        yield server


@pytest.fixture
async def make_provider(fake: FakeInterflow, clock: ManualClock) -> AsyncIterator[MakeProvider]:
    opened: list[InterflowProvider] = []

    async def make(*, max_slot_wait: float = 5.0, **config: Any) -> InterflowProvider:
        settings = {
            "type": "interflow",
            "base_url": fake.base_url,
            "api_key": API_KEY,
            "channel_id": CHANNEL,
            "rate_limit": "300/min",
            "webhook_secret": "hook-secret-123",
            "timeout": 10,
            **config,
        }
        provider = InterflowProvider(
            "interflow",
            InterflowConfig.model_validate(settings),
            NO_HOST,
            monotonic=clock.monotonic,
            wall_clock=clock.wall,
            sleep=clock.sleep,
            max_slot_wait=max_slot_wait,
        )
        await provider.start()
        clock.count_requests(provider)
        opened.append(provider)
        return provider

    yield make
    for provider in opened:
        await provider.close()


def message(
    content: Content | None = None,
    *,
    key: str = "run-1:aviso:0",
    channel: Channel = "whatsapp",
    phone: str | None = PHONE,
) -> OutboundMessage:
    return outbound(
        content or Text(body="Olá! Esta é uma mensagem de teste."),
        key=key,
        flow="pedido",
        step="aviso",
        channel=channel,
        phone=phone,
        name="João",
    )


def text_of(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(vars(exc))


# ---------------------------------------------------------------- every documented body

DOCUMENTED: list[tuple[str, Content, str, dict[str, Any]]] = [
    (
        "text",
        Text(body="Olá! Esta é uma mensagem de teste.", preview_url=True),
        "text",
        {"text": "Olá! Esta é uma mensagem de teste."},
    ),
    (
        "image",
        Media(
            kind="image",
            url="https://exemplo.com/imagem.jpg",
            caption="Confira nossa nova coleção!",
            mime_type="image/jpeg",
        ),
        "image",
        {"url": "https://exemplo.com/imagem.jpg", "caption": "Confira nossa nova coleção!"},
    ),
    (
        "document",
        Media(
            kind="document",
            url="https://exemplo.com/contrato.pdf",
            filename="contrato.pdf",
            caption="Segue o contrato em anexo.",
        ),
        "document",
        {
            "url": "https://exemplo.com/contrato.pdf",
            "filename": "contrato.pdf",
            "caption": "Segue o contrato em anexo.",
        },
    ),
    (
        "location",
        Location(
            latitude=-23.5505,
            longitude=-46.6333,
            name="Escritório Central",
            address="Av. Paulista, 1000 - São Paulo",
            url="https://maps.example/x",
        ),
        "location",
        {
            "latitude": -23.5505,
            "longitude": -46.6333,
            "name": "Escritório Central",
            "address": "Av. Paulista, 1000 - São Paulo",
        },
    ),
    (
        "template, params in the catalogue's order",
        Template(
            name="order_confirmation",
            language="pt_BR",
            params={"PrimeiroNome": "João", "Pedido": "12345"},
        ),
        "template",
        {
            "name": "order_confirmation",
            "language": "pt_BR",
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "João"},
                        {"type": "text", "text": "12345"},
                    ],
                }
            ],
        },
    ),
    # Types the document lists without an example.
    (
        "video",
        Media(kind="video", url="https://exemplo.com/v.mp4", caption="Veja"),
        "video",
        {"url": "https://exemplo.com/v.mp4", "caption": "Veja"},
    ),
    (
        "audio drops the caption WhatsApp cannot show",
        Media(kind="audio", url="https://exemplo.com/a.ogg", caption="ouça"),
        "audio",
        {"url": "https://exemplo.com/a.ogg"},
    ),
    (
        "template without parameters",
        Template(name="hello", language="pt_BR"),
        "template",
        {"name": "hello", "language": "pt_BR", "components": []},
    ),
    (
        "image without a caption",
        Media(kind="image", url="https://exemplo.com/i.png"),
        "image",
        {"url": "https://exemplo.com/i.png"},
    ),
    # A caption, file name or place name rendered empty says nothing: left out,
    # never sent as "" (the fake, like a strict validator, wants them non-empty).
    (
        "an empty caption is left out",
        Media(kind="image", url="https://exemplo.com/i.png", caption=""),
        "image",
        {"url": "https://exemplo.com/i.png"},
    ),
    (
        "an empty file name and caption are left out",
        Media(kind="document", url="https://exemplo.com/c.pdf", filename=" ", caption=""),
        "document",
        {"url": "https://exemplo.com/c.pdf"},
    ),
    (
        "an empty place name and address are left out",
        Location(latitude=-23.5505, longitude=-46.6333, name="", address=""),
        "location",
        {"latitude": -23.5505, "longitude": -46.6333},
    ),
]


@pytest.mark.parametrize(
    ("content", "kind", "expected"),
    [case[1:] for case in DOCUMENTED],
    ids=[case[0] for case in DOCUMENTED],
)
async def test_each_documented_message_type_is_sent_as_the_document_shows(
    fake: FakeInterflow,
    make_provider: MakeProvider,
    content: Content,
    kind: str,
    expected: dict[str, Any],
) -> None:
    provider = await make_provider()
    result = await provider.send(message(content))
    body = {"channel_id": CHANNEL, "to": "5511999999999", "type": kind, "content": expected}
    assert fake.accepted == [body]
    assert provider.build_request(message(content)) == body
    assert result.status == MessageStatus.SENT
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("msg_")
    assert result.raw["data"]["id"] == result.provider_message_id
    headers = fake.accepted_headers[0]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["Content-Type"] == "application/json"
    assert fake.answers == [201]


async def test_positional_params_given_as_a_tuple_keep_their_order(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await provider.send(message(Template(name="t", language="pt_BR", params=("b", "a", "c"))))
    (component,) = fake.accepted[0]["content"]["components"]
    assert [p["text"] for p in component["parameters"]] == ["b", "a", "c"]


async def test_a_base_url_copied_with_v1_reaches_the_same_endpoint(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    provider = await make_provider(base_url=f"{fake.base_url}/v1/")
    await provider.send(message())
    assert fake.answers == [201]


REFUSED: list[tuple[str, OutboundMessage, str]] = [
    (
        "buttons",
        message(Buttons(body="Pagar?", buttons=(Button(id="sim", title="Sim"),))),
        "cannot send buttons",
    ),
    (
        "list",
        message(
            ListMenu(
                body="Escolha",
                button="Ver",
                sections=(ListSection(rows=(ListRow(id="1", title="Um"),)),),
            )
        ),
        "cannot send list",
    ),
    ("email", message(Email(subject="Oi", body="..."), channel="email"), "sends only whatsapp"),
    ("sms", message(channel="sms"), "sends only whatsapp, not sms"),
    ("no phone", message(phone=None), "no phone number for contact c-1"),
    ("sticker", message(Media(kind="sticker", url="https://x/s.webp")), "cannot send a sticker"),
    ("base64", message(Media(kind="image", base64="aGVsbG8=")), "by url only"),
    (
        "template header file",
        message(
            Template(
                name="t",
                language="pt_BR",
                header_media=Media(kind="document", url="https://x/boleto.pdf"),
            )
        ),
        "header file",
    ),
    ("template language", message(Template(name="t")), "set `language:`"),
    (
        "template language as BCP 47",
        message(Template(name="t", language="pt-BR")),
        "language `pt-BR` is not a WhatsApp language code; write `pt_BR`",
    ),
]


@pytest.mark.parametrize(
    ("outbound", "said"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
async def test_what_the_document_does_not_show_is_refused_before_any_request(
    fake: FakeInterflow, make_provider: MakeProvider, outbound: OutboundMessage, said: str
) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderRejected, match=said) as caught:
        await provider.send(outbound)
    assert caught.value.left is False
    assert caught.value.retryable is False
    with pytest.raises(ProviderRejected, match=said):
        provider.build_request(outbound)  # `disparo simulate` fails the same way
    assert fake.answers == []


# ---------------------------------------------------------------- documented errors


async def test_the_fake_answers_the_documented_400_404_and_422_bodies(
    fake: FakeInterflow,
) -> None:
    url = f"{fake.base_url}/v1/messages/send"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body_with(to=None), headers=headers) as answer:
            assert answer.status == 400
            assert await answer.json() == {
                "success": False,
                "error": {
                    "code": "VALIDATION_ERROR",
                    "message": "Campo 'to' é obrigatório",
                    "details": [{"field": "to", "message": "Campo obrigatório"}],
                },
            }
        for channel, status, code, said in [
            (UNKNOWN_CHANNEL, 404, "CHANNEL_NOT_FOUND", "Canal não encontrado"),
            (OFFLINE_CHANNEL, 422, "CHANNEL_DISCONNECTED", "O canal está desconectado"),
        ]:
            body = body_with(channel_id=channel)
            async with session.post(url, json=body, headers=headers) as answer:
                assert answer.status == status
                assert await answer.json() == {
                    "success": False,
                    "error": {"code": code, "message": said},
                }
    assert fake.accepted == []


def body_with(**changes: Any) -> dict[str, Any]:
    """A valid text body with ``changes`` (``None`` removes a field)."""
    body = {"channel_id": CHANNEL, "to": "5511999999999", "type": "text", "content": {"text": "x"}}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


TEMPLATE_WITH_HEADER = {
    "name": "t",
    "language": "pt_BR",
    "components": [{"type": "header", "parameters": []}],
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (body_with(channel_id=None), "channel_id"),
        (body_with(channel_id="canal-1"), "channel_id"),
        (body_with(to="+55 11 9999"), "to"),
        (body_with(to="11999999999"), "to"),  # the country code left out
        (body_with(type="sticker"), "type"),
        (body_with(content="x"), "content"),
        (body_with(content={"body": "x"}), "content.text"),
        (body_with(type="image", content={"url": "ftp://x"}), "content.url"),
        (body_with(type="location", content={"latitude": 91, "longitude": 0}), "content.latitude"),
        (body_with(type="template", content=TEMPLATE_WITH_HEADER), "content.components"),
        (
            body_with(
                type="template", content={"name": "t", "language": "pt-BR", "components": []}
            ),
            "content.language",
        ),
        (body_with(key=1), "key"),
    ],
)
async def test_the_fake_enforces_each_documented_field(
    fake: FakeInterflow, body: dict[str, Any], field: str
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.base_url}/v1/messages/send", json=body, headers=headers) as answer,
    ):
        assert answer.status == 400
        error = (await answer.json())["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in error["details"]]


async def test_the_fake_wants_bearer_auth_json_and_the_write_permission(
    fake: FakeInterflow,
) -> None:
    url = f"{fake.base_url}/v1/messages/send"
    body = body_with()
    async with aiohttp.ClientSession() as session:
        for headers, status in [
            ({}, 401),
            ({"Authorization": API_KEY}, 401),
            ({"Authorization": "Bearer if_live_other"}, 401),
            ({"Authorization": "Bearer if_live_readonly_1234"}, 403),
        ]:
            async with session.post(url, json=body, headers=headers) as answer:
                assert answer.status == status
        text_body = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "text/plain"}
        async with session.post(url, data=json.dumps(body), headers=text_body) as answer:
            assert answer.status == 400
            assert (await answer.json())["error"]["details"][0]["field"] == "Content-Type"
    assert fake.accepted == []


async def test_a_validation_error_is_final_with_the_vendors_words_and_details(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(message(Media(kind="image", url="ftp://exemplo.com/i.jpg")))
    error = caught.value
    assert (error.status, error.retryable, error.left) == (400, False, True)
    assert error.vendor_message == (
        "VALIDATION_ERROR: Campo 'content.url' é inválido [content.url: Deve ser uma URL http(s)]"
    )
    assert "Campo 'content.url' é inválido" in str(error)


async def test_a_disconnected_channel_is_unavailable_so_its_messages_wait_and_retry(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    """422 CHANNEL_DISCONNECTED says the WhatsApp number dropped off (usually for
    minutes), for every message: like a 5xx it is retried and counts toward the
    provider's circuit, instead of failing the whole backlog for good."""
    provider = await make_provider(channel_id=OFFLINE_CHANNEL)
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(message())
    error = caught.value
    assert (error.status, error.retryable) == (422, True)
    assert error.vendor_message == "CHANNEL_DISCONNECTED: O canal está desconectado"
    assert unwell(error)
    assert f"channel {OFFLINE_CHANNEL} is disconnected" in str(error)
    assert fake.accepted == []

    fake.channels[OFFLINE_CHANNEL] = "connected"  # the number is back
    await provider.send(message())
    assert len(fake.accepted) == 1


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("channel_id", "CHANNEL_NOT_FOUND: Canal não encontrado"),
        ("base_url", "404: Not Found"),
    ],
)
async def test_an_unknown_channel_or_url_pauses_the_provider_naming_the_setting(
    fake: FakeInterflow, make_provider: MakeProvider, setting: str, said: str
) -> None:
    """A 404 is about this provider's config (a channel_id the key does not own, or a
    base_url with a wrong path), never about one message: like refused credentials
    it pauses the provider and names what to fix, instead of failing every message."""
    wrong = (
        {"channel_id": UNKNOWN_CHANNEL}
        if setting == "channel_id"
        else {"base_url": f"{fake.base_url}/api"}
    )
    provider = await make_provider(**wrong)
    with pytest.raises(ProviderAuthError) as caught:
        await provider.send(message())
    error = caught.value
    assert (error.status, error.vendor_message) == (404, said)
    assert unwell(error)
    assert f"check providers.interflow.{setting} in the config" in str(error)
    assert fake.accepted == []


async def test_errors_about_the_message_stay_final(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(message(phone=LONG_PHONE))
    assert (caught.value.status, caught.value.retryable) == (400, False)
    assert not unwell(caught.value)


@pytest.mark.parametrize(
    ("key", "status"), [("if_live_wrong", 401), ("if_live_readonly_1234", 403)]
)
async def test_a_refused_key_is_an_auth_error(
    make_provider: MakeProvider, key: str, status: int
) -> None:
    provider = await make_provider(api_key=key)
    with pytest.raises(ProviderAuthError) as caught:
        await provider.send(message())
    assert caught.value.status == status


# ---------------------------------------------------------------- the plan's rate limit


async def test_the_limiter_keeps_sends_under_the_plan_and_parks_the_rest(
    fake: FakeInterflow,
    make_provider: MakeProvider,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fake.limit_per_minute = 5
    provider = await make_provider(rate_limit="5/min")
    for i in range(5):
        await provider.send(message(key=f"k-{i}"))
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(message(key="k-5"))
    assert caught.value.left is False
    assert caught.value.status is None
    assert caught.value.retry_after == pytest.approx(61.0)  # the window plus a jitter margin
    assert fake.answers == [201] * 5  # the vendor never saw the sixth
    assert [r.levelname for r in caplog.records] == ["INFO"]  # routine, not a warning
    clock.advance(61.0)
    await provider.send(message(key="k-5"))
    assert fake.answers == [201] * 6


async def test_a_short_wait_for_a_slot_happens_in_the_send(
    fake: FakeInterflow, make_provider: MakeProvider, clock: ManualClock
) -> None:
    fake.limit_per_minute = 5
    provider = await make_provider(rate_limit="5/min")
    for i in range(5):
        await provider.send(message(key=f"k-{i}"))
    clock.advance(58.0)
    await provider.send(message(key="k-5"))
    assert clock.slept == [pytest.approx(3.0)]
    assert fake.answers == [201] * 6


async def test_concurrent_sends_never_exceed_the_limit(
    fake: FakeInterflow, make_provider: MakeProvider, clock: ManualClock
) -> None:
    fake.limit_per_minute = 5
    provider = await make_provider(rate_limit="5/min", max_slot_wait=600.0)
    started = clock.now
    results = await asyncio.gather(*(provider.send(message(key=f"k-{i}")) for i in range(12)))
    assert len({r.provider_message_id for r in results}) == 12
    assert fake.answers == [201] * 12
    assert clock.now - started == pytest.approx(122.0)  # two more windows for the 7 extra


async def test_a_429_is_honoured_and_pauses_the_limiter_for_retry_after(
    fake: FakeInterflow, make_provider: MakeProvider, clock: ManualClock
) -> None:
    provider = await make_provider()
    fake.fail_next(Fault(kind="rate_limit", retry_after="17"))
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(message())
    assert (caught.value.status, caught.value.retry_after) == (429, 17.0)
    assert caught.value.vendor_message == "RATE_LIMIT_EXCEEDED: Limite de requisições excedido"
    with pytest.raises(ProviderRateLimited, match="pause") as paused:
        await provider.send(message())
    assert paused.value.left is False
    assert paused.value.retry_after == pytest.approx(17.0)
    assert fake.answers == [429]
    clock.advance(12.0)
    await provider.send(message())  # waits the last 5 s in the send
    assert clock.slept == [pytest.approx(5.0)]
    assert fake.answers == [429, 201]


async def test_a_429_without_hints_waits_a_whole_window(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    fake.fail_next(Fault(kind="rate_limit"))
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(message())
    assert caught.value.retry_after == 60.0
    assert provider.window.paused_for == pytest.approx(60.0)


async def test_a_retry_after_of_days_pauses_every_send_an_hour_at_most(
    fake: FakeInterflow, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider()
    fake.fail_next(Fault(kind="rate_limit", retry_after="604800"))  # a week
    with pytest.raises(ProviderRateLimited):
        await provider.send(message())
    assert provider.window.paused_for == pytest.approx(3600.0)
    assert "Interflow asked to wait 604800s; pausing its sends 3600s" in caplog.text


async def test_a_second_process_on_the_account_gets_the_documented_429_headers(
    fake: FakeInterflow, make_provider: MakeProvider, clock: ManualClock
) -> None:
    fake.limit_per_minute = 3
    first = await make_provider(rate_limit="3/min")
    second = await make_provider(rate_limit="3/min")
    await first.send(message(key="a-1"))
    await first.send(message(key="a-2"))
    clock.advance(10.0)
    await second.send(message(key="b-1"))  # answered X-RateLimit-Remaining: 0
    assert second.window.paused_for == pytest.approx(50.0)
    with pytest.raises(ProviderRateLimited) as held:
        await second.send(message(key="b-2"))
    assert held.value.left is False  # it knew from the headers; Interflow saw nothing
    with pytest.raises(ProviderRateLimited) as caught:
        await first.send(message(key="a-3"))  # first did not see that answer: a real 429
    assert caught.value.status == 429
    assert caught.value.retry_after == 50.0
    assert first.window.paused_for == pytest.approx(50.0)
    assert fake.answers == [201, 201, 201, 429]


async def test_the_vendors_smaller_limit_lowers_a_too_high_rate_limit(
    fake: FakeInterflow,
    make_provider: MakeProvider,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.limit_per_minute = 3  # a Starter-like plan, configured as Enterprise
    provider = await make_provider(rate_limit="1000/min")
    await provider.send(message(key="k-0"))
    assert provider.window.limit == 3
    assert "allows 3 requests/min, less than rate_limit 1000/min" in caplog.text
    await provider.send(message(key="k-1"))
    clock.advance(30.0)
    await provider.send(message(key="k-2"))
    with pytest.raises(ProviderRateLimited):
        await provider.send(message(key="k-3"))
    assert 429 not in fake.answers


def test_rate_limit_headers_are_read_in_every_documented_form() -> None:
    def read(**headers: str) -> Any:
        return read_rate_limit_headers(CIMultiDict(headers), wall_now=1_640_995_170.0)

    documented = read(**{"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "298"})
    assert (documented.limit, documented.remaining, documented.wait) == (300, 298, None)
    assert read(**{"X-RateLimit-Reset": "1640995200"}).wait == 30.0  # Unix seconds
    assert read(**{"X-RateLimit-Reset": "1640995200000"}).wait == 30.0  # milliseconds
    assert read(**{"X-RateLimit-Reset": "12"}).wait == 12.0  # a delta
    assert read(**{"X-RateLimit-Reset": "1640999999"}).wait == 61.0  # skew: capped
    assert read(**{"X-RateLimit-Reset": "1640995200", "Retry-After": "7"}).wait == 7.0
    garbage = read(**{"X-RateLimit-Limit": "lots", "X-RateLimit-Reset": "soon"})
    assert (garbage.limit, garbage.wait) == (None, None)


def test_a_retry_after_date_is_measured_on_the_engines_clock() -> None:
    # RFC 9110 lets Retry-After be an HTTP-date; the wait is that date minus *our*
    # clock (the engine's, virtual in tests and simulations), never the host's.
    wall_now = datetime(2022, 1, 1, 0, 0, 0, tzinfo=UTC).timestamp()
    said = read_rate_limit_headers(
        CIMultiDict({"Retry-After": "Sat, 01 Jan 2022 00:00:30 GMT"}), wall_now=wall_now
    )
    assert said.retry_after == 30.0
    assert said.wait == 30.0


# ---------------------------------------------------------------- transport faults


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_unavailable_and_nothing_was_taken(
    fake: FakeInterflow, make_provider: MakeProvider, status: int
) -> None:
    fake.fail_next(Fault(kind="error", status=status))
    with pytest.raises(ProviderUnavailable) as caught:
        await (await make_provider()).send(message())
    assert (caught.value.status, caught.value.retryable) == (status, True)
    assert caught.value.vendor_message == "INTERNAL_ERROR: Erro interno"
    assert fake.accepted == []


async def test_a_refused_connection_is_unreachable_and_never_left(
    make_provider: MakeProvider,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    provider = await make_provider(base_url=f"http://127.0.0.1:{dead}")
    with pytest.raises(ProviderUnreachable) as caught:
        await provider.send(message())
    assert (caught.value.left, caught.value.retryable) == (False, True)


async def test_a_timeout_after_interflow_took_the_message_is_ambiguous(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    fake.fail_next(Fault(kind="hang"))
    provider = await make_provider(timeout=0.15)
    with pytest.raises(ProviderAmbiguous, match="no answer") as caught:
        await provider.send(message())
    assert caught.value.left is True
    assert len(fake.accepted) == 1  # a blind resend would deliver it twice
    assert provider.capabilities.idempotency_key is False


async def test_a_connection_dropped_after_the_request_is_ambiguous(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    fake.fail_next(Fault(kind="disconnect"))
    with pytest.raises(ProviderAmbiguous) as caught:
        await (await make_provider()).send(message())
    assert caught.value.left is True
    assert len(fake.accepted) == 1


@pytest.mark.parametrize("kind", ["garbage", "no_id"])
async def test_a_201_without_data_id_is_ambiguous(
    fake: FakeInterflow, make_provider: MakeProvider, kind: Any
) -> None:
    fake.fail_next(Fault(kind=kind))
    with pytest.raises(ProviderAmbiguous, match=r"201 without data\.id") as caught:
        await (await make_provider()).send(message())
    assert caught.value.status == 201


async def test_a_201_that_already_says_failed_is_final_and_names_the_id(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    fake.fail_next(Fault(kind="failed"))
    provider = await make_provider()
    with pytest.raises(ProviderRejected, match=r"took the message as msg_\w+ and reports it fail"):
        await provider.send(message())


# ---------------------------------------------------------------- secrets and phones


async def test_secrets_and_phones_never_reach_errors_or_logs(
    fake: FakeInterflow, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = await make_provider()
    impatient = await make_provider(timeout=0.15)  # for the hang alone: it times out
    errors: list[ProviderError] = []
    for fault in [
        Fault(kind="rate_limit", retry_after="1"),
        Fault(kind="error", status=503),
        Fault(kind="hang"),
        Fault(kind="disconnect"),
        Fault(kind="garbage"),
    ]:
        fake.fail_next(fault)
        sender = impatient if fault.kind == "hang" else provider
        with pytest.raises(ProviderError) as caught:
            await sender.send(message())
        errors.append(caught.value)
    with pytest.raises(ProviderRejected) as invalid:
        await provider.send(message(phone=LONG_PHONE))
    errors.append(invalid.value)
    await provider.send(message())
    wrong = await make_provider(api_key="if_live_another_s3cret")
    with pytest.raises(ProviderAuthError) as denied:
        await wrong.send(message())
    errors.append(denied.value)
    echoed = Answer(400, CIMultiDictProxy(CIMultiDict()), f'{{"error": "{API_KEY}"}}'.encode())
    errors.append(provider._status_error(echoed))
    for error in errors:
        assert API_KEY not in text_of(error)
        assert "if_live_another_s3cret" not in text_of(error)
    assert errors[-1].vendor_message == "***"
    assert API_KEY not in repr(provider.config)
    lines = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert len(lines) >= len(errors)
    for line in lines:
        assert API_KEY not in line
        assert "5511999999999" not in line  # also a prefix of LONG_PHONE
    assert any("+55*******9999" in line for line in lines)
    assert any("+55***********9999" in line for line in lines)


async def test_the_number_interflow_echoes_in_an_error_is_masked_in_the_log(
    make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(message(phone=LONG_PHONE))
    assert "Número inválido: '55119999999999999'" in str(caught.value.vendor_message)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "55119999999999999" not in line
    assert "Número inválido: '+55***********9999'" in line


# ---------------------------------------------------------------- webhooks


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("pending", MessageStatus.SENT),
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("read", MessageStatus.READ),
        ("failed", MessageStatus.FAILED),
    ],
)
async def test_each_documented_status_becomes_a_report(
    make_provider: MakeProvider, word: str, status: MessageStatus
) -> None:
    provider = await make_provider()
    body = json.dumps(status_event("msg_abc123xyz", word, 1705314605.0)).encode()
    parsed = provider.parse_webhook(body, {}, NOW)
    (report,) = parsed.statuses
    assert parsed.errors == []
    assert report.provider == "interflow"
    assert report.status == status
    assert report.provider_message_id == "msg_abc123xyz"
    assert report.at == datetime(2024, 1, 15, 10, 30, 5, tzinfo=UTC)
    assert report.dedupe_key == f"interflow:status:msg_abc123xyz:{word}"


async def test_the_documented_webhook_example_and_its_redelivery(
    make_provider: MakeProvider,
) -> None:
    provider = await make_provider()
    documented = b"""{
      "event": "message.status_updated",
      "data": {"message_id": "msg_abc123xyz", "status": "delivered",
               "timestamp": "2024-01-15T10:30:05Z"}
    }"""
    first = provider.parse_webhook(documented, {}, NOW).statuses
    again = provider.parse_webhook(documented, {}, NOW).statuses
    assert first == again  # same dedupe key: the store drops the second
    assert first[0].status == MessageStatus.DELIVERED


async def test_a_bad_event_in_a_batch_keeps_the_others(make_provider: MakeProvider) -> None:
    provider = await make_provider()

    def updated(**data: Any) -> dict[str, Any]:
        return {"event": "message.status_updated", "data": data}

    refused = {"code": "131026", "message": "Número sem WhatsApp"}
    body = json.dumps(
        [
            updated(message_id="msg_1", status="read"),
            updated(message_id="msg_2", status="lido"),
            updated(status="read"),
            {"event": "message.received", "data": {"from": "5511999999999", "text": "oi"}},
            "nonsense",
            updated(message_id="msg_3", status="failed", timestamp="ontem"),
            updated(message_id="msg_4", status="failed", error=refused, extra=1),
        ]
    ).encode()
    parsed = provider.parse_webhook(body, {}, NOW)
    assert [(r.provider_message_id, r.status) for r in parsed.statuses] == [
        ("msg_1", MessageStatus.READ),
        ("msg_4", MessageStatus.FAILED),
    ]
    assert (parsed.statuses[1].error_code, parsed.statuses[1].error_message) == (
        "131026",
        "Número sem WhatsApp",
    )
    assert parsed.statuses[0].at == NOW  # no timestamp: when it arrived
    assert [e.split(":")[0] for e in parsed.errors] == ["[1]", "[2]", "[3]", "[4]", "[5]"]
    assert "'lido'" in parsed.errors[0]
    assert "message.received" in parsed.errors[2]


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:59:59-03:00", "0001-01-01T00:00:00+01:00"])
async def test_a_timestamp_outside_utc_s_range_is_a_bad_event_not_a_500(
    make_provider: MakeProvider, timestamp: str
) -> None:
    provider = await make_provider()
    dated = {"message_id": "msg_1", "status": "read", "timestamp": timestamp}
    events = [{"event": "message.status_updated", "data": dated}, status_event("msg_2", "read")]

    parsed = provider.parse_webhook(json.dumps(events).encode(), {}, NOW)

    assert [r.provider_message_id for r in parsed.statuses] == ["msg_2"]
    assert parsed.errors == [
        f"[0]: 'data.timestamp' {timestamp!r} is outside the dates disparo can keep"
    ]


@pytest.mark.parametrize("word", [["read"], {"code": "read"}])
async def test_a_status_that_is_not_a_string_is_a_bad_event_not_a_500(
    make_provider: MakeProvider, word: Any
) -> None:
    provider = await make_provider()
    odd = {"event": "message.status_updated", "data": {"message_id": "msg_1", "status": word}}

    parsed = provider.parse_webhook(
        json.dumps([odd, status_event("msg_2", "read")]).encode(), {}, NOW
    )

    assert [r.provider_message_id for r in parsed.statuses] == ["msg_2"]
    [error] = parsed.errors
    assert error.startswith("[0]: 'data.status' is ")


async def test_an_event_disparo_does_not_read_is_an_error_not_a_status(
    make_provider: MakeProvider,
) -> None:
    provider = await make_provider()
    body = json.dumps({"event": "customer.created", "data": {}}).encode()
    parsed = provider.parse_webhook(body, {}, NOW)
    assert (parsed.statuses, parsed.contact_events) == ([], [])
    assert parsed.errors == [
        "event: event 'customer.created' is not one disparo reads "
        "(it reads 'message.status_updated')"
    ]


@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe", b"[]", b"42", b'"x"', b"[" * 5000])
async def test_an_unusable_body_is_rejected_whole(make_provider: MakeProvider, body: bytes) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_webhook(body, {}, NOW)
    assert caught.value.status == 400


async def test_statuses_interflow_posts_after_a_send_match_the_send(
    fake: FakeInterflow, make_provider: MakeProvider
) -> None:
    received: list[bytes] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        if len(received) == 2:
            arrived.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/webhooks/interflow", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        fake.webhook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/interflow"
        fake.webhook_delays = (0.0, 0.01)
        provider = await make_provider()
        result = await provider.send(message())
        await asyncio.wait_for(arrived.wait(), 5)
    finally:
        await runner.cleanup()
    reports = [s for body in received for s in provider.parse_webhook(body, {}, NOW).statuses]
    assert [(r.provider_message_id, r.status) for r in reports] == [
        (result.provider_message_id, MessageStatus.DELIVERED),
        (result.provider_message_id, MessageStatus.READ),
    ]


# ---------------------------------------------------------------- config and capabilities


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"channel_id": "canal-principal"}, "not a UUID"),
        ({"rate_limit": "300"}, "not like 300/min"),
        ({"rate_limit": "300/hour"}, "not like 300/min"),
        ({"rate_limit": "0/min"}, "not like 300/min"),
        ({"base_url": "ftp://api.interflow.chat"}, "http"),
        ({"base_url": "https://api.interflow.chat?key=1"}, "query"),
        ({"api_key": "Bearer if_live_x"}, "without `Bearer `"),
        ({"api_key": "  "}, "empty"),
        ({"api_key": None}, "api_key"),
        ({"chanel_id": CHANNEL}, "chanel_id"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_configs_are_refused_clearly(change: dict[str, Any], complaint: str) -> None:
    config = {"type": "interflow", "api_key": API_KEY, "channel_id": CHANNEL, **change}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ValidationError, match=complaint):
        InterflowConfig.model_validate(config)


def test_config_is_normalised_and_its_secrets_are_known_to_the_settings() -> None:
    config = InterflowConfig.model_validate(
        {
            "type": "interflow",
            "base_url": "https://sandbox.api.interflow.chat/v1/",
            "api_key": API_KEY,
            "channel_id": CHANNEL.upper(),
            "rate_limit": " 1000 / min ",
            "webhook_secret": "hook-secret-123",
        }
    )
    assert config.base_url == "https://sandbox.api.interflow.chat"
    assert config.channel_id == CHANNEL
    assert (config.rate_limit, config.per_minute) == ("1000/min", 1000)
    assert isinstance(config.api_key, SecretStr)
    defaults = InterflowConfig(api_key=SecretStr(API_KEY), channel_id=CHANNEL)
    assert (defaults.base_url, defaults.per_minute) == ("https://api.interflow.chat", 60)
    settings = Settings.model_validate(
        {"api_token": "t0ken-xyz-0123456789", "providers": {"interflow": config.model_dump()}}
    )
    assert {API_KEY, "hook-secret-123"} <= set(settings.secret_values())
    assert API_KEY not in repr(settings)


def test_registry_and_truthful_capabilities() -> None:
    assert provider_class("interflow") is InterflowProvider
    assert config_model_for("interflow") is InterflowConfig
    config = InterflowConfig(api_key=SecretStr(API_KEY), channel_id=CHANNEL)
    # `disparo check` builds providers without a host and never starts them.
    caps = InterflowProvider("interflow", config, cast(ProviderHost, None)).capabilities
    assert caps.channels == frozenset({"whatsapp"})
    assert caps.content_types == frozenset({"text", "media", "location", "template"})
    assert (caps.read_receipts, caps.idempotency_key, caps.webhooks) == (True, False, True)
    assert caps.files_per_template == 0


async def test_send_needs_start_and_close_is_idempotent() -> None:
    # (a missing webhook_secret is warned of by `disparo serve` for every provider)
    config = InterflowConfig(api_key=SecretStr(API_KEY), channel_id=CHANNEL)
    provider = InterflowProvider("interflow", config, NO_HOST)
    with pytest.raises(RuntimeError, match="before start"):
        await provider.send(message())
    await provider.start()
    await provider.close()
    await provider.close()
