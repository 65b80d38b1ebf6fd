"""A send deferred because an agent was attending goes out when the attendance
ends, not at the end the attendance had planned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.models import ContactUpsert, MessageStatus
from tests.integration.engine_kit import harness, settings_with_flows

AVISO = """flow: aviso
defaults: {provider: sandbox, rules: {in_attendance: defer, quiet_hours: "22:00-08:00"}}
triggers: [{api: {}}]
start: aviso
steps:
  aviso:
    send: {text: Seu pedido saiu para entrega.}
    next: fim
  fim: {end: completed}
"""


async def test_a_send_held_for_an_attendance_goes_when_the_agent_ends_it(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, AVISO)) as h:  # 10:00 in São Paulo
        start = h.clock.now()
        await h.engine.upsert_contact(ContactUpsert(id="c-1", phone="+5511999998888"))
        await h.event("attendance_started", attendant="Ana", until=start + timedelta(days=2))
        run = await h.start("aviso")
        [held] = await h.messages(run.id)
        assert held.status == MessageStatus.QUEUED  # deferred to the planned end

        await h.advance(timedelta(minutes=10))
        await h.event("attendance_ended")  # Ana closed the conversation
        await h.advance(timedelta(minutes=1))

        [aviso] = await h.messages(run.id)
        # Not two days later: the attendance is over now.
        assert aviso.status_at["sent"] == start + timedelta(minutes=10)
        assert (await h.run(run.id)).status == "completed"


async def test_a_send_also_held_by_quiet_hours_still_waits_for_them(tmp_path: Path) -> None:
    night = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 23:00 in São Paulo
    async with harness(settings_with_flows(tmp_path, AVISO), at=night) as h:
        await h.engine.upsert_contact(ContactUpsert(id="c-1", phone="+5511999998888"))
        await h.event("attendance_started", attendant="Ana", until=night + timedelta(days=2))
        run = await h.start("aviso")
        await h.advance(timedelta(minutes=10))
        await h.event("attendance_ended")
        await h.advance(timedelta(hours=12))

        [aviso] = await h.messages(run.id)
        assert aviso.status_at["sent"] == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)  # 08:00
