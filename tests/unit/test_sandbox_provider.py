"""The sandbox provider: ids, dedupe, scheduled status callbacks, strict webhooks."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from engine.errors import ProviderRejected
from engine.models import (
    Channel,
    Email,
    MessageStatus,
    OutboundMessage,
    Text,
)
from providers.generic_webhook import parse_generic_webhook, parse_item_by_item
from providers.registry import config_model_for, provider_class
from providers.sandbox import SandboxConfig, SandboxProvider
from tests.provider_kit import outbound

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PHONE = "+5511999991234"


class RecordingHost:
    """ProviderHost that keeps what it was asked to schedule."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[str, float, bytes]] = []

    async def schedule_callback(self, provider: str, delay_seconds: float, body: bytes) -> None:
        self.scheduled.append((provider, delay_seconds, body))

    def statuses(self) -> list[tuple[float, str]]:
        return [(d, json.loads(b)["statuses"][0]["status"]) for _, d, b in self.scheduled]


def message(
    key: str = "run-1:hello:0",
    *,
    phone: str | None = PHONE,
    channel: Channel = "whatsapp",
    email: str | None = None,
) -> OutboundMessage:
    content = Email(subject="Oi", body="Olá") if channel == "email" else Text(body="Olá")
    return outbound(content, key=key, step="hello", channel=channel, phone=phone, email=email)


def sandbox(host: RecordingHost, **config: Any) -> SandboxProvider:
    return SandboxProvider(
        "sandbox", SandboxConfig.model_validate({"type": "sandbox", **config}), host
    )


def parse(provider: SandboxProvider, document: Any) -> Any:
    return provider.parse_webhook(json.dumps(document).encode(), {}, NOW)


# ---------------------------------------------------------------- sending


async def test_send_answers_a_sandbox_id_and_reports_sent_delivered_read_on_schedule() -> None:
    host = RecordingHost()
    provider = sandbox(host, delivered_after="1s", read_after="5s")
    result = await provider.send(message())
    assert result.status == MessageStatus.SENT
    assert re.fullmatch(r"sbx-[0-9a-f-]{36}", result.provider_message_id or "")
    assert host.statuses() == [(0.0, "sent"), (1.0, "delivered"), (5.0, "read")]
    assert {name for name, _, _ in host.scheduled} == {"sandbox"}


@pytest.mark.parametrize(
    ("delivered", "read", "expected"),
    [
        ("500ms", "2m", [(0.0, "sent"), (0.5, "delivered"), (120.0, "read")]),
        (2, 3.5, [(0.0, "sent"), (2.0, "delivered"), (3.5, "read")]),
        ("1m30s", None, [(0.0, "sent"), (90.0, "delivered")]),
        (None, None, [(0.0, "sent")]),
    ],
)
async def test_configured_delays_become_callback_delays(
    delivered: Any, read: Any, expected: list[tuple[float, str]]
) -> None:
    host = RecordingHost()
    await sandbox(host, delivered_after=delivered, read_after=read).send(message())
    assert host.statuses() == expected


async def test_a_resend_with_the_same_key_returns_the_same_id_and_schedules_nothing() -> None:
    host = RecordingHost()
    provider = sandbox(host)
    first = await provider.send(message("k-1"))
    again = await provider.send(message("k-1"))
    other = await provider.send(message("k-2"))
    assert again.provider_message_id == first.provider_message_id
    assert other.provider_message_id != first.provider_message_id
    assert len(host.scheduled) == 6  # three callbacks for each of the two distinct keys


async def test_the_id_survives_a_restart_so_a_resend_after_a_crash_is_recognisable() -> None:
    before = await sandbox(RecordingHost()).send(message("k-1"))
    after = await sandbox(RecordingHost()).send(message("k-1"))
    assert before.provider_message_id == after.provider_message_id


async def test_a_number_ending_in_the_fail_suffix_is_accepted_then_fails_by_callback() -> None:
    host = RecordingHost()
    provider = sandbox(host, delivered_after="2s")
    result = await provider.send(message(phone="+5511999990000"))
    assert result.status == MessageStatus.SENT
    assert host.statuses() == [(2.0, "failed")]
    parsed = provider.parse_webhook(host.scheduled[0][2], {}, NOW)
    (report,) = parsed.statuses
    assert report.status == MessageStatus.FAILED
    assert report.error_code == "undeliverable"
    assert report.error_message is not None
    assert "0000" in report.error_message


