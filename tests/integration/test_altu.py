"""The altu provider against the fake Altu/Zenvia outbound API: every example of the
vendor document, every error it lists, every transport fault, and the status webhook."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from engine.circuit import unwell
from engine.errors import (
    ConfigError,
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
    ListMenu,
    ListRow,
    ListSection,
    Location,
    Media,
    MessageStatus,
    OutboundMessage,
    StatusReport,
    Template,
    Text,
)
from engine.settings import load_settings
from providers.altu import AltuConfig, AltuProvider
from providers.registry import config_model_for, provider_class
from tests.fakes.altu import UNAUTHORIZED, FakeAltu, Fault, status_event
from tests.fakes.altu_contract import (
    CAT,
    DOC_BUTTONS,
    DOC_FILE,
    DOC_LIST,
    DOC_LOCATION,
    DOC_TEMPLATE,
    DOCUMENTED_BODIES,
)
from tests.integration.engine_kit import harness, settings_for
from tests.provider_kit import ClockHost, NoHost, outbound, started_providers

TOKEN = "altu-s3cr3t-token-7c41e0"
WEBHOOK_SECRET = "altu-webhook-s3cret-99"
PHONE = "+5535988001234"  # the document's example destination, 35988001234
NATIONAL = "35988001234"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
CONTEXT = {"disparo_flow": "cobranca", "disparo_step": "lembrete", "disparo_run": "run-1"}

MakeProvider = Callable[..., Awaitable[AltuProvider]]

# The same messages as disparo content.
DOC_CONTENT: dict[str, tuple[Content, str]] = {
    "template": (
        Template(
            name="3b9c0955-bdd9-00de-4135-6cfb74f5fb2e",
            params={"name": "Maria", "value": "R$ 1670,00"},
        ),
        "+5535988001234",
    ),
    "file": (
        Media(
            kind="video",
            url=DOC_FILE["contents"][0]["fileUrl"],
            mime_type="video/mp4",
            caption="Our pic :)",
            filename="example.png",  # sic: the document's example
        ),
        "+5511999999999",
    ),
    "buttons": (
        Buttons(
            header=CAT,
            body="Gostaria de agendar o seu treinamento sobre a plataforma?",
            footer="Selecione uma das opcões abaixo:",
            buttons=(
                Button(id="Agendar", title="Agendar treinamento"),
                Button(id="encerrar", title="Encerrar"),
                Button(id="reiniciar", title="Reiniciar"),
            ),
        ),
        "+5511999999999",
    ),
    "list": (
        ListMenu(
            header="Menu de Opções",
            body="Para finalizar, selecione o módulo do treinamento você deseja fazer?",
            footer="Selecione abaixo",
            button="Opções disponíveis",
            sections=(
                ListSection(
                    title="Section Title",
                    rows=(
                        ListRow(
                            id="builder",
                            title="Builder",
                            description="Aprenda a programar no Build do ALTU",
                        ),
                        ListRow(
                            id="nlu",
                            title="NLU",
                            description="Aprenda a configurar seu NLU de forma assertiva",
                        ),
                        ListRow(
                            id="builder_nlu",
                            title="Builder e NLU",
                            description="Aprenda a criar um assistente híbrido completo",
                        ),
                    ),
                ),
            ),
        ),
        "+5511999999999",
    ),
    "location": (
        Location(
            latitude=-23.54220538772733,
            longitude=-46.65812552818576,
            name="SMARKIO BRASIL",
            address="Rua Sergipe, 475 - 5º Andar - Higienópolis, São Paulo - SP, 01243-001",
            url="https://www.smarkio.com.br",
        ),
        "+5511999999999",
    ),
}


@pytest.fixture
async def altu() -> AsyncIterator[FakeAltu]:
    async with FakeAltu(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def make_provider(altu: FakeAltu) -> AsyncIterator[MakeProvider]:
    def build(**config: Any) -> AltuProvider:
        settings = {
            "type": "altu",
            "url": altu.url,
            "token": TOKEN,
            "webhook_secret": WEBHOOK_SECRET,
            "timeout": 10,
            **config,
        }
        return AltuProvider("altu", AltuConfig.model_validate(settings), NoHost())

    async with started_providers(build) as make:
        yield make


def message(
    content: Content | None = None,
    *,
    key: str = "run-1:lembrete:0",
    phone: str | None = PHONE,
    channel: Channel = "whatsapp",
    hints: dict[str, Any] | None = None,
) -> OutboundMessage:
    return outbound(
        content or DOC_CONTENT["template"][0],
        key=key,
        channel=channel,
        phone=phone,
        name="Maria Souza",
        hints=hints or {},
    )


def assert_no_secret(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc)) + repr(exc)
    assert TOKEN not in text
    assert WEBHOOK_SECRET not in text


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


# ---------------------------------------------------------------- the document's examples


@pytest.mark.parametrize("example", sorted(DOCUMENTED_BODIES))
async def test_the_fake_accepts_every_documented_body_verbatim(
    altu: FakeAltu, example: str
) -> None:
    body = DOCUMENTED_BODIES[example]
    status, answer = await post(altu.url, body, {"Authorization": TOKEN})
    assert status == 200, answer
    assert answer == {
        "status": "pending",
        "external_id": body.get("externalId"),
        "message_id": 218,
        "contact_id": 874,
    }


@pytest.mark.parametrize("example", sorted(DOC_CONTENT))
async def test_each_documented_example_is_sent_exactly_as_the_document_writes_it(
    altu: FakeAltu, make_provider: MakeProvider, example: str
) -> None:
    content, phone = DOC_CONTENT[example]
    provider = await make_provider()
    sent = message(content, key="meu_id_1", phone=phone)
    result = await provider.send(sent)
    expected = {**DOCUMENTED_BODIES[example], "context": CONTEXT, "externalId": "meu_id_1"}
    assert altu.received == [expected]
    assert provider.build_request(sent) == expected
    headers = altu.received_headers[0]
    assert headers["Authorization"] == TOKEN  # the bare token, no Bearer
    assert headers["Content-Type"] == "application/json"
    assert result.provider_message_id == "218"
    assert result.status == MessageStatus.SENT  # "pending" is Altu's "accepted"
    assert result.raw == {
        "status": "pending",
        "external_id": "meu_id_1",
        "message_id": 218,
        "contact_id": 874,
    }


@pytest.mark.parametrize(
    ("media", "mime"),
    [
        (Media(kind="image", url="https://cdn.example/boleto.png"), "image/png"),
        (Media(kind="image", url="https://cdn.example/f?id=1", filename="foto.JPG"), "image/jpeg"),
        (Media(kind="document", url="https://cdn.example/2via.pdf"), "application/pdf"),
        (Media(kind="audio", url="https://cdn.example/a", mime_type="audio/ogg"), "audio/ogg"),
    ],
)
async def test_a_file_without_a_mime_type_gets_one_from_its_name(
    altu: FakeAltu, make_provider: MakeProvider, media: Media, mime: str
) -> None:
    await (await make_provider()).send(message(media))
    (item,) = altu.received[0]["contents"]
    assert item["fileMimeType"] == mime
    assert "fileCaption" not in item  # optional fields stay out when empty


@pytest.mark.parametrize(
    ("hints", "inactivity", "restart"),
    [
        ({"inactivity_minutes": 10.0}, 10, None),
        ({"inactivity_minutes": 2.9}, 2, None),  # rounded down: never stricter than the rule
        ({"inactivity_minutes": 0.5, "restart_contact": True}, 0, True),
        (
            {"in_attendance": "skip", "recent_contact_hours": 4, "restart_contact": False},
            None,
            False,
        ),
        ({}, None, None),
    ],
)
async def test_hints_become_the_documented_guards(
    altu: FakeAltu,
    make_provider: MakeProvider,
    hints: dict[str, Any],
    inactivity: int | None,
    restart: bool | None,
) -> None:
    await (await make_provider()).send(message(hints=hints))
    body = altu.received[0]
    assert body.get("inactivityTime") == inactivity
    assert body.get("restartContact") == restart
    assert ("inactivityTime" in body) == (inactivity is not None)


async def test_a_repeated_external_id_is_sent_again_so_the_engine_must_not_resend(
    altu: FakeAltu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    first = await provider.send(message(key="k-1"))
    again = await provider.send(message(key="k-1"))
    assert (first.provider_message_id, again.provider_message_id) == ("218", "219")
    assert altu.delivered_by_external_id["k-1"] == 2  # the contact got it twice
    assert provider.capabilities.idempotency_key is False


# ---------------------------------------------------------------- refused before sending


@pytest.mark.parametrize(
    ("sent", "complaint"),
    [
        (message(Text(body="Olá")), "no plain-text"),
        (message(channel="sms"), "WhatsApp only"),
        (message(phone=None), "no phone number"),
        (
            message(phone="+14155550123"),
            r"Brazilian WhatsApp numbers only .*; \+14\*+0123 is not one",
        ),
        (message(Media(kind="image", base64="aGVsbG8=")), "by URL only"),
        (message(Media(kind="image", url="https://x.example/a.gif")), "image of type image/gif"),
        (message(Media(kind="sticker", url="https://x.example/s.png")), "image/webp"),
        (message(Media(kind="document", url="https://x.example/arquivo")), "MIME type"),
        (message(Template(name="boleto", params=("Maria", "R$ 10"))), "named template fields"),
        (
            message(
                Template(
                    name="boleto", header_media=Media(kind="image", url="https://x.example/a.png")
                )
            ),
            "file with a template",
        ),
        (
            message(
                Buttons(header="Seu boleto", body="Pagar?", buttons=(Button(id="s", title="Sim"),))
            ),
            "no text header",
        ),
    ],
)
async def test_what_the_document_cannot_say_is_refused_before_anything_is_sent(
    altu: FakeAltu, make_provider: MakeProvider, sent: OutboundMessage, complaint: str
) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderRejected, match=complaint) as caught:
        await provider.send(sent)
    assert caught.value.left is False
    assert caught.value.retryable is False
    assert "4155550123" not in str(caught.value)
    assert altu.requests == 0


async def test_a_template_without_params_sends_no_fields(
    altu: FakeAltu, make_provider: MakeProvider
) -> None:
    await (await make_provider()).send(message(Template(name="oi", params=())))
    assert "fields" not in altu.received[0]
    assert altu.received[0]["templateId"] == "oi"


# ---------------------------------------------------------------- documented errors


def _buttons(count: int) -> Buttons:
    return Buttons(
        body="Escolha", buttons=tuple(Button(id=f"b{i}", title=f"B{i}") for i in range(count))
    )


def _list(button: str = "Ver opções", rows: tuple[int, ...] = (3,)) -> ListMenu:
    return ListMenu(
        body="Escolha um módulo",
        button=button,
        sections=tuple(
            ListSection(rows=tuple(ListRow(id=f"s{s}r{r}", title=f"R{r}") for r in range(n)))
            for s, n in enumerate(rows)
        ),
    )


@pytest.mark.parametrize(
    ("content", "vendor_said"),
    [
        (_buttons(4), "contents[0].buttons: limitado a 3 botões (4 enviados)"),
        (
            _list(button="Opções disponíveis já"),
            "contents[0].button: limitado a 20 caracteres (21 enviados)",
        ),
        (_list(rows=(6, 5)), "contents[0].sections: limitado a 10 opções (11 enviadas)"),
    ],
)
async def test_the_documented_limits_come_back_as_final_rejections_in_altus_words(
    altu: FakeAltu, make_provider: MakeProvider, content: Content, vendor_said: str
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await (await make_provider()).send(message(content))
    assert caught.value.status == 400
    assert caught.value.vendor_message == vendor_said
    assert caught.value.retryable is False
    assert caught.value.left is True  # the request reached Altu, which said no
    assert altu.received == []


async def test_a_list_of_messages_in_a_400_is_kept_whole(
    altu: FakeAltu, make_provider: MakeProvider
) -> None:
    altu.fail_next(Fault.answer({"message": ["destination inválido", "templateId"]}, status=400))
    with pytest.raises(ProviderRejected) as caught:
        await (await make_provider()).send(message())
    assert caught.value.vendor_message == "destination inválido; templateId"


async def test_at_the_limits_everything_is_accepted(
    altu: FakeAltu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await provider.send(message(_buttons(3), key="k-1"))
    await provider.send(message(_list(button="x" * 20, rows=(5, 5)), key="k-2"))
    assert len(altu.received) == 2


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"destination": None}, "destination é obrigatório"),
        ({"destination": "+5535988001234"}, "destination deve ser o número de WhatsApp com DDD"),
        ({"destination": 35988001234}, "destination deve ser"),
        ({"templateId": ""}, "templateId deve ser"),
        ({"contents": DOC_FILE["contents"]}, "templateId (template) ou contents"),
        ({"fields": {"name": 1}}, "fields deve ser um objeto"),
        ({"fields": ["Maria"]}, "fields deve ser um objeto"),
        ({"context": "aprovado"}, "context deve ser um objeto"),
        ({"externalId": 7}, "externalId deve ser um texto"),
        ({"restartContact": "true"}, "restartContact deve ser booleano"),
        ({"inactivityTime": 2.5}, "inactivityTime deve ser um número inteiro"),
        ({"inactivityTime": -1}, "inactivityTime deve ser um número inteiro"),
        ({"inactivityTime": True}, "inactivityTime deve ser um número inteiro"),
        ({"external_id": "x"}, "atributo(s) desconhecido(s): external_id"),
    ],
)
async def test_the_fake_answers_400_for_each_broken_template_attribute(
    altu: FakeAltu, change: dict[str, Any], said: str
) -> None:
    body = {k: v for k, v in {**DOC_TEMPLATE, **change}.items() if v is not None}
    status, answer = await post(altu.url, body, {"Authorization": TOKEN})
    assert status == 400
    assert said in answer["message"]


def _with_item(base: dict[str, Any], **change: Any) -> dict[str, Any]:
    item = {k: v for k, v in {**base["contents"][0], **change}.items() if v is not None}
    return {**base, "contents": [item]}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({**DOC_FILE, "contents": []}, "contents deve ser uma lista"),
        ({**DOC_FILE, "fields": {"a": "b"}}, "fields só vale com templateId"),
        (_with_item(DOC_FILE, type="text"), "type deve ser file, button, list ou location"),
        (_with_item(DOC_FILE, fileUrl=None), "fileUrl deve ser a URL"),
        (_with_item(DOC_FILE, fileUrl="ftp://x/y.mp4"), "fileUrl deve ser a URL"),
        (_with_item(DOC_FILE, fileMimeType=None), "fileMimeType deve ser um MIME type"),
        (_with_item(DOC_FILE, fileMimeType="mp4"), "fileMimeType deve ser um MIME type"),
        (_with_item(DOC_FILE, fileMimeType="image/gif"), "imagens image/jpeg ou image/png"),
        (_with_item(DOC_FILE, fileCaption=3), "fileCaption deve ser texto"),
        (_with_item(DOC_FILE, filename="a.mp4"), "desconhecido(s): filename"),
        (_with_item(DOC_BUTTONS, header="Treinamento"), "header deve ser"),
        (_with_item(DOC_BUTTONS, header={"type": "text", "text": "oi"}), "header deve ser"),
        (_with_item(DOC_BUTTONS, body=None), "body é obrigatório"),
        (_with_item(DOC_BUTTONS, buttons=[]), "ao menos um botão"),
        (_with_item(DOC_BUTTONS, buttons=[{"id": "a"}]), "deve ter id e title"),
        (_with_item(DOC_LIST, button=None), "button é obrigatório"),
        (_with_item(DOC_LIST, body=""), "body é obrigatório"),
        (_with_item(DOC_LIST, sections=[{"title": "x", "rows": []}]), "ao menos uma opção"),
        (_with_item(DOC_LIST, sections=[{"rows": [{"id": "a"}]}]), "id e title são obrigatórios"),
        (_with_item(DOC_LIST, header=["x"]), "header deve ser texto"),
        (_with_item(DOC_LOCATION, latitude=None), "latitude deve ser um número"),
        (_with_item(DOC_LOCATION, longitude=-181), "longitude deve ser um número entre"),
        (_with_item(DOC_LOCATION, latitude="-23.5"), "latitude deve ser um número"),
    ],
)
async def test_the_fake_answers_400_for_each_broken_content(
    altu: FakeAltu, body: dict[str, Any], said: str
) -> None:
    status, answer = await post(altu.url, body, {"Authorization": TOKEN})
    assert status == 400
    assert said in answer["message"]
    assert altu.received == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "outro-token"}],
)
async def test_the_fake_takes_only_the_bare_token(altu: FakeAltu, headers: dict[str, str]) -> None:
    status, answer = await post(altu.url, DOC_TEMPLATE, headers)
    assert (status, answer) == (401, {"message": UNAUTHORIZED})


async def test_the_fake_needs_json_and_the_integration_path(altu: FakeAltu) -> None:
    async with aiohttp.ClientSession() as session:
        raw = json.dumps(DOC_TEMPLATE)
        headers = {"Authorization": TOKEN, "Content-Type": "text/plain"}
        async with session.post(altu.url, data=raw, headers=headers) as answer:
            assert answer.status == 400
            assert "application/json" in (await answer.json())["message"]
        other = altu.url.replace("/4321", "/9999")
        async with session.post(
            other, json=DOC_TEMPLATE, headers={"Authorization": TOKEN}
        ) as answer:
            assert answer.status == 404


async def test_a_wrong_token_is_an_auth_error_with_altus_words(make_provider: MakeProvider) -> None:
    provider = await make_provider(token="outro-token-errado")
    with pytest.raises(ProviderAuthError) as caught:
        await provider.send(message())
    assert caught.value.status == 401
    assert caught.value.vendor_message == UNAUTHORIZED
    assert_no_secret(caught.value)
    assert "outro-token-errado" not in str(caught.value)


async def test_a_wrong_integration_url_pauses_the_provider_naming_the_setting(
    altu: FakeAltu, make_provider: MakeProvider
) -> None:
    """A 404 says the integration URL (slug or integration id) is wrong, not the
    message: every send would be refused alike, so it pauses the provider like refused
    credentials and names `url`, instead of failing each message of the campaign."""
    provider = await make_provider(url=altu.url.replace("/4321", "/9999"))
    with pytest.raises(ProviderAuthError) as caught:
        await provider.send(message())
    error = caught.value
    assert error.status == 404
    assert unwell(error)
    assert "check providers.altu.url in the config" in str(error)
    assert altu.received == []
    assert_no_secret(error)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_unavailable_and_retryable(
    altu: FakeAltu, make_provider: MakeProvider, status: int
) -> None:
    altu.fail_next(Fault.error(status))
    with pytest.raises(ProviderUnavailable) as caught:
        await (await make_provider()).send(message())
    assert caught.value.status == status
    assert caught.value.retryable is True
    assert caught.value.vendor_message == "Erro interno"


async def test_429_is_rate_limited_with_retry_after(
    altu: FakeAltu, make_provider: MakeProvider
) -> None:
    altu.fail_next(Fault.rate_limit(retry_after="7"))
    with pytest.raises(ProviderRateLimited) as caught:
        await (await make_provider()).send(message())
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert altu.received == []


async def test_a_429_retry_after_date_is_measured_on_the_engines_clock(
    altu: FakeAltu,
) -> None:
    # Retry-After may be an HTTP-date (RFC 9110): the wait is that date minus the
    # engine's clock, the one the retry is scheduled on, not the host's.
    engine_now = datetime(2022, 1, 1, 0, 0, 0, tzinfo=UTC)
    config = AltuConfig.model_validate({"type": "altu", "url": altu.url, "token": TOKEN})
    provider = AltuProvider("altu", config, ClockHost(engine_now))
    await provider.start()
    try:
        altu.fail_next(Fault.rate_limit(retry_after="Sat, 01 Jan 2022 00:00:30 GMT"))
        with pytest.raises(ProviderRateLimited) as caught:
            await provider.send(message())
    finally:
        await provider.close()
    assert caught.value.retry_after == 30.0


# ---------------------------------------------------------------- lost or odd answers


async def test_a_hang_after_altu_took_the_message_is_ambiguous(
    altu: FakeAltu, make_provider: MakeProvider
) -> None:
    altu.fail_next(Fault.hang())
    provider = await make_provider(timeout=0.2)
    with pytest.raises(ProviderAmbiguous, match="no answer") as caught:
        await provider.send(message(key="k-1"))
    assert caught.value.left is True
    assert altu.delivered_by_external_id["k-1"] == 1  # why a blind resend would duplicate


async def test_a_connection_dropped_after_the_body_was_read_is_ambiguous(
    altu: FakeAltu, make_provider: MakeProvider
) -> None:
    altu.fail_next(Fault.disconnect())
    with pytest.raises(ProviderAmbiguous, match="broke after the request was sent") as caught:
        await (await make_provider()).send(message())
    assert caught.value.left is True
    assert isinstance(caught.value.__cause__, aiohttp.ServerDisconnectedError)


async def test_a_refused_connection_never_left(make_provider: MakeProvider) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    provider = await make_provider(url=f"http://127.0.0.1:{dead}/zenvia/disparo/4321")
    with pytest.raises(ProviderUnreachable, match="could not connect") as caught:
        await provider.send(message())
    assert (caught.value.left, caught.value.retryable) == (False, True)


@pytest.mark.parametrize(
    ("fault", "error", "said"),
    [
        (Fault.html(), ProviderAmbiguous, "without the documented JSON answer"),
        (
            Fault.answer({"status": "queued", "external_id": "run-1:lembrete:0", "message_id": 1}),
            ProviderAmbiguous,
            "status 'queued', which its document does not describe",
        ),
        (
            Fault.answer({"status": "pending", "external_id": "outro", "message_id": 1}),
            ProviderAmbiguous,
            "another externalId",
        ),
        (
            Fault.answer(
                {
                    "status": "failed",
                    "external_id": "run-1:lembrete:0",
                    "message": "usuário interagiu há menos de 10 minutos",
                }
            ),
            ProviderRejected,
            "did not send the message.*usuário interagiu há menos de 10 minutos",
        ),
    ],
)
async def test_a_200_that_is_not_the_documented_acceptance_is_never_taken_for_sent(
    altu: FakeAltu,
    make_provider: MakeProvider,
    fault: Fault,
    error: type[ProviderError],
    said: str,
) -> None:
    altu.fail_next(fault)
    with pytest.raises(error, match=said) as caught:
        await (await make_provider()).send(message())
    assert type(caught.value) is error
    assert caught.value.status == 200


async def test_a_pending_answer_without_message_id_is_accepted_and_matched_by_key(
    altu: FakeAltu, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    altu.fail_next(Fault.answer({"status": "pending", "external_id": "run-1:lembrete:0"}))
    result = await (await make_provider()).send(message())
    assert (result.provider_message_id, result.status) == (None, MessageStatus.SENT)
    assert "without a message_id" in caplog.text


# ---------------------------------------------------------------- secrets and phones


async def test_secrets_and_phones_never_reach_an_error_or_a_log_line(
    altu: FakeAltu, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
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
        Fault.reject(f"token {TOKEN} sem permissão para {NATIONAL}"),
        Fault.reject(f"número {PHONE} inválido; segredo {WEBHOOK_SECRET}"),
    ]
    errors: list[ProviderError] = []
    for index, fault in enumerate(faults):
        altu.fail_next(fault)
        sender = impatient if fault.kind == "hang" else provider
        with pytest.raises(ProviderError) as caught:
            await sender.send(message(key=f"k-{index}"))
        errors.append(caught.value)
    await provider.send(message(key="ok"))
    with pytest.raises(ProviderRejected):
        await provider.send(message(phone="+14155550123"))
    for error in errors:
        assert_no_secret(error)
    assert errors[5].vendor_message == f"token *** sem permissão para {NATIONAL}"
    assert TOKEN not in repr(provider.config)
    assert WEBHOOK_SECRET not in repr(provider.config)
    assert len(caplog.records) >= len(faults) + 2
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert TOKEN not in text
        assert WEBHOOK_SECRET not in text
        assert NATIONAL not in text
        assert "4155550123" not in text
    assert "+55*******1234" in caplog.text


# ---------------------------------------------------------------- status webhook


def parse(provider: AltuProvider, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return provider.parse_webhook(raw, {}, NOW)


@pytest.mark.parametrize(
    ("said", "status"),
    [
        ("pending", MessageStatus.SENT),
        ("sent", MessageStatus.SENT),
        ("DELIVERED", MessageStatus.DELIVERED),
        ("read", MessageStatus.READ),
        ("rejected", MessageStatus.FAILED),
        ("NOT_DELIVERED", MessageStatus.FAILED),
        ("failed", MessageStatus.FAILED),
        ("error", MessageStatus.FAILED),
    ],
)
async def test_each_status_advances_the_message_named_by_our_key(
    make_provider: MakeProvider, said: str, status: MessageStatus
) -> None:
    provider = await make_provider()
    at = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
    body = status_event(said, external_id="k-1", message_id=218, contact_id=874, at=at)
    parsed = parse(provider, body)
    assert parsed.errors == []
    assert parsed.statuses == [
        StatusReport(
            provider="altu",
            status=status,
            at=at,
            provider_message_id="218",
            idempotency_key="k-1",
            dedupe_key=f"altu:status:k-1:{status}",
        )
    ]


async def test_redelivered_statuses_share_a_dedupe_key(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    bodies = [
        status_event("pending", external_id="k-1", message_id=218),
        status_event("sent", external_id="k-1", message_id=218),
        {"status": "sent", "externalId": "k-1"},
    ]
    keys = {parse(provider, body).statuses[0].dedupe_key for body in bodies}
    assert keys == {"altu:status:k-1:sent"}
    (by_id,) = parse(provider, {"status": "read", "message_id": "218"}).statuses
    assert (by_id.idempotency_key, by_id.provider_message_id) == (None, "218")
    assert by_id.dedupe_key == "altu:status:altu-218:read"


async def test_one_bad_item_in_a_batch_does_not_drop_the_others(
    make_provider: MakeProvider,
) -> None:
    provider = await make_provider()
    batch = [
        status_event("delivered", external_id="k-1", message_id=218),
        status_event("lido", external_id="k-2", message_id=219),
        "not an object",
        {"status": "read"},
        {"external_id": "k-5"},
        {"status": "read", "external_id": ["k-6"]},
        status_event("read", external_id="k-7", message_id=224),
    ]
    parsed = parse(provider, batch)
    assert [(s.idempotency_key, s.status) for s in parsed.statuses] == [
        ("k-1", MessageStatus.DELIVERED),
        ("k-7", MessageStatus.READ),
    ]
    assert len(parsed.errors) == 5
    assert parsed.errors[0].startswith("item 1: unknown status 'lido'")
    assert parsed.errors[1] == "item 2: must be an object, got str"
    assert "names no message" in parsed.errors[2]
    assert "needs 'status'" in parsed.errors[3]
    assert "'external_id' must be" in parsed.errors[4]
    assert parse(provider, []).statuses == []


async def test_a_failure_carries_altus_reason(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    flat = {"status": "failed", "external_id": "k-1", "description": "Número sem WhatsApp"}
    nested = {
        "external_id": "k-2",
        "messageStatus": {
            "code": "REJECTED",
            "timestamp": "2024-05-01T12:00:05Z",
            "description": "Cannot be sent",
            "causes": [{"channelErrorCode": "131026", "reason": "Message undeliverable"}],
        },
    }
    (one,) = parse(provider, flat).statuses
    (two,) = parse(provider, nested).statuses
    assert (one.status, one.error_code, one.error_message) == (
        MessageStatus.FAILED,
        None,
        "Número sem WhatsApp",
    )
    assert (two.status, two.error_code, two.error_message) == (
        MessageStatus.FAILED,
        "131026",
        "Message undeliverable",
    )
    assert two.at == datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timestamp", "at"),
    [
        ("2024-05-01T09:00:10-03:00", datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC)),
        (1714564810, datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC)),
        (1714564810500, datetime(2024, 5, 1, 12, 0, 10, 500000, tzinfo=UTC)),
        ("2024-05-01T09:00:10", NOW),  # no zone: whose local time? use the time of receipt
        ("ontem", NOW),
        (None, NOW),
        # Past year 9999 or before year 1 in UTC: no datetime holds it (it was a 500).
        ("9999-12-31T23:59:59-03:00", NOW),
        ("0001-01-01T00:00:00+01:00", NOW),
    ],
)
async def test_status_times(make_provider: MakeProvider, timestamp: Any, at: datetime) -> None:
    provider = await make_provider()
    (report,) = parse(
        provider, {"status": "read", "external_id": "k", "timestamp": timestamp}
    ).statuses
    assert report.at == at


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe", b'"delivered"', b"42", b"null", b"[" * 100_000],
)
async def test_an_unusable_body_is_rejected_whole(make_provider: MakeProvider, body: bytes) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_webhook(body, {}, NOW)
    assert (caught.value.status, caught.value.left) == (400, False)


async def test_the_fakes_status_webhooks_advance_the_message_end_to_end(
    make_provider: MakeProvider,
) -> None:
    got: list[bytes] = []

    async def webhook(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.json_response({"accepted": 1})

    app = web.Application()
    app.router.add_post("/webhooks/altu", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        hook = f"http://127.0.0.1:{port}/webhooks/altu?token={WEBHOOK_SECRET}"
        async with FakeAltu(token=TOKEN, status_webhook=hook) as fake:
            provider = await make_provider(url=fake.url)
            result = await provider.send(message(key="k-1"))
            await fake.reports_done()
            assert fake.webhook_answers == [200, 200, 200]
    finally:
        await runner.cleanup()
    reports = [report for body in got for report in parse(provider, body).statuses]
    assert [r.status for r in reports] == [
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
    ]
    assert {(r.idempotency_key, r.provider_message_id) for r in reports} == {
        ("k-1", result.provider_message_id)
    }


# ---------------------------------------------------------------- config, registry, standalone


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"url": "ftp://outbound.ms.altubots.com/zenvia/a/1"}, "https://"),
        ({"token": f"Bearer {TOKEN}"}, "remove the 'Bearer ' prefix"),
        ({"token": " "}, "token is empty"),
        ({"timeout": 0}, "timeout"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"tokne": "x"}, "tokne"),
    ],
)
def test_bad_configs_are_refused(config: dict[str, Any], complaint: str) -> None:
    settings = {"type": "altu", "url": "https://outbound.ms.altubots.com/zenvia/a/1"}
    with pytest.raises(ValidationError, match=complaint):
        AltuConfig.model_validate({**settings, "token": TOKEN, **config})


def test_a_bearer_token_in_the_config_file_is_pointed_at_without_showing_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "disparo.yaml"
    config.write_text(
        "api_token: dev-token-change-me\n"
        f"storage: sqlite:///{tmp_path / 'disparo.db'}\n"
        "providers:\n"
        "  altu:\n"
        "    type: altu\n"
        "    url: https://outbound.ms.altubots.com/zenvia/a/1\n"
        "    token: Bearer ${ALTU_TOKEN}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {"ALTU_TOKEN": TOKEN})
    assert str(caught.value) == (
        f"{config}:7:12: `token` in provider `altu`: Altu takes the bare token in "
        "Authorization; remove the 'Bearer ' prefix"
    )


def test_registry_and_capabilities() -> None:
    assert provider_class("altu") is AltuProvider
    assert config_model_for("altu") is AltuConfig
    config = AltuConfig(url="https://outbound.ms.altubots.com/zenvia/a/1", token=TOKEN)  # type: ignore[arg-type]
    caps = AltuProvider("altu", config, NoHost()).capabilities
    assert caps.channels == frozenset({"whatsapp"})
    assert caps.content_types == frozenset({"template", "media", "buttons", "list", "location"})
    assert (caps.files_per_template, caps.idempotency_key, caps.webhooks) == (0, False, True)
    assert config.webhook_secret is None


async def test_send_before_start_is_a_programming_error() -> None:
    config = AltuConfig(url="https://outbound.ms.altubots.com/zenvia/a/1", token=TOKEN)  # type: ignore[arg-type]
    provider = AltuProvider("altu", config, NoHost())
    with pytest.raises(RuntimeError, match="before start"):
        await provider.send(message())
    await provider.close()


async def test_the_fake_runs_standalone() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.altu",
        "--port",
        "0",
        "--token",
        TOKEN,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), 20))
        base = f"http://127.0.0.1:{port}"
        fault = {"kind": "error", "status": 503, "times": 1}
        assert (await post(f"{base}/_faults", fault))[0] == 200
        url = f"{base}/zenvia/disparo/4321"
        assert (await post(url, DOC_TEMPLATE, {"Authorization": TOKEN}))[0] == 503
        status, answer = await post(url, DOC_TEMPLATE, {"Authorization": TOKEN})
        assert (status, answer["message_id"]) == (200, 218)
        async with aiohttp.ClientSession() as session, session.get(f"{base}/_stats") as stats:
            assert (await stats.json())["delivered_by_external_id"] == {"meu_id_1": 1}
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 20) == 0


# ---------------------------------------------------------------- through the engine

ENGINE_FLOW = """\
flow: entrega
defaults: {provider: altu, rules: {window: ignore, inactivity: 10m}}
start: aviso
steps:
  aviso:
    send:
      text: "Olá {{ contact.first_name }}, podemos entregar hoje?"
      buttons:
        - {id: sim, title: Sim}
        - {id: nao, title: Outro dia}
    on: {read: fim, failed: fim}
    timeout: {after: 1h, goto: fim}
  fim: {end: completed}
