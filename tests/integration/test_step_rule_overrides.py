"""A step's `rules:` over the flow's `defaults.rules`: a value replaces the default,
and `null` turns the default off for that step (an urgent alert that may go at
night, a reply that must not wait for the daily cap)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.models import MessageStatus
from tests.integration.engine_kit import harness, settings_with_flows

FLOW = """\
flow: alerta
defaults:
  provider: sandbox
  rules:
    quiet_hours: "20:00-08:00"
    max_per_day: 1
concurrency: many
start: alerta
steps:
  alerta:
    send: {text: "Alerta de segurança: houve um acesso novo à sua conta."}
    rules:
      quiet_hours: null
      max_per_day: null
    next: fim
  fim: {end: completed}
"""

LEFT = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
NIGHT = datetime(2026, 11, 23, 23, 30, tzinfo=UTC) + timedelta(hours=3)  # 23:30 in São Paulo


async def test_a_step_rule_set_to_null_turns_the_default_off_for_that_step(
    tmp_path: Path,
) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW), at=NIGHT) as h:
        await h.event("reply", text="oi")  # the 24 h window is open: plain text may go
        first = await h.start("alerta")
        await h.advance(timedelta(seconds=1))
        second = await h.start("alerta")

        for run in (first, second):
            (message,) = await h.messages(run.id)
            # Inside the default quiet hours and past the default cap of 1, and sent
            # at once all the same: the step turned both rules off.
            assert message.status in LEFT, message
            assert message.status_at["sending"] < NIGHT + timedelta(minutes=1)
            rules = {d["rule"] for d in await h.decisions(run.id)}
            assert rules == {"opt_out"}


async def test_a_step_that_sets_no_rule_keeps_the_defaults(tmp_path: Path) -> None:
    flow = FLOW.replace("    rules:\n      quiet_hours: null\n      max_per_day: null\n", "")
    async with harness(settings_with_flows(tmp_path, flow), at=NIGHT) as h:
        run = await h.start("alerta")
        (message,) = await h.messages(run.id)
        assert message.status == MessageStatus.QUEUED
        assert message.next_attempt_at == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)  # 08:00