async def test_fail_suffix_null_lets_every_number_through() -> None:
    host = RecordingHost()
    await sandbox(host, fail_suffix=None).send(message(phone="+5511999990000"))
    assert [s for _, s in host.statuses()] == ["sent", "delivered", "read"]


async def test_an_email_whose_local_part_ends_in_the_suffix_fails_too() -> None:
    host = RecordingHost()
    await sandbox(host).send(message(channel="email", phone=None, email="ana0000@example.com"))
    assert [s for _, s in host.statuses()] == ["failed"]


async def test_a_channel_outside_the_configured_ones_is_rejected_before_anything_is_sent() -> None:
    host = RecordingHost()
    provider = sandbox(host, channels=["whatsapp"])
    with pytest.raises(ProviderRejected, match="does not send sms") as caught:
        await provider.send(message(channel="sms"))
    assert caught.value.left is False
    assert host.scheduled == []
    assert provider.capabilities.channels == frozenset({"whatsapp"})


async def test_a_contact_without_an_address_for_the_channel_is_rejected() -> None:
    host = RecordingHost()
    with pytest.raises(ProviderRejected, match="no phone number for sms"):
        await sandbox(host).send(message(channel="sms", phone=None))
    assert host.scheduled == []


async def test_a_failure_to_schedule_lets_the_same_key_be_sent_again() -> None:
    class BrokenOnce(RecordingHost):
        broken = True

        async def schedule_callback(self, provider: str, delay: float, body: bytes) -> None:
            if self.broken:
                self.broken = False
                raise RuntimeError("store is down")
            await super().schedule_callback(provider, delay, body)

    host = BrokenOnce()
    provider = sandbox(host)
    with pytest.raises(RuntimeError):
        await provider.send(message("k-1"))
    await provider.send(message("k-1"))
    assert [s for _, s in host.statuses()] == ["sent", "delivered", "read"]


def test_build_request_shows_what_the_sandbox_sends() -> None:
    body = sandbox(RecordingHost()).build_request(message("k-9"))
    assert body == {
        "to": PHONE,
        "channel": "whatsapp",
        "content": {"type": "text", "body": "Olá", "preview_url": False},
        "key": "k-9",
    }


def test_capabilities_promise_every_content_type_reads_and_key_dedupe() -> None:
    caps = sandbox(RecordingHost(), read_after=None).capabilities
    assert caps.content_types == {
        "text",
        "media",
        "buttons",
        "list",
        "location",
        "template",
        "email",
    }
    assert caps.read_receipts is True
    assert caps.idempotency_key is True


def test_the_registry_knows_the_sandbox() -> None:
    assert provider_class("sandbox") is SandboxProvider
    assert config_model_for("sandbox") is SandboxConfig


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"delivered_after": "5x"}, "not a delay"),
        ({"delivered_after": -1}, "negative"),
        ({"delivered_after": True}, "not a delay"),
        ({"delivered_after": "10s", "read_after": "5s"}, "read_after"),
        ({"channels": []}, "at least one channel"),
        ({"channels": ["telegram"]}, "channels"),
        ({"fail_suffix": ""}, "fail_suffix"),
        ({"delivered_afer": "1s"}, "delivered_afer"),
    ],
)
def test_bad_configs_are_refused_with_a_pointed_message(
    config: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        SandboxConfig.model_validate({"type": "sandbox", **config})


# ---------------------------------------------------------------- webhooks


async def test_every_scheduled_callback_parses_back_into_a_status_for_the_message() -> None:
    host = RecordingHost()
    provider = sandbox(host)
    result = await provider.send(message("k-1"))
    reports = [r for _, _, b in host.scheduled for r in provider.parse_webhook(b, {}, NOW).statuses]
    assert [r.status for r in reports] == ["sent", "delivered", "read"]
    for report in reports:
        assert report.provider == "sandbox"
        assert report.provider_message_id == result.provider_message_id
        assert report.idempotency_key == "k-1"
        assert report.at == NOW  # the callback's own time: when it runs
    assert len({r.dedupe_key for r in reports}) == 3


def test_inbound_reply_button_and_choice_become_contact_events() -> None:
    parsed = parse(
        sandbox(RecordingHost()),
        {
            "inbound": [
                {
                    "id": "in-1",
                    "from": PHONE,
                    "type": "reply",
                    "text": "sim",
                    "at": "2024-05-01T09:00:00-03:00",
                },
                {"from": PHONE, "type": "button", "button_id": "confirm", "text": "Confirmar"},
                {"from": PHONE, "type": "choice", "button_id": "row-2"},
            ]
        },
    )
    assert parsed.errors == []
    reply, button, choice = parsed.contact_events
    assert (reply.type, reply.text, reply.phone, reply.source) == ("reply", "sim", PHONE, "sandbox")
    assert reply.at == NOW
    assert reply.at.tzinfo is UTC
    assert reply.dedupe_key == "sandbox:inbound:in-1"
    assert (button.type, button.button_id) == ("button", "confirm")
    assert (choice.type, choice.button_id, choice.at) == ("choice", "row-2", NOW)


def test_the_same_inbound_event_redelivered_has_the_same_dedupe_key() -> None:
    provider = sandbox(RecordingHost())
    item = {"from": PHONE, "type": "reply", "text": "sim", "at": "2024-05-01T12:00:00Z"}
    first = parse(provider, {"inbound": [item]}).contact_events[0]
    again = parse(provider, {"inbound": [dict(reversed(item.items()))]}).contact_events[0]
    later = parse(provider, {"inbound": [{**item, "at": "2024-05-01T12:00:05Z"}]}).contact_events[0]
    assert first.dedupe_key == again.dedupe_key
    assert first.dedupe_key != later.dedupe_key


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (b"[]", "expected a JSON object, got list"),
        (b"{}", "neither 'statuses' nor 'inbound'"),
        (b'{"statuses": {"id": "x"}}', "'statuses' must be a list"),
        (b'{"statuses": [], "stauts": []}', "unknown field"),
    ],
)
def test_an_unusable_body_is_rejected_whole_with_a_clear_message(
    body: bytes, complaint: str
) -> None:
    with pytest.raises(ProviderRejected, match=complaint) as caught:
        sandbox(RecordingHost()).parse_webhook(body, {}, NOW)
    assert caught.value.status == 400