"""


def engine_settings(tmp_path: Path, altu: FakeAltu) -> Any:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "entrega.yaml").write_text(ENGINE_FLOW)
    settings = settings_for(tmp_path, flows=flows)
    config = AltuConfig.model_validate(
        {"type": "altu", "url": altu.url, "token": TOKEN, "timeout": 10}
    )
    return settings.model_copy(update={"providers": {**settings.providers, "altu": config}})


async def test_the_engine_sends_through_altu_and_its_statuses_complete_the_run(
    tmp_path: Path, altu: FakeAltu
) -> None:
    async with harness(engine_settings(tmp_path, altu)) as h:
        run = await h.start("entrega")
        (sent,) = await h.messages(run.id)
        assert (sent.status, sent.provider_message_id) == (MessageStatus.SENT, "218")
        (body,) = altu.received
        assert body["destination"] == "11999998888"
        assert body["externalId"] == sent.idempotency_key
        assert body["inactivityTime"] == 10
        assert body["contents"][0]["buttons"][1] == {"id": "nao", "title": "Outro dia"}

        for status in ("delivered", "read", "read"):
            event = status_event(status, external_id=sent.idempotency_key, message_id=218)
            await h.engine.ingest_webhook("altu", json.dumps(event).encode(), {})
            await h.engine.settle()

        (read,) = await h.messages(run.id)
        assert read.status == MessageStatus.READ
        assert (await h.run(run.id)).status == "completed"


async def test_a_lost_answer_is_ambiguous_never_resent_and_the_webhook_resolves_it(
    tmp_path: Path, altu: FakeAltu
) -> None:
    altu.fail_next(Fault.disconnect())
    async with harness(engine_settings(tmp_path, altu)) as h:
        run = await h.start("entrega")
        await h.advance(timedelta(minutes=30))
        (lost,) = await h.messages(run.id)
        assert lost.status == MessageStatus.AMBIGUOUS
        assert altu.requests == 1  # no idempotency key at Altu: never resent blindly

        event = status_event("delivered", external_id=lost.idempotency_key, message_id=218)
        await h.engine.ingest_webhook("altu", json.dumps(event).encode(), {})
        await h.engine.settle()
        (found,) = await h.messages(run.id)
        assert found.status == MessageStatus.DELIVERED
