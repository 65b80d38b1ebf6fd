"""Inbound events by phone: the phone is read as E.164 before it is matched, so a
vendor that drops the ``+`` (or the ninth digit) still reaches the stored contact."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_api import AUTH, RUN


@pytest.mark.parametrize(
    "sent_as",
    [
        "5511999998888",
        "551199998888",
        "11999998888",
        # A gateway that passes the number on as the contact's phone shows it.
        "+55 11 99999-8888",
        "(11) 99999-8888",
        "+55 (11) 9999-8888",
        "55.11.99999.8888",
    ],
)
async def test_a_webhook_reply_from_a_phone_without_plus_reaches_the_stored_contact(
    api: Any, sent_as: str
) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.advance(timedelta(seconds=6))  # read: the run waits for an answer
    body = (
        '{"inbound": [{"from": "' + sent_as + '", "type": "button", "button_id": "pagar", '
        '"id": "wh-1"}]}'
    ).encode()

    response = await client.post("/webhooks/sandbox", data=body)
    await h.advance(timedelta(seconds=6))

    assert response.status == 200
    assert (await response.json())["accepted"] == 1
    run = await (await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)).json()
    assert run["status"] == "completed"
    assert await h.engine.store.get_contact(sent_as) is None  # no phantom contact
    assert await h.engine.store.get_contact("+5511999998888") is None


async def test_a_phone_no_contact_has_gets_a_contact_under_its_e164_form(api: Any) -> None:
    client, h = api
    body = b'{"inbound": [{"from": "5521987654321", "type": "reply", "text": "oi"}]}'

    response = await client.post("/webhooks/sandbox", data=body)

    assert response.status == 200
    contact = await h.engine.store.get_contact("+5521987654321")
    assert contact is not None
    assert contact.phone == "+5521987654321"
    assert contact.last_inbound_at is not None
