"""What a webhook could not take is said in the log: a vendor whose every status
report is refused (a field renamed on its side) otherwise leaves runs waiting with
nothing in the log, and the 200 it got stops its retries."""

from __future__ import annotations

import logging
from typing import Any

import pytest

BAD_STATUS = (
    b'{"statuses": [{"key": "k-1", "status": "entregue"}],'
    b' "inbound": [{"id": "i-1", "from": "+5511999998888", "type": "interaction"}]}'
)


async def test_rejected_webhook_items_and_bodies_are_warned_about_once_a_minute(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api
    caplog.set_level(logging.INFO, logger="disparo.api")
    for _ in range(3):
        answer = await client.post("/webhooks/sandbox", data=BAD_STATUS)
        assert answer.status == 200
        assert len((await answer.json())["rejected"]) == 1
    refused = await client.post("/webhooks/sandbox", data=b"not json")
    assert refused.status == 400

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one a minute per provider, not one a request
    assert warnings[0].startswith("webhook sandbox: 1 item refused (the others, if any, kept)")
    assert "statuses[0]: status: " in warnings[0]

    h.clock.advance(61)
    await client.post("/webhooks/sandbox", data=b"not json")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[1].startswith("webhook sandbox: the whole body refused")
    assert "(3 more refusals since the last warning)" in warnings[1]
    assert "not UTF-8 JSON" in warnings[1]
