"""An operator resends an ambiguous message over the API: once, with its key, and
only while its run still waits for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from engine.models import MessageStatus
from tests.fakes.gateway import FakeGateway, Fault
from tests.integration.engine_kit import Harness, harness
from tests.integration.openapi_conformance import checked_client
from tests.integration.test_api import AUTH as API_AUTH
from tests.integration.test_api import error_of
from tests.integration.test_provider_faults import AUTH, FLOW, make_settings, only_message


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


@asynccontextmanager
async def lost_answer(
    tmp_path: Path, gateway: FakeGateway, rules: str = "{window: ignore}"
) -> AsyncIterator[tuple[TestClient[Any, Any], Harness, Any]]:
    """A keyless provider lost the answer to the only request: the message is
    ambiguous and its run waits at the step for a report."""
    settings = make_settings(tmp_path, gateway, idempotency_header=None)
    sent_ends = FLOW.replace("on: {failed: fim}", "on: {sent: fim, failed: fim}")
    sent_ends = sent_ends.replace("rules: {window: ignore}", f"rules: {rules}")
    (Path(settings.flows) / "aviso.yaml").write_text(sent_ends)  # `sent` ends the run
    gateway.fail_next(Fault.disconnect())
    async with harness(settings) as h:
        run = await h.start("aviso")
        await h.advance(timedelta(minutes=5))
        assert (await only_message(h, run.id)).status == MessageStatus.AMBIGUOUS
        async with checked_client(h.engine) as client:
            yield client, h, run


@pytest.fixture
async def ambiguous(
    tmp_path: Path, gateway: FakeGateway
) -> AsyncIterator[tuple[TestClient[Any, Any], Harness, Any]]:
    async with lost_answer(tmp_path, gateway) as found:
        yield found


async def test_an_ambiguous_message_is_sent_again_once_at_an_operator_s_request(
    ambiguous: Any, gateway: FakeGateway
) -> None:
    client, h, run = ambiguous
    message = await only_message(h, run.id)
    listed = await (await client.get("/v1/messages?status=ambiguous", headers=API_AUTH)).json()
    assert [m["id"] for m in listed["messages"]] == [message.id]  # what to settle

    answer = await client.post(f"/v1/messages/{message.id}/resend", headers=API_AUTH)
    await h.advance(timedelta(seconds=5))
    again = await client.post(f"/v1/messages/{message.id}/resend", headers=API_AUTH)

    assert answer.status == 200
    assert (await answer.json())["status"] == "queued"
    sent = await only_message(h, run.id)
    assert sent.status == MessageStatus.SENT
    assert sent.idempotency_key == message.idempotency_key
    assert gateway.stats()["requests"] == 2  # the lost one, and this one
    assert (await h.run(run.id)).status.value == "completed"
    assert "message.resend" in await h.kinds(run.id)
    # Sent now: nothing left to resend.
    assert again.status == 409
    assert "only an ambiguous message is resent" in (await error_of(again))["message"]
    after = await (await client.get("/v1/messages?status=ambiguous", headers=API_AUTH)).json()
    assert after["messages"] == []


async def test_only_ambiguous_messages_are_listed_and_the_limit_is_checked(
    ambiguous: Any,
) -> None:
    client, _, _ = ambiguous

    sent = await client.get("/v1/messages?status=sent", headers=API_AUTH)
    huge = await client.get("/v1/messages?status=ambiguous&limit=5000", headers=API_AUTH)

    assert sent.status == huge.status == 400
    assert [d["field"] for d in (await error_of(sent))["details"]] == ["status"]
    assert (await error_of(huge))["details"] == [
        {"field": "limit", "message": "a whole number from 1 to 1000"}
    ]


async def test_a_message_whose_run_finished_is_not_resent(
    ambiguous: Any, gateway: FakeGateway
) -> None:
    client, h, run = ambiguous
    message = await only_message(h, run.id)
    await client.post(f"/v1/runs/{run.id}/cancel", headers=API_AUTH)

    answer = await client.post(f"/v1/messages/{message.id}/resend", headers=API_AUTH)
    unknown = await client.post("/v1/messages/nope/resend", headers=API_AUTH)

    assert answer.status == 409
    assert "has finished since step 'aviso'" in (await error_of(answer))["message"]
    assert (await only_message(h, run.id)).status == MessageStatus.AMBIGUOUS
    assert gateway.stats()["requests"] == 1
    assert unknown.status == 404


async def test_a_message_past_its_valid_for_is_not_resent(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    async with lost_answer(tmp_path, gateway, "{window: ignore, valid_for: 1h}") as found:
        client, h, run = found
        message = await only_message(h, run.id)
        await h.advance(timedelta(minutes=50))
        in_time = await client.post(f"/v1/messages/{message.id}/resend", headers=API_AUTH)
        gateway.fail_next(Fault.disconnect())  # lost again: ambiguous again
        await h.advance(timedelta(minutes=20))
        late = await client.post(f"/v1/messages/{message.id}/resend", headers=API_AUTH)
        error = (await error_of(late))["message"]
        after = await only_message(h, run.id)

    assert in_time.status == 200
    assert late.status == 409
    assert "expired at" in error
    assert "valid_for 1h" in error
    assert "Settle it with a status event" in error
    assert after.status == MessageStatus.AMBIGUOUS
    assert gateway.stats()["requests"] == 2  # the first, the resend in time; not a third
