"""The Robbu adapter against the fake Robbu API: every example body of the vendor's
document, its login rules, its documented errors and every transport fault."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from engine.circuit import unwell
from engine.errors import (
    ProviderAmbiguous,
    ProviderAuthError,
    ProviderDiscarded,
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
from providers.registry import config_model_for, provider_class
from providers.robbu import RobbuConfig, RobbuProvider
from tests.fakes.robbu import IN_ATTENDANCE, LOGIN, SEND, FakeRobbu, Fault
from tests.fakes.robbu_contract import NULL_REFERENCE
from tests.provider_kit import NoHost, outbound, started_providers

PASSWORD = "s3nha-da-api-robbu-7f3a"
PRIVATE_TOKEN = "af5addfsdf52-a5dfsc-44fdf6-80bc-eda1d2af8"  # the document's, so bodies match
PHONE = "+5511999999999"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SITE = "https://docs.robbu.global/"
OFFER = (
    "Caro @primeironome, hoje é dia de oferta especial. "
    "Acesse https://docs.robbu.global/ e saiba mais."
)
CARD = "https://storage.robbu.global/v2/file/ECCFA721E503DB489CB5E2E09CC6A2D1.jpeg"

MakeProvider = Callable[..., Awaitable[RobbuProvider]]


@pytest.fixture
async def robbu() -> AsyncIterator[FakeRobbu]:
    async with FakeRobbu(password=PASSWORD, private_token=PRIVATE_TOKEN) as fake:
        yield fake


def settings(url: str, **config: Any) -> dict[str, Any]:
    return {
        "type": "robbu",
        "base_url": url,
        "company": "acme",
        "username": "api.disparo",
        "password": PASSWORD,
        "private_token": PRIVATE_TOKEN,
        "channel": "whatsapp",
        "source": {"country_code": 55, "phone_number": "11999999999", "prospect": False},
        "wallet_client_code": "comercial",
        "timeout": 10,
        **config,
    }


@pytest.fixture
async def make_provider(robbu: FakeRobbu) -> AsyncIterator[MakeProvider]:
    def build(**config: Any) -> RobbuProvider:
        parsed = RobbuConfig.model_validate(settings(robbu.base_url, **config))
        return RobbuProvider("robbu_whatsapp", parsed, NoHost())

    async with started_providers(build) as make:
        yield make


def message(
    content: Content,
    *,
    channel: Channel = "whatsapp",
    key: str = "run-1:lembrete:0",
    phone: str | None = PHONE,
    email: str | None = None,
    name: str | None = None,
    context: dict[str, Any] | None = None,
    hints: dict[str, Any] | None = None,
) -> OutboundMessage:
    return outbound(
        content,
        key=key,
        channel=channel,
        phone=phone,
        email=email,
        name=name,
        context=context,
        hints=hints,
    )


def blank_contact(wallet: str, update: bool, **fields: Any) -> dict[str, Any]:
    return {
        "name": "",
        "customCode": "",
        "id": "",
        "tag": "",
        "jokers": ["", "", "", "", ""],
        "walletClientCode": wallet,
        "updateIfExists": update,
        **fields,
    }


def whatsapp_example(template: str, parameters: list[dict[str, str]], **top: Any) -> dict[str, Any]:
    """The shape shared by the document's WhatsApp examples."""
    return {
        "invenioPrivateToken": PRIVATE_TOKEN,
        "text": "",
        "emailSubject": "",
        "channel": 3,
        "templateName": template,
        "attendantUserName": "",
        "templateParameters": parameters,
        "source": {"countryCode": 55, "phoneNumber": 11999999999, "prospect": False},
        "destination": {"countryCode": 55, "phoneNumber": 11999999999, "email": ""},
        "discardSettings": {"recentContactLastHours": 0, "InAttendance": False},
        "contact": blank_contact("comercial", False),
        **top,
    }


def param(name: str, value: str) -> dict[str, str]:
    return {"parameterName": name, "parameterValue": value}


async def assert_sends(
    provider: RobbuProvider, robbu: FakeRobbu, outbound: OutboundMessage, expected: dict[str, Any]
) -> None:
    """Robbu received exactly ``expected``; ``build_request`` shows it, token masked."""
    result = await provider.send(outbound)
    assert (result.status, result.provider_message_id) == (MessageStatus.SENT, None)
    assert robbu.received[-1] == expected
    assert provider.build_request(outbound) == {**expected, "invenioPrivateToken": "***"}


def assert_no_secret(text: str, robbu: FakeRobbu) -> None:
    for secret in (PASSWORD, PRIVATE_TOKEN, *robbu.tokens_issued):
        assert secret not in text


def error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc.__dict__)


# ---------------------------------------------------------------- the document's examples


