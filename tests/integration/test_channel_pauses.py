"""Vendor errors about a whole channel or account, end to end: a flow sending through
the Interflow adapter to the fake Interflow, on a virtual clock. They pause the
provider (its circuit) instead of failing the backlog one message after another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import MessageStatus
from providers.interflow import InterflowConfig
from tests.fakes.interflow import API_KEY, CHANNEL_ID, FakeInterflow
from tests.integration.engine_kit import START, Harness, harness
from tests.integration.test_provider_faults import settings_with


class Now:
    """The engine's virtual time, for the fake's rate-limit headers."""

    harness: Harness | None = None

    def __call__(self) -> float:
        return (self.harness.clock.now() if self.harness else START).timestamp()


@pytest.fixture
def now() -> Now:
    return Now()


@pytest.fixture
async def interflow(now: Now) -> AsyncIterator[FakeInterflow]:
    async with FakeInterflow(monotonic=now, wall_clock=now) as fake:
        yield fake


def make_settings(tmp_path: Path, fake: FakeInterflow) -> Any:
    config = InterflowConfig.model_validate(
        {
            "type": "interflow",
            "base_url": fake.base_url,
            "api_key": API_KEY,
            "channel_id": CHANNEL_ID,
            "rate_limit": "300/min",
            "webhook_secret": "hook-secret-123",
            "timeout": 2.0,
        }
    )
    return settings_with(tmp_path, "interflow", config)


async def statuses(h: Harness, runs: list[Any]) -> list[MessageStatus]:
    found = []
    for run in runs:
        (message,) = await h.messages(run.id)
        found.append(message.status)
    return found


async def start_six(h: Harness) -> list[Any]:
    return [
        await h.start("aviso", contact=f"c-{i}", phone=f"+55119999900{i:02d}") for i in range(6)
    ]


async def test_a_channel_disconnected_for_a_while_sends_its_backlog_once_it_reconnects(
    tmp_path: Path, interflow: FakeInterflow, now: Now
) -> None:
    """The WhatsApp number drops off: Interflow answers 422 CHANNEL_DISCONNECTED to
    every send. Three of those open the circuit, the other messages wait unattempted,
    one probe per cooldown; once the number is back, every message goes, none failed."""
    interflow.channels[CHANNEL_ID] = "disconnected"
    async with harness(make_settings(tmp_path, interflow)) as h:
        now.harness = h
        runs = await start_six(h)
        assert interflow.stats()["answers"] == {"422": 3}
        assert await statuses(h, runs) == [MessageStatus.QUEUED] * 6
        metrics = h.engine.metrics.render().decode()
        assert 'disparo_provider_circuit_open{provider="interflow"} 1.0' in metrics

        await h.advance(timedelta(seconds=90))  # half-open after 60 s: one probe, refused
        assert interflow.stats()["answers"] == {"422": 4}
        assert await statuses(h, runs) == [MessageStatus.QUEUED] * 6

        interflow.channels[CHANNEL_ID] = "connected"  # the number is back
        await h.advance(timedelta(minutes=10))

        assert await statuses(h, runs) == [MessageStatus.SENT] * 6
        assert sorted(body["to"] for body in interflow.accepted) == [
            f"55119999900{i:02d}" for i in range(6)
        ]
        for run in runs:  # none took its `failed` path: each waits at `aviso` for statuses
            assert (await h.run(run.id)).step == "aviso"
        metrics = h.engine.metrics.render().decode()
        assert 'disparo_provider_circuit_open{provider="interflow"} 0.0' in metrics


async def test_an_unknown_channel_pauses_the_provider_and_says_which_setting_to_fix(
    tmp_path: Path, interflow: FakeInterflow, now: Now, caplog: pytest.LogCaptureFixture
) -> None:
    """404 CHANNEL_NOT_FOUND (the channel is not set up on Interflow yet): an error
    naming providers.interflow.channel_id, the backlog paused, not failed; once the
    channel exists, the backlog goes."""
    del interflow.channels[CHANNEL_ID]
    async with harness(make_settings(tmp_path, interflow)) as h:
        now.harness = h
        runs = await start_six(h)
        assert interflow.stats()["answers"] == {"404": 3}
        assert await statuses(h, runs) == [MessageStatus.QUEUED] * 6
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert errors, "an operator must hear about a wrong channel_id"
        assert "check providers.interflow.channel_id in the config" in errors[0]

        interflow.channels[CHANNEL_ID] = "connected"  # the channel is set up
        await h.advance(timedelta(minutes=10))

        assert await statuses(h, runs) == [MessageStatus.SENT] * 6
        assert len(interflow.accepted) == 6
