"""What a webhook could not take is said in the log: a vendor whose every status
report is refused (a field renamed on its side) otherwise leaves runs waiting with
nothing in the log, and the 200 it got stops its retries."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine.api import build_app
from tests.integration.engine_kit import harness, settings_for

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


async def test_a_webhook_with_a_wrong_token_is_warned_about_without_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(
        tmp_path, provider_changes={"sandbox": {"webhook_secret": "s3cr3t-hook"}}
    )
    caplog.set_level(logging.INFO, logger="disparo.api")
    async with harness(settings) as h:
        client = TestClient(TestServer(build_app(h.engine)))
        await client.start_server()
        try:
            answers = [await client.post("/webhooks/sandbox?token=old-t0ken", data=BAD_STATUS)]
            answers.append(await client.post("/webhooks/sandbox", data=BAD_STATUS))
            answers.append(
                await client.post("/webhooks/sandbox?token=s3cr3t-hook", data=BAD_STATUS)
            )
            h.clock.advance(61)
            answers.append(await client.post("/webhooks/sandbox", data=BAD_STATUS))
        finally:
            await client.close()

    assert [a.status for a in answers] == [404, 404, 200, 404]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    token_lines = [w for w in warnings if "?token=" in w]
    assert len(token_lines) == 2, warnings  # once a minute, apart from the item refusal
    assert token_lines[0].startswith("webhook sandbox: a request with a wrong ?token= refused")
    assert "providers.sandbox.webhook_secret" in token_lines[0]
    assert token_lines[1].startswith(
        "webhook sandbox: a request with no ?token= refused (404) (1 more refusal since"
    )
    assert any("1 item refused" in w for w in warnings)  # the valid one's item, said too
    assert not any("old-t0ken" in w or "s3cr3t-hook" in w for w in warnings)


async def test_a_webhook_for_an_unknown_provider_is_warned_about_once_a_minute_for_all(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api
    caplog.set_level(logging.INFO, logger="disparo.api")
    answers = [await client.post("/webhooks/sandbax", data=BAD_STATUS)]
    answers.append(await client.post("/webhooks/other%0Aname", data=BAD_STATUS))
    h.clock.advance(61)
    answers.append(await client.post("/webhooks/robbu", data=BAD_STATUS))

    assert [a.status for a in answers] == [404, 404, 404]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one key for every name an outsider makes up
    assert warnings[0].startswith(
        "webhook 'sandbax': no provider of that name is configured; a request refused (404)"
    )
    assert warnings[0].endswith("the configured ones: sandbox, sandbox_sms")
    assert warnings[1].startswith("webhook 'robbu': no provider of that name")
    assert "(1 more refusal since the last warning)" in warnings[1]
    assert not any("\n" in w for w in warnings)  # a name's line break stays escaped
