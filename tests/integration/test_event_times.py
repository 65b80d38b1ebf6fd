"""Inbound facts are never dated later than they arrived: the API refuses a time
from the future, a provider's is clamped to its arrival (engine.event_times)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from engine.models import MessageStatus
from providers.generic_webhook import status_body
from tests.integration.test_api import AUTH, RUN, error_of


def _iso(when: Any) -> str:
    return when.isoformat().replace("+00:00", "Z")


async def test_an_event_dated_hours_ahead_is_refused_naming_at_and_nothing_is_stored(
    api: Any,
) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)
    now = h.clock.now()
    # 13:00Z sent as 13:00-03:00 (a UTC time with the local offset): 3 h ahead.
    utc_with_offset = now.strftime("%Y-%m-%dT%H:%M:%S-03:00")
    fine = {"type": "reply", "contact": "c-1", "text": "oi", "at": _iso(now)}
    ahead = {"type": "reply", "contact": "c-1", "text": "oi de novo", "at": utc_with_offset}

    single = await client.post("/v1/events", json=ahead, headers=AUTH)
    batch = await client.post("/v1/events", json=[fine, ahead], headers=AUTH)

    assert single.status == batch.status == 400
    [detail] = (await error_of(single))["details"]
    assert detail["field"] == "at"
    assert detail["message"].startswith(f"{utc_with_offset} is 3 h 00 min ahead of now")
    assert "in UTC (…Z) or with its offset (…-03:00)" in detail["message"]
    assert [d["field"] for d in (await error_of(batch))["details"]] == ["[1].at"]
    contact = await (await client.get("/v1/contacts/c-1", headers=AUTH)).json()
    assert contact["last_inbound_at"] is None  # the good event of the batch is not stored


async def test_a_clock_a_few_minutes_ahead_is_kept_as_given(api: Any) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)
    skewed = h.clock.now() + timedelta(minutes=2)
    reply = {"type": "reply", "contact": "c-1", "text": "oi", "at": _iso(skewed)}

    answer = await client.post("/v1/events", json=reply, headers=AUTH)

    assert answer.status == 202
    contact = await (await client.get("/v1/contacts/c-1", headers=AUTH)).json()
    assert contact["last_inbound_at"] == skewed.isoformat()


async def test_a_provider_time_from_the_future_is_clamped_to_its_arrival_with_one_warning(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    (message,) = await h.messages(created["run_id"])
    now = h.clock.now()
    ahead = now + timedelta(hours=3)
    replies = [
        {
            "id": f"in-{n}",
            "from": "+5511999998888",
            "type": "reply",
            "text": "oi",
            "at": _iso(ahead),
        }
        for n in (1, 2)
    ]
    report = status_body(
        provider_message_id=message.provider_message_id,
        idempotency_key=None,
        status=MessageStatus.DELIVERED,
        at=ahead,
    )

    answers = [
        await client.post(
            "/webhooks/sandbox",
            data=json.dumps({"inbound": [{**reply, "at": _iso(ahead)}]}).encode(),
        )
        for reply in replies
    ]
    answers.append(await client.post("/webhooks/sandbox", data=report))

    assert [a.status for a in answers] == [200, 200, 200]
    contact = await (await client.get("/v1/contacts/c-1", headers=AUTH)).json()
    assert contact["last_inbound_at"] == now.isoformat()  # the window ends when it should
    delivered = await h.engine.store.get_message(message.id)
    assert delivered is not None
    assert delivered.status_at[MessageStatus.DELIVERED] == now
    metrics = await (await client.get("/metrics")).text()
    assert 'disparo_inbound_times_clamped_total{source="sandbox"} 3.0' in metrics
    # One warning for the source, not one per webhook.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"a reply from sandbox is dated 3 h 00 min ahead of now ({ahead.isoformat()}); "
        "using the time it arrived. Check the sender's clock and time zone: a UTC time "
        "sent with a local offset (13:00-03:00 for 13:00Z) looks like this",
    ]
