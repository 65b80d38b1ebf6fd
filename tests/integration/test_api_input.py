"""What the HTTP API does with input at the edges: dates outside UTC's range,
batches with a bad item, numbers and nesting JSON allows but disparo cannot keep,
query strings, and errors nobody planned for."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.integration.test_api import AUTH, error_of

EDGE = "0001-01-01T00:00:00+14:00"  # year 0 in UTC: no datetime holds it


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "reply", "contact": "c-1", "text": "oi", "at": EDGE}, "at"),
        ({"type": "attendance_started", "contact": "c-1", "until": EDGE}, "until"),
    ],
)
async def test_a_date_outside_utc_s_range_is_a_400_naming_the_field(
    api: Any, event: dict[str, Any], field: str
) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)

    response = await client.post("/v1/events", json=event, headers=AUTH)

    assert response.status == 400
    [detail] = (await error_of(response))["details"]
    assert detail["field"] == field
    assert "outside the dates disparo can keep" in detail["message"]
    assert await h.engine.store.list_events(kind_prefix="contact.", limit=10) == []


async def test_a_webhook_item_dated_outside_utc_s_range_is_rejected_and_the_rest_applied(
    api: Any,
) -> None:
    client, h = api
    body = (
        b'{"inbound": ['
        b'{"from": "+5511999998888", "type": "reply", "text": "x", "at": "' + EDGE.encode() + b'"},'
        b'{"from": "+5511999998888", "type": "reply", "text": "oi", "id": "good"}]}'
    )

    response = await client.post("/webhooks/sandbox", data=body)

    assert response.status == 200
    answer = await response.json()
    assert answer["accepted"] == 1
    [rejected] = answer["rejected"]
    assert rejected.startswith("inbound[0]: at: ")
    assert "outside the dates disparo can keep" in rejected
    contact = await h.engine.store.find_contact_by_phone("+5511999998888")
    assert contact is not None
    assert contact.last_inbound_at is not None


async def test_an_unexpected_error_is_a_json_500_without_its_words_and_is_logged(
    api: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api

    async def broken(run_id: str) -> Any:
        raise RuntimeError("password=hunter2 leaked by a bug")

    monkeypatch.setattr(h.engine, "get_run", broken)
    with caplog.at_level(logging.ERROR, logger="disparo.api"):
        response = await client.get("/v1/runs/r-1", headers=AUTH)

    assert response.status == 500
    assert response.content_type == "application/json"
    text = await response.text()
    assert "hunter2" not in text
    assert "Traceback" not in text
    assert (await error_of(response))["code"] == "INTERNAL"
    [record] = [r for r in caplog.records if r.name == "disparo.api"]
    assert "unexpected error answering GET /v1/runs/r-1" in record.getMessage()
    assert record.exc_info is not None