async def test_example_template_with_parameters(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider(update_if_exists=True)
    content = Template(name="comercial_av", params={"Cliente": "Roberto", "Site": SITE})
    expected = whatsapp_example(
        "comercial_av",
        [param("Cliente", "Roberto"), param("Site", SITE)],
        contact=blank_contact("comercial", True),
    )
    await assert_sends(provider, robbu, message(content), expected)


async def test_example_free_text_with_files(robbu: FakeRobbu, make_provider: MakeProvider) -> None:
    document_example = whatsapp_example(
        "",
        [param("", ""), param("", "")],
        text="Segue os arquivos do ultimo evento",
        attendantUserName="Operador",
        contact=blank_contact("financeiro", True, name="Cliente", id="2133125456725"),
        files=[
            {"address": "", "base64": "JVBERi0xLjMKJcTl8uXrp....", "name": "seuboleto.pdf"},
            {
                "address": "",
                "base64": "aoijdpisjapsijjsjjsker03nfdikds.....",
                "name": "seuboleto2.pdf",
            },
        ],
    )
    provider = await make_provider(wallet_client_code="financeiro", update_if_exists=True)
    first = document_example["files"][0]
    outbound = message(
        Media(
            kind="document",
            base64=first["base64"],
            filename=first["name"],
            caption="Segue os arquivos do ultimo evento",
        ),
        name="Cliente",
        context={"cpf_cnpj": "2133125456725"},
        hints={"attendant": "Operador", "in_attendance": "send"},
    )
    # Our media content carries one file; the document's two empty parameter pairs carry nothing.
    expected = {**document_example, "templateParameters": [], "files": [first]}
    await assert_sends(provider, robbu, outbound, expected)
    # The document's own two-file body is what Robbu takes on free text (not on a template).
    assert await post(robbu, SEND, document_example, token=robbu.token) == (200, None)
    hsm = {**document_example, "templateName": "comercial_av"}
    assert await post(robbu, SEND, hsm, token=robbu.token) == (
        400,
        "a template (HSM) takes at most 1 file per send",
    )


async def test_example_jokers(robbu: FakeRobbu, make_provider: MakeProvider) -> None:
    provider = await make_provider()
    outbound = message(Template(name="comercial_av"), context={"joker1": "Roberto", "joker2": SITE})
    expected = whatsapp_example(
        "comercial_av",
        [],
        contact=blank_contact("comercial", False, jokers=["Roberto", SITE, "", "", ""]),
    )
    await assert_sends(provider, robbu, outbound, expected)


async def test_example_email(robbu: FakeRobbu, make_provider: MakeProvider) -> None:
    provider = await make_provider(channel="email", wallet_client_code="Teste")
    outbound = message(
        Email(subject="Oferta Especial!!", body=OFFER), channel="email", email="help@robbu.global"
    )
    expected = whatsapp_example(
        "",
        [],
        text=OFFER,
        emailSubject="Oferta Especial!!",
        channel=1,
        destination={"email": "help@robbu.global"},
        contact=blank_contact("Teste", False),
    )
    await assert_sends(provider, robbu, outbound, expected)


async def test_example_carousel(robbu: FakeRobbu, make_provider: MakeProvider) -> None:
    provider = await make_provider()
    outbound = message(Template(name="carrosseloferta", params=(CARD, CARD)))
    expected = whatsapp_example("carrosseloferta", [param("1", CARD), param("2", CARD)])
    await assert_sends(provider, robbu, outbound, expected)


async def test_example_authentication_template(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    outbound = message(Template(name="codigoverificacao", params={"Code": "xyzp42"}))
    expected = whatsapp_example("codigoverificacao", [param("Code", "xyzp42")])
    await assert_sends(provider, robbu, outbound, expected)


async def test_example_sms(robbu: FakeRobbu, make_provider: MakeProvider) -> None:
    provider = await make_provider(channel="sms", source=None, wallet_client_code="Teste")
    expected = whatsapp_example(
        "",
        [],
        text=OFFER,
        channel=2,
        destination={"countryCode": 55, "phoneNumber": 11999999999, "prospect": False},
        contact=blank_contact("Teste", False),
    )
    del expected["source"]  # the document's SMS example names no sending line
    await assert_sends(provider, robbu, message(Text(body=OFFER), channel="sms"), expected)


async def test_the_complete_example_is_refused_because_it_sets_an_attendant_and_inattendance(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider(wallet_client_code="CodDefault", update_if_exists=True)
    boleto = Media(
        kind="document",
        url="https://robbublob.blob/download/boletoteste.pdf",
        base64="...u5y3i4y5iu345yu345yu345y5y4...",
        filename="seuboleto.pdf",
    )
    outbound = message(
        Template(
            name="template1",
            params={"PrimeiroNome": "Nome alternativo", "Coringa1": "01/01/1993"},
            header_media=boleto,
        ),
        phone="+551199999999",
        name="Ana da Silva",
        context={
            "custom_code": "5150",
            "cpf_cnpj": "78905678908",
            "tag": "nometag",
            **{f"joker{i}": f"coringa{i}" for i in range(1, 6)},
        },
        hints={"attendant": "Usuário 1", "in_attendance": "skip", "recent_contact_hours": 0},
    )
    # The document's complete body without "voiceSettings" (no voice channel here) and
    # with "text" empty: Robbu ignores text on a template, and ours is always "".
    expected = whatsapp_example(
        "template1",
        [param("PrimeiroNome", "Nome alternativo"), param("Coringa1", "01/01/1993")],
        invenioPrivateToken="***",
        attendantUserName="Usuário 1",
        destination={"countryCode": 55, "phoneNumber": 1199999999, "email": ""},
        discardSettings={"recentContactLastHours": 0, "InAttendance": True},
        contact={
            "name": "Ana da Silva",
            "customCode": "5150",
            "id": "78905678908",
            "tag": "nometag",
            "jokers": ["coringa1", "coringa2", "coringa3", "coringa4", "coringa5"],
            "walletClientCode": "CodDefault",
            "updateIfExists": True,
        },
        files=[
            {
                "address": "https://robbublob.blob/download/boletoteste.pdf",
                "base64": "...u5y3i4y5iu345yu345yu345y5y4...",
                "name": "seuboleto.pdf",
            }
        ],
    )
    assert provider.build_request(outbound) == expected
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(outbound)
    assert caught.value.vendor_message == IN_ATTENDANCE
    assert (caught.value.status, caught.value.retryable) == (400, False)
    assert robbu.received == []
    assert robbu.refusals == [(400, IN_ATTENDANCE)]


# ---------------------------------------------------------------- login and the token


async def test_one_login_serves_every_send_with_the_bearer_token(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    assert robbu.logins == 0  # start() does not log in
    for i in range(3):
        await provider.send(message(Text(body="Olá"), key=f"k-{i}"))
    assert robbu.logins == 1 == provider.login.logins
    assert {h["Authorization"] for h in robbu.received_headers} == {f"Bearer {robbu.token}"}
    assert robbu.received_headers[0]["Content-Type"] == "application/json"


async def test_twenty_first_sends_at_once_log_in_once(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await asyncio.gather(*(provider.send(message(Text(body="a"), key=f"k-{i}")) for i in range(20)))
    assert robbu.logins == 1
    assert len(robbu.received) == 20


async def test_twenty_sends_refused_with_a_stale_token_cause_one_login(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await provider.send(message(Text(body="first")))
    robbu.login_elsewhere()  # e.g. someone ran the login by hand: our token is dead
    sends = [provider.send(message(Text(body="b"), key=f"k-{i}")) for i in range(20)]
    await asyncio.gather(*sends)
    assert robbu.logins == 3  # ours, the other one, and one renewal for all twenty
    assert provider.login.logins == 2
    assert robbu.requests[SEND] == 1 + 20 + 20  # each refused once, then sent once
    assert len(robbu.received) == 21
    assert {h["Authorization"] for h in robbu.received_headers[1:]} == {f"Bearer {robbu.token}"}


async def test_a_401_with_the_renewed_token_is_an_auth_error_not_a_loop(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    robbu.fail_next(Fault.unauthorized(), times=3)
    with pytest.raises(ProviderAuthError, match="freshly issued access token too") as caught:
        await provider.send(message(Text(body="Olá")))
    assert caught.value.status == 401
    assert robbu.requests[SEND] == 2
    assert robbu.logins == 2
    assert robbu.received == []


async def test_wrong_credentials_fail_the_login_without_sending(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider(password="not-the-password-123")
    with pytest.raises(
        ProviderAuthError, match=r"refused the login of user 'api\.disparo'"
    ) as caught:
        await provider.send(message(Text(body="Olá")))
    assert (caught.value.status, caught.value.left) == (401, False)
    assert caught.value.vendor_message == "Usuário ou senha inválidos."
    assert "not-the-password-123" not in error_text(caught.value)
    assert robbu.requests[SEND] == 0


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
async def test_a_base_url_ending_in_v1_as_the_document_writes_it_works(
    robbu: FakeRobbu, make_provider: MakeProvider, suffix: str
) -> None:
    provider = await make_provider(base_url=robbu.base_url + suffix)
    await provider.send(message(Text(body="Olá")))
    assert (robbu.logins, len(robbu.received)) == (1, 1)


async def test_a_login_404_is_a_wrong_base_url_not_wrong_credentials(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider(base_url=f"{robbu.base_url}/api")
    with pytest.raises(ProviderAuthError) as caught:
        await provider.send(message(Text(body="Olá")))
    error = caught.value
    assert (error.status, error.left) == (404, False)
    assert f"the Robbu login at {robbu.base_url}/api/v1/login answered 404" in str(error)
    assert "check providers.robbu_whatsapp.base_url in the config" in str(error)
    assert "password" not in str(error)
    assert robbu.requests[SEND] == 0


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.error(503), ProviderUnavailable),
        (Fault.rate_limit("30"), ProviderRateLimited),
        (Fault.hang(), ProviderUnavailable),  # the login may have left; no message did
        (Fault.disconnect(), ProviderUnavailable),
    ],
)
async def test_a_failed_login_never_sent_the_message(
    robbu: FakeRobbu, make_provider: MakeProvider, fault: Fault, error: type[ProviderError]
) -> None:
    # The hang must time out; the login after it must not, even on a loaded machine.
    provider = await make_provider(timeout=1 if fault.kind == "hang" else 10)
    robbu.fail_next(fault, path=LOGIN)
    with pytest.raises(error) as caught:
        await provider.send(message(Text(body="Olá")))
    assert type(caught.value) is error
    assert caught.value.left is False
    assert robbu.requests[SEND] == 0
    await provider.send(message(Text(body="Olá")))  # the next send logs in again
    assert robbu.logins == 1


async def test_a_send_401_after_a_failed_renewal_logs_in_on_the_next_send(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await provider.send(message(Text(body="first")))
    robbu.login_elsewhere()
    robbu.fail_next(Fault.error(503), path=LOGIN)
    with pytest.raises(ProviderUnavailable):
        await provider.send(message(Text(body="second")))
    await provider.send(message(Text(body="third")))
    assert [b["text"] for b in robbu.received] == ["first", "third"]
    assert robbu.requests[SEND] == 3  # the stale token was not tried again


# ---------------------------------------------------------------- documented answers


async def test_attendant_with_in_attendance_skip_is_refused_with_robbus_words(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    hints = {"attendant": "Operador", "in_attendance": "skip"}
    with pytest.raises(ProviderDiscarded, match="contact in attendance") as caught:
        await provider.send(message(Text(body="Olá"), hints=hints))
    assert caught.value.vendor_message == IN_ATTENDANCE
    assert caught.value.rule == "in_attendance"  # the flow's rule decides what follows


async def test_an_attendant_marks_the_contact_as_attended_for_later_guarded_sends(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    assign = message(Text(body="Olá"), hints={"attendant": "Operador", "in_attendance": "send"})
    await provider.send(assign)
    sent = robbu.received[-1]
    assert (sent["attendantUserName"], sent["discardSettings"]["InAttendance"]) == (
        "Operador",
        False,
    )
    guarded = message(Text(body="Promo"), key="k-2", hints={"in_attendance": "defer"})
    with pytest.raises(ProviderDiscarded) as caught:
        await provider.send(guarded)
    assert caught.value.vendor_message == IN_ATTENDANCE


@pytest.mark.parametrize(
    ("hints", "discard"),
    [
        ({}, {"recentContactLastHours": 0, "InAttendance": False}),
        (
            {"recent_contact_hours": 4.5, "in_attendance": "skip"},
            {"recentContactLastHours": 4, "InAttendance": True},
        ),
        (
            {"recent_contact_hours": 0.5, "in_attendance": "defer"},
            {"recentContactLastHours": 0, "InAttendance": True},
        ),
        (
            {"recent_contact_hours": 24, "in_attendance": "send"},
            {"recentContactLastHours": 24, "InAttendance": False},
        ),
    ],
)
async def test_discard_settings_follow_the_flow_rules(
    robbu: FakeRobbu, make_provider: MakeProvider, hints: dict[str, Any], discard: dict[str, Any]
) -> None:
    provider = await make_provider()
    await provider.send(message(Text(body="Olá"), hints=hints))
    assert robbu.received[-1]["discardSettings"] == discard


@pytest.mark.parametrize(
    ("key", "limit", "index"), [("joker1", 300, 0), ("joker4", 300, 3), ("joker5", 3000, 4)]
)
async def test_jokers_up_to_their_limit_are_sent_and_longer_ones_refused_unsent(
    robbu: FakeRobbu, make_provider: MakeProvider, key: str, limit: int, index: int
) -> None:
    provider = await make_provider()
    await provider.send(message(Template(name="comercial_av"), context={key: "x" * limit}))
    assert robbu.received[-1]["contact"]["jokers"][index] == "x" * limit
    too_long = message(Template(name="comercial_av"), context={key: "é" * (limit + 1)})
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(too_long)
    assert caught.value.left is False
    assert f"contact.jokers[{index}]" in str(caught.value)
    assert f"`{key}`" in str(caught.value)
    assert f"at most {limit}" in str(caught.value)
    assert robbu.requests[SEND] == 1


async def test_a_wrong_private_token_pauses_the_provider_naming_the_setting(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    """The private token is the account's, not the message's: every send would be
    refused alike, so it pauses the provider (like refused credentials) instead of
    failing each message, and says which setting to fix."""
    provider = await make_provider(private_token="xxxxxx-xxxxxxx-xxxxxxxx-xxxxxxxx")
    with pytest.raises(ProviderAuthError) as caught:
        await provider.send(message(Text(body="Olá")))
    error = caught.value
    assert error.status == 400
    assert error.vendor_message == "invenioPrivateToken is missing or invalid"
    assert unwell(error)
    assert "check providers.robbu_whatsapp.private_token in the config" in str(error)
    assert "xxxxxx-xxxxxxx" not in str(error)


async def test_a_404_is_a_wrong_base_url_that_pauses_the_provider(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    """Robbu's document: 404 means "URL incorreta". It says nothing about the message,
    so failing it (and every other queued one) would be wrong: it pauses the provider."""
    provider = await make_provider()
    robbu.fail_next(Fault(kind="error", status=404, message="No HTTP resource was found."))
    with pytest.raises(ProviderAuthError) as caught:
        await provider.send(message(Text(body="Olá")))
    error = caught.value
    assert (error.status, error.vendor_message) == (404, "No HTTP resource was found.")
    assert unwell(error)
    assert "URL incorreta" in str(error)
    assert "check providers.robbu_whatsapp.base_url in the config" in str(error)


async def test_errors_about_the_message_stay_final(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    robbu.fail_next(Fault(kind="error", status=400, message="destination.phoneNumber inválido"))
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(message(Text(body="Olá")))
    assert (caught.value.status, caught.value.retryable) == (400, False)
    assert not unwell(caught.value)


async def test_a_200_that_says_not_sent_is_rejected(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    robbu.fail_next(Fault(kind="error", status=200, message=IN_ATTENDANCE))
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(message(Text(body="Olá")))
    assert (caught.value.status, caught.value.vendor_message) == (200, IN_ATTENDANCE)


# ---------------------------------------------------------------- transport faults


async def test_500_is_unavailable_and_retryable(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    robbu.fail_next(Fault.error(500))
    with pytest.raises(ProviderUnavailable) as caught:
        await provider.send(message(Text(body="Olá")))
    assert (caught.value.status, caught.value.retryable) == (500, True)
    assert caught.value.vendor_message == "An error has occurred."


async def test_429_is_rate_limited_with_retry_after(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    robbu.fail_next(Fault.rate_limit("7"))
    with pytest.raises(ProviderRateLimited) as caught:
        await provider.send(message(Text(body="Olá")))
    assert caught.value.retry_after == 7.0
    assert robbu.received == []


@pytest.mark.parametrize("fault", [Fault.hang(), Fault.disconnect()])
async def test_a_lost_answer_after_robbu_took_the_message_is_ambiguous(
    robbu: FakeRobbu, make_provider: MakeProvider, fault: Fault
) -> None:
    provider = await make_provider(timeout=1)  # the hang times out, the warm-up must not
    await provider.send(message(Text(body="warm-up")))  # the login is not what times out
    robbu.fail_next(fault)
    with pytest.raises(ProviderAmbiguous) as caught:
        await provider.send(message(Text(body="Olá"), key="k-2"))
    assert caught.value.left is True
    assert [b["text"] for b in robbu.received] == ["warm-up", "Olá"]  # it was sent
    assert provider.capabilities.idempotency_key is False  # so the engine will not resend


async def test_a_refused_connection_is_unreachable_and_never_left(
    make_provider: MakeProvider,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    provider = await make_provider(base_url=f"http://127.0.0.1:{dead}")
    with pytest.raises(ProviderUnreachable) as caught:
        await provider.send(message(Text(body="Olá")))
    assert (caught.value.left, caught.value.retryable) == (False, True)


# ---------------------------------------------------------------- refused before sending


@pytest.mark.parametrize(
    ("channel", "content", "extra", "complaint"),
    [
        (
            "whatsapp",
            Buttons(body="b", buttons=(Button(id="a", title="A"),)),
            {},
            "no reply buttons",
        ),
        (
            "whatsapp",
            ListMenu(
                body="b", button="Ver", sections=(ListSection(rows=(ListRow(id="r", title="R"),)),)
            ),
            {},
            "no reply buttons or lists",
        ),
        ("whatsapp", Location(latitude=-23.5, longitude=-46.6), {}, "no location"),
        ("whatsapp", Email(subject="s", body="b"), {}, "only on channel email"),
        ("email", Text(body="sem assunto"), {"email": "a@b.com"}, "needs `email:` content"),
        ("sms", Media(kind="image", url="https://x.example/a.jpg"), {}, "on channel sms"),
        ("sms", Template(name="t"), {}, "cannot send template content on channel sms"),
        ("whatsapp", Text(body="b"), {"phone": None}, "has no phone number"),
        ("whatsapp", Text(body="b"), {"phone": "+999"}, "cannot split the phone"),
        ("email", Email(subject="s", body="b"), {}, "has no e-mail address"),
        ("whatsapp", Media(kind="document", base64="JVBERi0="), {}, "filename with an extension"),
        ("whatsapp", Media(kind="image", url="https://x.example/img"), {}, "has none"),
        ("whatsapp", Media(kind="image"), {}, "neither url nor base64"),
        ("whatsapp", Text(body="b"), {"context": {"joker2": {"a": 1}}}, "needs text for"),
        # The carousel note: a media-library URL needs its file extension at the end.
        (
            "whatsapp",
            Template(name="carrosseloferta", params=(CARD, CARD.removesuffix(".jpeg"))),
            {},
            r"parameter 2 of template 'carrosseloferta'.*no file extension.*\.jpeg",
        ),
    ],
)
async def test_what_robbu_cannot_take_is_refused_before_anything_leaves(
    robbu: FakeRobbu,
    make_provider: MakeProvider,
    channel: Channel,
    content: Content,
    extra: dict[str, Any],
    complaint: str,
) -> None:
    provider = await make_provider(channel=None)
    with pytest.raises(ProviderRejected, match=complaint) as caught:
        await provider.send(message(content, channel=channel, **extra))
    assert caught.value.left is False
    assert robbu.requests == {}


async def test_a_message_for_another_channel_than_the_configured_one_is_refused(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider(channel="sms")
    with pytest.raises(ProviderRejected, match="channel sms only") as caught:
        await provider.send(message(Text(body="Olá")))
    assert caught.value.left is False
    assert robbu.requests == {}


async def test_media_names_come_from_the_filename_the_url_or_the_mime_type(
    robbu: FakeRobbu, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await provider.send(
        message(Media(kind="image", url="https://cdn.example/a/foto%201.jpg", caption="Oi"))
    )
    await provider.send(
        message(
            Media(
                kind="document",
                url="https://cdn.example/dl?id=9",
                mime_type="application/pdf",
                filename="boleto",
            )
        )
    )
    first, second = robbu.received
    assert (first["text"], first["files"]) == (
        "Oi",
        [{"address": "https://cdn.example/a/foto%201.jpg", "base64": "", "name": "foto 1.jpg"}],
    )
    assert second["files"][0]["name"] == "boleto.pdf"


# ---------------------------------------------------------------- the fake keeps the contract


async def post(
    robbu: FakeRobbu, path: str, body: Any, *, token: str | None = None
) -> tuple[int, str | None]:
    """Status and, unless 200, Robbu's ``message``."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(robbu.base_url + path, data=json.dumps(body), headers=headers) as answer,
    ):
        said = None if answer.status == 200 else (await answer.json())["message"]
        return answer.status, said


async def login(robbu: FakeRobbu) -> str:
    credentials = {"Company": "acme", "Username": "api.disparo", "Password": PASSWORD}
    async with (
        aiohttp.ClientSession() as session,
        session.post(robbu.base_url + LOGIN, json=credentials) as answer,
    ):
        data = await answer.json()
    assert data["expires_in"] == 287971200
    assert data["token_type"] == "bearer"
    token: str = data["access_token"]
    return token


async def test_the_fake_invalidates_the_previous_token_on_each_login(robbu: FakeRobbu) -> None:
    body = whatsapp_example("comercial_av", [])
    first = await login(robbu)
    assert await post(robbu, SEND, body, token=first) == (200, None)
    second = await login(robbu)
    assert await post(robbu, SEND, body, token=first) == (
        401,
        "Authorization has been denied for this request.",
    )
    assert await post(robbu, SEND, body, token=second) == (200, None)
    assert await post(robbu, SEND, body) == (401, "Authorization has been denied for this request.")


async def test_the_fake_answers_robbus_words_when_text_is_missing(robbu: FakeRobbu) -> None:
    token = await login(robbu)
    body = whatsapp_example("comercial_av", [])
    del body["text"]
    assert await post(robbu, SEND, body, token=token) == (400, NULL_REFERENCE)
    assert await post(robbu, SEND, {**body, "text": None}, token=token) == (400, NULL_REFERENCE)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"channel": 4}, "channel must be 1"),
        ({"channel": "3"}, "channel must be 1"),
        ({"destination": {"countryCode": 55, "phoneNumber": "11999999999"}}, "must be numbers"),
        (
            {"destination": {"countryCode": 55, "phoneNumber": 5511999999999, "email": ""}},
            "destination.phoneNumber must be the DDD and the number",
        ),
        (
            {"source": {"countryCode": 55, "phoneNumber": 999999999, "prospect": False}},
            "source.phoneNumber must be the DDD and the number",
        ),
        ({"channel": 1}, "destination.email is required"),
        ({"discardSettings": {"recentContactLastHours": 1.5}}, "whole number of hours"),
        ({"templateParameters": [{"parameterName": "a"}]}, "exactly parameterName"),
        (
            {"contact": blank_contact("c", False, jokers=["x" * 301])},
            r"jokers\[0\] is longer than 300",
        ),
        ({"contact": blank_contact("c", False, updateIfExists="yes")}, "updateIfExists"),
        ({"files": [{"address": "", "base64": "", "name": "a.pdf"}]}, "address or base64"),
        ({"files": [{"address": "https://x/y", "base64": "", "name": "boleto"}]}, "extension"),
        ({"templateName": ""}, "nothing to send"),
        ({"voiceSettings": {"callId": 123123}}, "callId"),
        (
            {"templateParameters": [param("1", CARD.removesuffix(".jpeg"))]},
            "extensão",
        ),
    ],
)
async def test_the_fake_refuses_what_the_document_does_not_allow(
    robbu: FakeRobbu, change: dict[str, Any], said: str
) -> None:
    token = await login(robbu)
    status, message_ = await post(robbu, SEND, {**whatsapp_example("t", []), **change}, token=token)
    assert status == 400
    assert message_ is not None
    assert re.search(said, message_)


@pytest.mark.parametrize(
    ("path", "typo", "said"),
    [
        ((), "templateParameter", "templateParameter; SendMessage takes attendantUserName"),
        ((), "discardSetting", "unknown field(s) discardSetting;"),
        ((), "InvenioPrivateToken", "unknown field(s) InvenioPrivateToken;"),
        (("contact",), "walletClientcode", "contact.walletClientcode; SendMessage takes"),
        (("destination",), "phone", "destination.phone; SendMessage takes destination.c"),
        (("source",), "phonenumber", "unknown field(s) source.phonenumber;"),
        (("discardSettings",), "inAttendance", "discardSettings.inAttendance;"),
        (("files", 0), "adress", "files[0].adress;"),
        (("voiceSettings",), "callID", "voiceSettings.callID;"),
    ],
)
async def test_the_fake_refuses_a_misspelt_field_anywhere_as_the_other_fakes_do(
    robbu: FakeRobbu, path: tuple[str | int, ...], typo: str, said: str
) -> None:
    """Robbu would ignore a misspelt field and send without it (no template
    parameters, no wallet): the fake refuses it, so an adapter typo fails the tests."""
    token = await login(robbu)
    body = whatsapp_example("t", [])
    body["files"] = [{"address": "https://x/y.pdf", "base64": "", "name": "y.pdf"}]
    body["voiceSettings"] = {"callId": "123123"}
    assert await post(robbu, SEND, body, token=token) == (200, None)  # every field as documented
    target: Any = body
    for step in path:
        target = target[step]
    target[typo] = "x"
    status, words = await post(robbu, SEND, body, token=token)
    assert status == 400
    assert words is not None
    assert said in words


async def test_the_fake_needs_json_and_answers_404_for_unknown_urls(robbu: FakeRobbu) -> None:
    token = await login(robbu)
    async with aiohttp.ClientSession() as session:
        async with session.post(robbu.base_url + "/v1/sendmessages", json={}) as answer:
            assert answer.status == 404
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
        async with session.post(robbu.base_url + SEND, data=b"{}", headers=headers) as answer:
            assert answer.status == 415
    assert await post(robbu, LOGIN, {"Company": "acme", "Username": "api.disparo"}) == (
        400,
        "The request is invalid: Password is required.",
    )


def test_the_fake_runs_standalone() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.robbu", "--port", "0", "--password", "p"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())

        async def drive() -> dict[str, Any]:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                spec = {"kind": "error", "status": 503, "times": 2}
                async with session.post(base + "/_faults", json=spec) as answer:
                    assert answer.status == 200
                async with session.get(base + "/_stats") as answer:
                    stats: dict[str, Any] = await answer.json()
                    return stats

        assert asyncio.run(drive()) == {"logins": 0, "requests": {}, "sent": 0, "refusals": []}
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
        if process.stdout is not None:
            process.stdout.close()


# ---------------------------------------------------------------- webhooks, secrets, config


@pytest.mark.parametrize(
    "body", [b"", b"garbage", b'{"status": "delivered", "id": "1"}', b'[{"x": 1}]']
)
async def test_every_webhook_body_is_refused_because_robbu_sends_none(
    make_provider: MakeProvider, body: bytes
) -> None:
    provider = await make_provider()
    with pytest.raises(ProviderRejected, match="takes no webhooks") as caught:
        provider.parse_webhook(body, {}, NOW)
    assert "Invenio Center" in str(caught.value)


async def test_secrets_and_phones_never_reach_errors_or_logs(
    robbu: FakeRobbu, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = await make_provider(timeout=1)  # the hang times out, the other sends must not
    await provider.send(message(Text(body="ok")))
    errors: list[ProviderError] = []
    faults = [
        Fault.error(500),
        Fault.rate_limit(),
        Fault.hang(),
        Fault.disconnect(),
        Fault(kind="error", status=400, message=f"invenioPrivateToken {PRIVATE_TOKEN} inválido"),
        Fault(kind="error", status=400, message=f"token {robbu.token} / senha {PASSWORD}"),
        Fault.unauthorized(),
    ]
    for i, fault in enumerate(faults):
        robbu.fail_next(fault, times=2 if fault.kind == "unauthorized" else 1)
        with pytest.raises(ProviderError) as caught:
            await provider.send(message(Text(body="Olá"), key=f"k-{i}"))
        errors.append(caught.value)
    robbu.fail_next(Fault(kind="error", status=401, message=f"bad password {PASSWORD}"), path=LOGIN)
    robbu.login_elsewhere()
    with pytest.raises(ProviderAuthError) as denied:
        await provider.send(message(Text(body="Olá"), key="k-last"))
    errors.append(denied.value)
    for error in errors:
        assert_no_secret(error_text(error), robbu)
    assert errors[4].vendor_message == "invenioPrivateToken *** inválido"
    assert provider.build_request(message(Text(body="x")))["invenioPrivateToken"] == "***"
    assert PASSWORD not in repr(provider.config)
    assert PRIVATE_TOKEN not in repr(provider.config)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == len(errors)
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert_no_secret(text, robbu)
        assert "11999999999" not in text
    assert any("+55*******9999" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("channel", "content", "said", "masked"),
    [
        ("whatsapp", Text(body="Olá"), "phoneNumber 11988887777", "phoneNumber +55*******7777"),
        ("sms", Text(body="Olá"), "phoneNumber 11988887777", "phoneNumber +55*******7777"),
        (
            "email",
            Email(subject="Oi", body="Olá"),
            "email ana@exemplo.com",
            "email ***@exemplo.com",
        ),
    ],
)
async def test_the_address_robbu_echoes_in_an_error_is_masked_in_the_log(
    robbu: FakeRobbu,
    make_provider: MakeProvider,
    caplog: pytest.LogCaptureFixture,
    channel: Channel,
    content: Content,
    said: str,
    masked: str,
) -> None:
    """Robbu writes the destination as it got it (the number without the country
    code): a refusal that names it must not put the contact's address in the log."""
    provider = await make_provider(channel=channel)
    robbu.fail_next(Fault(kind="error", status=400, message=f"destination.{said} inválido"))
    with pytest.raises(ProviderRejected) as caught:
        await provider.send(
            message(content, channel=channel, phone="+5511988887777", email="ana@exemplo.com")
        )
    assert caught.value.vendor_message == f"destination.{said} inválido"
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "11988887777" not in line
    assert "ana@" not in line
    assert f"destination.{masked} inválido" in line


def test_capabilities_tell_the_truth() -> None:
    assert provider_class("robbu") is RobbuProvider
    assert config_model_for("robbu") is RobbuConfig
    whatsapp = RobbuProvider(
        "r", RobbuConfig.model_validate(settings("https://api.robbu.global")), NoHost()
    )
    caps = whatsapp.capabilities
    assert caps.channels == {"whatsapp"}
    assert caps.content_types == {"text", "media", "template"}
    assert (caps.files_per_template, caps.idempotency_key, caps.webhooks, caps.read_receipts) == (
        1,
        False,
        False,
        False,
    )
    every = RobbuProvider(
        "r",
        RobbuConfig.model_validate(settings("https://api.robbu.global", channel=None)),
        NoHost(),
    )
    assert every.capabilities.channels == {"whatsapp", "sms", "email"}
    assert every.capabilities.content_types == {"text", "media", "template", "email"}
    sms = RobbuConfig.model_validate(settings("https://api.robbu.global", channel="sms"))
    assert RobbuProvider("r", sms, NoHost()).capabilities.content_types == {"text"}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"base_url": "ftp://robbu"}, "base_url"),
        ({"base_url": "https://api.robbu.global/v1?x=1"}, "base_url takes no"),
        ({"password": ""}, "password"),
        ({"private_token": ""}, "private_token"),
        ({"company": ""}, "company"),
        ({"channel": "fax"}, "channel"),
        ({"source": {"country_code": 55, "phone_number": "+55 11 9999"}}, "phone_number"),
        ({"source": {"country_code": 55, "phone_number": "119", "prospekt": True}}, "prospekt"),
        ({"timeout": 0}, "timeout"),
        ({"wallet": "x"}, "wallet"),
    ],
)
def test_bad_configs_are_refused(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        RobbuConfig.model_validate(settings("https://api.robbu.global", **change))


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (
            "5511999999999",
            "starts with the country code 55, which goes in country_code; "
            "write phone_number without it: '11999999999'",
        ),
        (551199999999, "write phone_number without it: '1199999999'"),
        ("119999", "10 or 11 digits without the country code"),
    ],
)
def test_a_line_written_with_its_country_code_is_refused_naming_the_field(
    line: str | int, said: str
) -> None:
    """Robbu takes the country code in countryCode: 55 + 5511999999999 names a line
    that does not exist, and every send would fail at Robbu."""
    source = {"country_code": 55, "phone_number": line}
    with pytest.raises(ValidationError) as caught:
        RobbuConfig.model_validate(settings("https://api.robbu.global", source=source))
    (problem,) = caught.value.errors()
    assert problem["loc"] == ("source", "phone_number")
    assert said in problem["msg"]


@pytest.mark.parametrize(
    ("code", "line"), [(55, "55999999999"), (55, "1133334444"), (1, "2025550123")]
)
def test_national_lines_load_even_when_the_area_code_looks_like_the_country_code(
    code: int, line: str
) -> None:
    source = {"country_code": code, "phone_number": line}
    config = RobbuConfig.model_validate(settings("https://api.robbu.global", source=source))
    assert config.source is not None
    assert config.source.phone_number == line


def test_the_documented_config_loads_with_a_numeric_line() -> None:
    config = RobbuConfig.model_validate(
        settings(
            "https://api.robbu.global/",
            source={"country_code": 55, "phone_number": 11999999999},
            webhook_secret="w",
        )
    )
    assert config.base_url == "https://api.robbu.global"
    assert config.source is not None
    assert config.source.phone_number == "11999999999"
    assert (config.update_if_exists, config.max_in_flight) == (False, 64)


async def test_send_before_start_is_a_programming_error() -> None:
    config = RobbuConfig.model_validate(settings("http://127.0.0.1:9"))
    provider = RobbuProvider("r", config, NoHost())
    with pytest.raises(RuntimeError, match="before start"):
        await provider.send(message(Text(body="Olá")))
    await provider.close()


def test_context_numbers_become_text_and_cpf_fills_the_contact_id() -> None:
    config = RobbuConfig.model_validate(settings("https://api.robbu.global"))
    provider = RobbuProvider("r", config, NoHost())  # never started: no network needed
    outbound = message(Template(name="t"), context={"joker1": 5, "cpf": 12345678909})
    contact = provider.build_request(outbound)["contact"]
    assert (contact["jokers"][0], contact["id"]) == ("5", "12345678909")
