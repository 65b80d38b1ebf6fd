"""Which inbound opens the WhatsApp 24 h window: a message the contact wrote on
WhatsApp. A reply to the SMS follow-up (the example flow asks for one) is an
exchange with the bot, but WhatsApp does not count it: free text sent on its
strength would be refused, so the closed window's template goes instead."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from tests.integration.engine_kit import harness, settings_with_flows

FLOW = """\
flow: aviso
defaults:
  provider: sandbox
  rules: {window: template}
concurrency: many
start: aviso
steps:
  aviso:
    send:
      text: "Oi {{ contact.first_name }}, seu boleto vence amanhã."
      template:
        name: boleto_vencendo
        params: {PrimeiroNome: "{{ contact.first_name }}", Valor: "R$ 10,00", Vencimento: "30/11"}
    next: fim
  fim: {end: completed}
"""


def webhook(reply_id: str, text: str) -> bytes:
    return json.dumps(
        {"inbound": [{"id": reply_id, "from": "5511999998888", "type": "reply", "text": text}]}
    ).encode()


async def test_a_reply_by_sms_does_not_open_the_whatsapp_window(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        first = await h.start("aviso")  # the contact exists; the window is closed
        await h.advance(timedelta(minutes=1))
        # The contact answers the SMS follow-up through the SMS provider's webhook.
        await h.engine.ingest_webhook("sandbox_sms", webhook("sms-1", "vou pagar hoje"), {})
        await h.engine.settle()
        await h.advance(timedelta(minutes=15))
        after_sms = await h.start("aviso", key="after-sms")
        # The same words on WhatsApp open the window.
        await h.engine.ingest_webhook("sandbox", webhook("wa-1", "vou pagar hoje"), {})
        await h.engine.settle()
        await h.advance(timedelta(minutes=15))
        after_whatsapp = await h.start("aviso", key="after-whatsapp")

        contact = await h.engine.get_contact("c-1")
        assert contact.last_interaction_at is not None
        kinds = []
        for run in (first, after_sms, after_whatsapp):
            (message,) = await h.messages(run.id)
            kinds.append(message.payload["type"])
        assert kinds == ["template", "template", "text"]


async def test_an_api_reply_that_says_it_came_by_sms_opens_no_window(tmp_path: Path) -> None:
    from tests.integration.openapi_conformance import checked_client

    settings = settings_with_flows(tmp_path, FLOW)
    async with harness(settings) as h, checked_client(h.engine) as client:
        auth = {"Authorization": "Bearer test-token-0123456789"}
        await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=auth)
        answer = await client.post(
            "/v1/events",
            json={"type": "reply", "contact": "c-1", "text": "ok", "channel": "sms"},
            headers=auth,
        )
        assert answer.status == 202
        contact = await h.engine.get_contact("c-1")
        assert contact.last_inbound_at is None
        assert contact.last_interaction_at == h.clock.now()


async def test_a_webhook_item_that_names_its_channel_is_taken_at_its_word(
    tmp_path: Path,
) -> None:
    # An in-house gateway (an `http` provider) carrying WhatsApp and SMS says which.
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        await h.start("aviso")
        item = {"id": "gw-1", "from": "5511999998888", "type": "reply", "text": "ok"}
        body = json.dumps({"inbound": [{**item, "channel": "sms"}]}).encode()
        outcome = await h.engine.ingest_webhook("sandbox", body, {})
        assert (outcome.accepted, outcome.errors) == (1, [])
        contact = await h.engine.get_contact("c-1")
        assert contact.last_inbound_at is None
        assert contact.last_interaction_at == h.clock.now()


def simulated_window(tmp_path: Path, event: dict[str, str]) -> tuple[int, str, list[str]]:
    """``disparo simulate`` of a reply, then a WhatsApp step an hour later."""
    from tests.integration.test_cli import CONFIG, disparo

    flow = tmp_path / "aviso.yaml"
    flow.write_text(FLOW.replace("start: aviso", "start: espera\n").replace(
        "steps:\n", "steps:\n  espera:\n    wait: 1h\n    next: aviso\n"
    ))  # fmt: skip
    contact = tmp_path / "contato.yaml"
    contact.write_text('id: c-1\nphone: "+5511999998888"\nname: Maria Souza\n')
    events = tmp_path / "eventos.jsonl"
    events.write_text(json.dumps({"at": "2026-11-23T10:30:00-03:00", **event}) + "\n")
    result = disparo(
        "simulate", str(flow), "--config", str(CONFIG), "--contact", str(contact),
        "--events", str(events), "--at", "2026-11-23T10:00:00-03:00", "--json",
    )  # fmt: skip
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    sent = [line["payload"]["content"]["type"] for line in lines if line["kind"] == "send"]
    return result.returncode, result.stderr, sent


def test_simulate_agrees_a_reply_by_sms_opens_no_window(tmp_path: Path) -> None:
    assert simulated_window(tmp_path, {"type": "reply", "text": "ok"})[2] == ["text"]
    by_sms = {"type": "reply", "text": "ok", "channel": "sms"}
    assert simulated_window(tmp_path, by_sms)[2] == ["template"]
    code, stderr, _ = simulated_window(tmp_path, {**by_sms, "channel": "telegram"})
    assert code == 1
    assert "channel" in stderr
    assert "whatsapp, sms or email" in stderr
