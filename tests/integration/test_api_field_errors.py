"""What a first-time integrator reads when a request has the wrong shape: each
error names the field and what to write there, in the API's words (never a
Python class or a regular expression), and nothing the request carried is
silently dropped."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_api import AUTH, error_of

PHONE = "+5511955554444"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/v1/runs", [], ""),
        ("post", "/v1/runs", {"flow": "cobranca_boleto", "contact": "c-1"}, "contact"),
        ("put", "/v1/contacts/c-1", "c-1", ""),
        ("post", "/v1/events", [1], "[0]"),
    ],
)
async def test_a_value_that_should_be_an_object_is_named_without_python_class_names(
    api: Any, method: str, path: str, body: Any, field: str
) -> None:
    client, _ = api

    response = await getattr(client, method)(path, json=body, headers=AUTH)

    assert response.status == 400
    [detail] = (await error_of(response))["details"]
    assert detail["field"] == field
    assert "instance of" not in detail["message"]
    assert "In" not in detail["message"].split()  # RunIn, ContactIn, EventIn
    assert "JSON object" in detail["message"]


async def test_an_email_that_is_not_one_is_refused_with_an_example_not_a_regex(api: Any) -> None:
    client, h = api

    response = await client.put("/v1/contacts/c-1", json={"email": "maria.com"}, headers=AUTH)

    assert response.status == 400
    [detail] = (await error_of(response))["details"]
    assert detail["field"] == "email"
    assert "pattern" not in detail["message"]
    assert "'maria.com' is not an e-mail address" in detail["message"]
    assert await h.engine.store.get_contact("c-1") is None


async def test_a_wrong_phone_is_refused_without_the_answer_quoting_it_whole(api: Any) -> None:
    # A wrong number is often a customer's real one mistyped; 400 answers end up in
    # the caller's logs and monitoring, so they quote it masked, as the logs do.
    client, h = api

    response = await client.put(
        "/v1/contacts/c-1", json={"phone": "+55 11 98765-43210999"}, headers=AUTH
    )

    assert response.status == 400
    [detail] = (await error_of(response))["details"]
    assert detail["field"] == "phone"
    assert "'+55 ** *****-****0999' is not a" in detail["message"]
    assert "98765" not in await response.text()
    assert await h.engine.store.get_contact("c-1") is None


@pytest.mark.parametrize("field", ["name", "email", "context", "tags", "timezone"])
async def test_an_event_s_contact_with_more_than_its_id_or_phone_is_refused_not_dropped(
    api: Any, field: str
) -> None:
    # The engine names an event's contact by id or phone and used to drop the rest
    # without a word: the integrator believed the name or context was stored.
    client, h = api
    values = {
        "name": "Maria",
        "email": "maria@example.com",
        "context": {"valor": 1670},
        "tags": ["vip"],
        "timezone": "America/Recife",
    }
    event = {"type": "reply", "contact": {"phone": PHONE, field: values[field]}, "text": "oi"}

    response = await client.post("/v1/events", json=[event], headers=AUTH)

    assert response.status == 400
    [detail] = (await error_of(response))["details"]
    assert detail["field"] == f"[0].contact.{field}"
    assert "PUT /v1/contacts/{id}" in detail["message"]
    assert await h.engine.store.find_contact_by_phone(PHONE) is None


async def test_an_event_s_contact_by_phone_alone_is_still_taken(api: Any) -> None:
    client, h = api
    event = {"type": "reply", "contact": {"phone": PHONE}, "text": "oi"}

    response = await client.post("/v1/events", json=event, headers=AUTH)

    assert response.status == 202
    assert await h.engine.store.find_contact_by_phone(PHONE) is not None


async def test_a_second_run_of_a_one_at_a_time_flow_names_the_open_run_to_cancel(
    api: Any,
) -> None:
    # The integrator got "already has an open run" and had to list the contact's runs
    # to find which one, and how to get it out of the way.
    from tests.integration.test_api import RUN

    client, _ = api
    first = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    again = {**RUN, "idempotency_key": "boleto-c-1-2026-12"}

    response = await client.post("/v1/runs", json=again, headers=AUTH)

    assert response.status == 409
    message = (await error_of(response))["message"]
    assert f"already has an open run ({first['run_id']}) of flow 'cobranca_boleto'" in message
    assert f"POST /v1/runs/{first['run_id']}/cancel" in message
    assert "concurrency: many" in message


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            {"from": "55 11 9-", "type": "reply", "text": "oi"},
            "inbound[1]: from: not a phone number: 6 to 15 digits with or without a "
            "leading +, e.g. 5511999998888",
        ),
        (
            {"from": "5511999998888", "type": "reply", "text": "oi", "txt": "x"},
            "inbound[1]: txt: unknown field; remove it or check its spelling",
        ),
        (
            {"from": "5511999998888", "type": "reply", "attachment": "foto.jpg"},
            "inbound[1]: attachment: must be a JSON object ({...}) with its 'type'",
        ),
    ],
)
async def test_a_webhook_item_refused_says_what_to_send_not_a_regex(
    api: Any, item: dict[str, Any], expected: str
) -> None:
    client, _ = api
    good = {"from": "5511999998888", "type": "reply", "text": "sim"}

    response = await client.post("/webhooks/sandbox", json={"inbound": [good, item]})

    assert response.status == 200
    assert (await response.json())["rejected"] == [expected]
