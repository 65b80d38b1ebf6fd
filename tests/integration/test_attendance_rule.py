"""`in_attendance: defer` in a running engine: a send held while a live agent attends
the contact goes out soon after the attendance ends, however long it was meant to
last."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from engine.models import MessageStatus
from tests.integration.engine_kit import harness, settings_with_flows

FLOW = """\
flow: lembrete
defaults:
  provider: sandbox
  rules:
    in_attendance: defer
start: lembrete
steps:
  lembrete:
    send: {text: "Oi {{ contact.first_name }}, seu boleto vence amanhã."}
    on:
      sent: fim
  fim: {end: completed}
"""

LEFT = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)


async def test_a_send_held_for_an_attendance_goes_soon_after_the_agent_ends_it(
    tmp_path: Path,
) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        await h.start("lembrete")  # the contact exists, its window opens below
        await h.event("reply", text="oi")
        # The attendance system says the agent has the contact for up to 2 days.
        await h.event(
            "attendance_started", attendant="Ana", until=h.clock.now() + timedelta(days=2)
        )
        run = await h.start("lembrete", key="second")
        (held,) = await h.messages(run.id)
        assert held.status == MessageStatus.QUEUED

        await h.advance(timedelta(minutes=10))
        await h.event("attendance_ended")  # the agent solved it in 10 minutes
        ended = h.clock.now()
        await h.advance(timedelta(minutes=20))

        (message,) = await h.messages(run.id)
        assert message.status in LEFT
        assert message.status_at["sending"] - ended <= timedelta(minutes=15)


async def test_a_webhook_attendance_that_ends_before_it_starts_is_refused_and_named(
    tmp_path: Path,
) -> None:
    # As POST /v1/events answers 400 for it: stored, it would be an attendance that
    # is never on, and the bot would talk over the agent.
    async with harness(settings_with_flows(tmp_path, FLOW)) as h:
        await h.start("lembrete")
        start = "2026-11-23T10:00:00-03:00"
        items = [
            {"id": "a-1", "from": "5511999998888", "type": "attendance_started",
             "attendant": "Ana", "at": start, "until": "2026-11-23T09:00:00-03:00"},
            {"id": "r-1", "from": "5511999998888", "type": "reply", "text": "oi"},
        ]  # fmt: skip
        outcome = await h.engine.ingest_webhook(
            "sandbox", json.dumps({"inbound": items}).encode(), {}
        )

        assert outcome.accepted == 1
        (error,) = outcome.errors
        assert error.startswith("inbound[0]: until: ")
        assert "is not after" in error
        assert (await h.engine.get_contact("c-1")).attendance is None
