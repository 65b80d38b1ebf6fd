"""Robbu's `discardSettings.recentContactLastHours` repeats the flow's `recent_contact`
on Robbu's side, where it counts every message to the contact, the run's own too.
disparo's rule leaves a run's own follow-ups out, so the follow-up goes without
Robbu's guard: with it, Robbu would discard the SMS the flow sends when the contact
has not answered, for the run's own WhatsApp message of 2 h before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import MessageStatus, RunStatus
from engine.settings import Settings
from providers.robbu import RobbuConfig
from tests.fakes.robbu import FakeRobbu
from tests.integration.engine_kit import harness, settings_with_flows

PASSWORD = "s3nha-da-api-robbu"
PRIVATE_TOKEN = "af5addfsdf52-a5dfsc-44fdf6-80bc-eda1d2af8"
FLOW = """\
flow: aviso
defaults: {provider: robbu, rules: {window: ignore, recent_contact: 4h}}
start: aviso
steps:
  aviso:
    send: {text: "Seu boleto vence amanhã. Responda PAGO se já pagou."}
    on: {reply: fim, failed: sms}
    timeout: {after: 2h, goto: sms}
  sms:
    send: {channel: sms, text: "Seu boleto vence amanhã."}
    next: fim
  fim: {end: completed}
"""


@pytest.fixture
async def robbu() -> AsyncIterator[FakeRobbu]:
    async with FakeRobbu(password=PASSWORD, private_token=PRIVATE_TOKEN) as fake:
        yield fake


def robbu_settings(tmp_path: Path, robbu: FakeRobbu) -> Settings:
    config = RobbuConfig.model_validate(
        {
            "type": "robbu",
            "base_url": robbu.base_url,
            "company": "acme",
            "username": "api.disparo",
            "password": PASSWORD,
            "private_token": PRIVATE_TOKEN,
            "timeout": 2.0,
        }
    )
    return settings_with_flows(tmp_path, FLOW, providers={"robbu": config})


async def test_the_follow_up_of_a_run_goes_without_robbus_recent_contact_guard(
    tmp_path: Path, robbu: FakeRobbu
) -> None:
    settings = robbu_settings(tmp_path, robbu)
    async with harness(settings) as h:
        run = await h.start("aviso")
        await h.advance(timedelta(seconds=1))
        await h.advance(timedelta(hours=2, seconds=1))  # no answer: the SMS goes

        assert [(m.step, m.status) for m in await h.messages(run.id)] == [
            ("aviso", MessageStatus.SENT),
            ("sms", MessageStatus.SENT),
        ]
        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        first, follow_up = robbu.received
        assert first["channel"] == 3
        assert first["discardSettings"]["recentContactLastHours"] == 4
        assert follow_up["channel"] == 2
        assert follow_up["discardSettings"]["recentContactLastHours"] == 0


async def test_a_second_run_keeps_robbus_recent_contact_guard(
    tmp_path: Path, robbu: FakeRobbu
) -> None:
    """The guard goes only for the run's own follow-ups: the first message of any run
    carries it, as Robbu also sees messages disparo never sent."""
    settings = robbu_settings(tmp_path, robbu)
    async with harness(settings) as h:
        await h.start("aviso", key="primeiro")
        await h.advance(timedelta(hours=7))  # the SMS left 5 h ago
        await h.start("aviso", key="segundo")
        await h.advance(timedelta(seconds=1))
        hours = [body["discardSettings"]["recentContactLastHours"] for body in robbu.received]
        assert hours == [4, 0, 4]
