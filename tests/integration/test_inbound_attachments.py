"""A contact answers with a photo (the boleto's receipt), a voice note or a map pin
instead of words. On WhatsApp that is a message like any other: it answers the run
waiting for a reply and opens the 24 h window. Gateways pass it on as a ``reply``
with an ``attachment`` and no ``text``."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_api import AUTH, RUN

PHOTO = {"type": "image", "url": "https://cdn.example/comprovante.jpg", "mime_type": "image/jpeg"}
PIN = {"type": "location", "latitude": -23.5422, "longitude": -46.6581, "name": "Loja Centro"}


@pytest.mark.parametrize("attachment", [PHOTO, PIN, {**PHOTO, "caption": "paguei"}])
async def test_a_webhook_reply_with_an_attachment_answers_the_run(
    api: Any, attachment: dict[str, Any]
) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.advance(timedelta(seconds=6))  # read: the run waits for an answer
    item = {"id": "wa-1", "from": "5511999998888", "type": "reply", "attachment": attachment}

    response = await client.post("/webhooks/sandbox", data=json.dumps({"inbound": [item]}))
    await h.advance(timedelta(seconds=6))

    assert response.status == 200
    assert (await response.json())["accepted"] == 1
    run = await (await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)).json()
    assert [m["step"] for m in run["messages"]] == ["lembrete", "transferir"]
    contact = await h.engine.get_contact("c-1")
    assert contact.last_inbound_at is not None  # a WhatsApp message: the window opens


async def test_an_api_reply_with_an_attachment_answers_the_run(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.advance(timedelta(seconds=6))
    event = {"type": "reply", "contact": "c-1", "attachment": PHOTO, "id": "api-1"}

    response = await client.post("/v1/events", json=event, headers=AUTH)
    await h.advance(timedelta(seconds=6))

    assert response.status == 202, await response.text()
    run = await (await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)).json()
    assert [m["step"] for m in run["messages"]] == ["lembrete", "transferir"]
    export = await (await client.get("/v1/contacts/c-1/export", headers=AUTH)).json()
    (stored,) = [e for e in export["events"] if e["kind"] == "inbound.reply"]
    assert stored["data"]["attachment"]["url"] == PHOTO["url"]


@pytest.mark.parametrize(
    ("event", "field", "said"),
    [
        ({"type": "reply", "contact": "c-1"}, "text", "'attachment'"),
        (
            {"type": "reply", "contact": "c-1", "attachment": {"type": "gif"}},
            "attachment.type",
            "image",
        ),
        (
            {"type": "reply", "contact": "c-1", "attachment": {"type": "location"}},
            "attachment",
            "latitude",
        ),
        (
            {"type": "button", "contact": "c-1", "button_id": "pagar", "attachment": PHOTO},
            "attachment",
            "only to reply",
        ),
    ],
)
async def test_a_reply_without_text_or_a_usable_attachment_is_refused(
    api: Any, event: dict[str, Any], field: str, said: str
) -> None:
    client, _ = api
    await client.post("/v1/runs", json=RUN, headers=AUTH)

    response = await client.post("/v1/events", json=event, headers=AUTH)

    assert response.status == 400
    details = (await response.json())["error"]["details"]
    assert any(d["field"] == field and said in d["message"] for d in details), details
