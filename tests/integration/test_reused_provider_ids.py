"""A provider that answers two messages with one id (a gateway whose counter was
reset, an ``id_field`` pointing at a field every answer shares): the second
message went out, so it is recorded ``sent``, without the id another message
holds, and never sent again."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import MessageStatus
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import harness
from tests.integration.test_provider_faults import AUTH, make_settings, only_message


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


async def test_a_provider_id_another_message_holds_is_logged_and_not_resent(
    tmp_path: Path,
    gateway: FakeGateway,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(gateway, "_deliver", lambda key, header_key: "gw-same")
    caplog.set_level(logging.INFO, logger="disparo")
    async with harness(make_settings(tmp_path, gateway)) as h:
        first = await h.start("aviso", "c-1", phone="+5511999998801")
        second = await h.start("aviso", "c-2", phone="+5511999998802")
        await h.advance(timedelta(minutes=30))

        held = await only_message(h, first.id)
        other = await only_message(h, second.id)
        assert held.status == MessageStatus.SENT
        assert held.provider_message_id == "gw-same"
        assert other.status == MessageStatus.SENT
        assert other.provider_message_id is None
        assert gateway.stats()["requests"] == 2  # neither was sent again
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    for named in (other.id, held.id, "gw-same", "providers.gateway.id_field"):
        assert named in errors[0]