def test_one_bad_item_in_a_batch_is_reported_and_the_good_ones_are_kept() -> None:
    parsed = parse(
        sandbox(RecordingHost()),
        {
            "statuses": [
                {"id": "sbx-1", "status": "delivered"},
                {"id": "sbx-2", "status": "deliverd"},
                "sbx-3",
                {"status": "read"},
                {"key": "k-4", "status": "read", "at": "2024-05-01T12:00:00"},
                {"key": "k-5", "status": "failed", "error": "blocked by the user", "colour": "red"},
                {"key": "k-6", "status": "failed", "error": "blocked by the user"},
            ],
            "inbound": [
                {"from": PHONE, "type": "button"},
                {"from": "not a phone", "type": "reply", "text": "oi"},
                {"from": PHONE, "type": "reply", "text": "oi"},
            ],
        },
    )
    assert [(r.provider_message_id, r.idempotency_key, r.status) for r in parsed.statuses] == [
        ("sbx-1", None, "delivered"),
        (None, "k-6", "failed"),
    ]
    assert parsed.statuses[1].error_message == "blocked by the user"
    assert [e.text for e in parsed.contact_events] == ["oi"]
    assert len(parsed.errors) == 7
    joined = "\n".join(parsed.errors)
    assert "statuses[1]: status:" in joined
    assert "statuses[2]: must be an object, got str" in joined
    assert "statuses[3]: a status needs 'id'" in joined
    assert "statuses[4]: at:" in joined  # no timezone
    assert "statuses[5]: colour:" in joined
    assert "inbound[0]: a button needs 'button_id'" in joined
    assert "inbound[1]: from:" in joined


@pytest.mark.parametrize(
    "statuses",
    [
        [{"id": "sbx-1", "status": "delivered"}],
        [{"key": "k-1", "status": "read", "at": "2024-05-01T09:00:00-03:00"}],
        [
            {"id": "sbx-1", "key": "k-1", "status": "sent", "at": "2024-05-01T12:00:00Z"},
            {"id": "sbx-2", "status": "failed", "error": {"code": "131026", "message": "x"}},
            {"key": "k-3", "status": "failed", "error": "blocked by the user"},
            {"key": "k-4", "status": "failed", "error": {"code": "470"}},
        ],
    ],
)
def test_a_body_of_valid_statuses_parses_in_one_pass_as_item_by_item(
    statuses: list[dict[str, Any]],
) -> None:
    body = json.dumps({"statuses": statuses}).encode()
    one_pass = parse_generic_webhook(body, provider="wa", received_at=NOW)
    assert one_pass == parse_item_by_item(body, provider="wa", received_at=NOW)
    assert len(one_pass.statuses) == len(statuses)
    assert all(r.at.tzinfo == UTC for r in one_pass.statuses)
    assert not one_pass.errors
