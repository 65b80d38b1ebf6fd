"""Rules composed in a running engine: a deferral is checked again at its new time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.models import ContactEvent, ContactUpsert, MessageStatus
from tests.integration.engine_kit import harness, settings_for

FLOW = """\
flow: oferta
defaults:
  provider: sandbox
  rules:
    quiet_hours: "21:00-08:00"
    window: template
    max_per_day: 1
concurrency: many
start: oferta
steps:
  oferta:
    send:
      text: "Oi {{ contact.first_name }}, temos uma oferta para você."
      template:
        name: boleto_vencendo
        params: {PrimeiroNome: "{{ contact.first_name }}", Valor: "R$ 10,00", Vencimento: "30/11"}
    next: fim
  fim: {end: completed}
"""


def flows_dir(tmp_path: Path) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "oferta.yaml").write_text(FLOW)
    return flows


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in São Paulo (UTC-3, no DST) on 2026-11-<day>."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) + timedelta(hours=3)


async def test_a_message_deferred_out_of_quiet_hours_is_checked_again_for_the_window(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, flows=flows_dir(tmp_path))
    async with harness(settings, at=local(23, 7)) as h:
        await h.event("reply", text="oi")  # 07:00: the window opens until 07:00 tomorrow
        h.clock.set(local(23, 21, 30))
        run = await h.start("oferta")

        (message,) = await h.messages(run.id)
        assert message.status == MessageStatus.QUEUED
        assert message.next_attempt_at == local(24, 8)  # quiet hours end

        await h.advance(timedelta(hours=11))

        (message,) = await h.messages(run.id)
        assert message.status != MessageStatus.QUEUED
        # At 08:00 the 24 h window had closed an hour before: the template went.
        assert message.payload["type"] == "template"
        rules = [(d["rule"], d["outcome"]) for d in await h.decisions(run.id)]
        assert ("quiet_hours", "defer") in rules
        assert rules[-1] == ("window", "template")


async def test_the_daily_cap_defers_the_second_message_to_the_next_local_day(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, flows=flows_dir(tmp_path))
    async with harness(settings, at=local(23, 9)) as h:
        await h.engine.ingest_contact_events(
            [ContactEvent(type="reply", at=h.clock.now(), contact_id="c-1", text="oi")]
        )
        first = await h.start("oferta")
        await h.advance(timedelta(seconds=2))
        second = await h.start("oferta")

        (sent,) = await h.messages(first.id)
        (held,) = await h.messages(second.id)
        assert sent.status in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
        assert held.status == MessageStatus.QUEUED
        assert held.next_attempt_at == local(24, 0)

        await h.advance(timedelta(hours=24))

        (held,) = await h.messages(second.id)
        # Midnight is inside quiet hours: deferred again, to 08:00, then sent.
        assert held.status in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
        assert held.status_at["sending"] == local(24, 8)


CAP_FLOW = """\
flow: cap
defaults:
  provider: sandbox
  rules:
    max_per_day: 2
concurrency: many
start: um
steps:
  um:
    send: {text: "Oi"}
    next: fim
  fim: {end: completed}
"""


URGENT = """\
flow: alerta
defaults:
  provider: sandbox
  rules: {quiet_hours: "21:00-08:00", max_per_day: 1, recent_contact: 4h, window: ignore}
concurrency: many
start: alerta
steps:
  alerta:
    send:
      text: "{{ contact.first_name }}, seu cartão foi bloqueado por suspeita de fraude."
    rules: {quiet_hours: null, max_per_day: null, recent_contact: null}
    next: fim
  fim: {end: completed}
"""


async def test_the_daily_cap_counts_the_whole_day_when_its_first_hour_repeats(
    tmp_path: Path,
) -> None:
    # Havana turns its clocks back from 01:00 to 00:00 on 2026-11-01: that day's
    # first hour happens twice, and both belong to the same local day.
    first_midnight = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 CDT (UTC-4)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "cap.yaml").write_text(CAP_FLOW)
    settings = settings_for(tmp_path, flows=flows)
    async with harness(settings, at=first_midnight + timedelta(minutes=10)) as h:
        contact = ContactUpsert(id="c-1", phone="+5353123456", timezone="America/Havana")
        runs = []
        for _ in range(2):  # 00:10 and 00:20 CDT: the cap of 2 is reached
            run, _ = await h.engine.start_run("cap", contact)
            await h.engine.settle()
            runs.append(run)
            await h.advance(timedelta(minutes=10))
        h.clock.set(first_midnight + timedelta(hours=1, minutes=30))  # 00:30 CST, same day
        third, _ = await h.engine.start_run("cap", contact)
        await h.engine.settle()

        for run in runs:
            (message,) = await h.messages(run.id)
            assert message.status in (
                MessageStatus.SENT,
                MessageStatus.DELIVERED,
                MessageStatus.READ,
            )
        (held,) = await h.messages(third.id)
        assert held.status == MessageStatus.QUEUED
        assert held.next_attempt_at == datetime(2026, 11, 2, 5, 0, tzinfo=UTC)  # 00:00 CST
        (cap,) = [d for d in await h.decisions(third.id) if d["rule"] == "max_per_day"]
        assert cap["facts"]["sent_today"] == 2


async def test_a_step_turns_a_default_rule_off_with_null(tmp_path: Path) -> None:
    # The urgent override of quiet hours (novu#8308): a fraud alert goes at 23:00,
    # however many messages the contact had today.
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "alerta.yaml").write_text(URGENT)
    settings = settings_for(tmp_path, flows=flows)
    async with harness(settings, at=local(23, 23)) as h:
        first = await h.start("alerta")
        await h.advance(timedelta(seconds=2))
        second = await h.start("alerta")
        await h.advance(timedelta(seconds=2))
        for run in (first, second):
            (message,) = await h.messages(run.id)
            assert message.status != MessageStatus.QUEUED
            assert message.status_at["sent"] < local(23, 23, 1)
        rules = {d["rule"] for d in await h.decisions(second.id)}
        assert rules.isdisjoint({"quiet_hours", "max_per_day", "recent_contact"})
