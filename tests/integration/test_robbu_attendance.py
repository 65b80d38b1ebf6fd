"""An operator attends the contact in Invenio, which disparo does not know: Robbu
discards the guarded send ("message not sent: contact in attendance"). The flow's
`in_attendance` rule decides what follows, as if disparo had seen the attendance:
`defer` tries again later, `skip` takes the step's `skipped` route. Neither is a
failure, so no `failed: sms` fallback reaches a contact an agent is talking to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import MessageStatus, Run, RunStatus
from providers.robbu import RobbuConfig
from tests.fakes.robbu import FakeRobbu
from tests.integration.engine_kit import Harness, harness, settings_with_flows

PASSWORD = "s3nha-da-api-robbu"
PRIVATE_TOKEN = "af5addfsdf52-a5dfsc-44fdf6-80bc-eda1d2af8"
ATTENDED = (55, 11999998888)  # the harness contact's number, as Robbu's destination
FLOW = """\
flow: aviso
defaults: {{provider: robbu_whatsapp, rules: {{window: ignore, in_attendance: {rule}}}}}
start: aviso
steps:
  aviso:
    send: {{text: "Olá {{{{ contact.first_name }}}}, seu pedido saiu para entrega."}}
    on: {{sent: fim, failed: sms, skipped: fim}}
  sms:
    send: {{channel: sms, provider: sandbox_sms, text: "Seu pedido saiu para entrega."}}
    next: fim
  fim: {{end: completed}}
"""


@pytest.fixture
async def robbu() -> AsyncIterator[FakeRobbu]:
    async with FakeRobbu(password=PASSWORD, private_token=PRIVATE_TOKEN) as fake:
        yield fake


@asynccontextmanager
async def held_back(
    tmp_path: Path, fake: FakeRobbu, rule: str
) -> AsyncIterator[tuple[Harness, Run]]:
    """The contact is attended in Invenio only; a run of `aviso` under ``rule`` has
    just tried to send, and Robbu held the message back."""
    fake.attended.add(ATTENDED)
    config = RobbuConfig.model_validate(
        {
            "type": "robbu",
            "base_url": fake.base_url,
            "company": "acme",
            "username": "api.disparo",
            "password": PASSWORD,
            "private_token": PRIVATE_TOKEN,
            "channel": "whatsapp",
            "timeout": 2.0,
        }
    )
    settings = settings_with_flows(
        tmp_path, FLOW.format(rule=rule), providers={"robbu_whatsapp": config}
    )
    async with harness(settings) as h:
        run = await h.start("aviso")
        await h.advance(timedelta(seconds=1))
        yield h, run


async def attendance_decisions(h: Harness, run_id: str) -> list[tuple[str, str]]:
    return [
        (d["outcome"], d["reason"])
        for d in await h.decisions(run_id)
        if d["rule"] == "in_attendance" and d["outcome"] != "pass"
    ]


async def test_defer_waits_out_an_attendance_only_robbu_knows_of(
    tmp_path: Path, robbu: FakeRobbu
) -> None:
    async with held_back(tmp_path, robbu, "defer") as (h, run):
        (message,) = await h.messages(run.id)
        assert message.status == MessageStatus.QUEUED
        assert (await h.run(run.id)).status == RunStatus.WAITING
        assert await attendance_decisions(h, run.id) == [("defer", "provider_discarded")]

        robbu.attended.clear()  # the operator closes the attendance
        await h.advance(timedelta(minutes=16))

        (message,) = await h.messages(run.id)
        assert message.status == MessageStatus.SENT
        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        assert len(robbu.received) == 1  # one send went through, after the attendance


async def test_skip_takes_the_skipped_route_not_the_sms_fallback(
    tmp_path: Path, robbu: FakeRobbu
) -> None:
    async with held_back(tmp_path, robbu, "skip") as (h, run):
        assert [(m.step, m.status) for m in await h.messages(run.id)] == [
            ("aviso", MessageStatus.SKIPPED)
        ]
        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        assert await attendance_decisions(h, run.id) == [("skip", "provider_discarded")]
