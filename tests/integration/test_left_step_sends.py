"""A message held back (quiet hours, a deferral, a retry) is not sent once its run
has left the step it belongs to: the contact answered meanwhile and moved on."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from engine.models import MessageStatus
from tests.integration.engine_kit import harness, settings_with_flows
from tests.integration.test_cli import CONFIG, disparo

QUIET = """flow: quiet
defaults: {provider: sandbox, rules: {timezone: America/Sao_Paulo}}
triggers: [{api: {}}]
start: lembrete
steps:
  lembrete:
    send: {text: Seu boleto vence amanhã.}
    rules: {quiet_hours: "09:00-12:00"}
    on: {reply: obrigado}
  obrigado:
    send: {text: Obrigado pela resposta!}
    next: espera
  espera:
    wait: 1d
    next: fim
  fim: {end: completed}
"""


async def test_a_deferred_message_of_a_step_the_run_left_is_not_sent(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, QUIET)) as h:  # 10:00 in São Paulo
        run = await h.start("quiet")  # quiet until 12:00: held back
        await h.advance(timedelta(minutes=30))
        await h.event("reply", text="já paguei")  # the contact answers before 12:00

        await h.advance(timedelta(hours=2))  # past 12:00, when the reminder was due

        lembrete, obrigado = await h.messages(run.id)
        assert (obrigado.step, obrigado.status) == ("obrigado", MessageStatus.READ)
        # "Seu boleto vence amanhã" after "Obrigado pela resposta!" would be news from
        # a step the conversation already left.
        assert (lembrete.step, lembrete.status) == ("lembrete", MessageStatus.SKIPPED)
        assert "sent" not in lembrete.status_at
        assert lembrete.last_error == (
            "the run left step `lembrete` before its message went out (it is at `espera`)"
        )
        assert (await h.run(run.id)).step == "espera"
        why = await h.engine.decisions("c-1")
        assert any(e.kind == "message.skipped" and e.message_id == lembrete.id for e in why)


def test_simulate_shows_the_held_message_skipped_as_serve_skips_it(tmp_path: Path) -> None:
    flow = tmp_path / "quiet.yaml"
    flow.write_text(QUIET)
    contact = tmp_path / "maria.yaml"
    contact.write_text('id: c-1\nphone: "+5511999998888"\nname: Maria\n')
    events = tmp_path / "events.jsonl"
    events.write_text('{"at": "2026-11-23T10:30:00-03:00", "type": "reply", "text": "já paguei"}\n')

    result = disparo(
        "simulate", str(flow), "--config", str(CONFIG), "--contact", str(contact),
        "--at", "2026-11-23T10:00:00-03:00", "--events", str(events), "--json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["step"] for line in lines if line["kind"] == "send"] == ["obrigado"]
    [skipped] = [line for line in lines if line["kind"] == "skipped"]
    assert (skipped["step"], skipped["at"]) == ("lembrete", "2026-11-23T15:00:00+00:00")
    assert skipped["reason"].startswith("the run left step `lembrete` before its message went out")


HELD = """flow: held
defaults: {provider: sandbox, rules: {timezone: America/Sao_Paulo}}
triggers: [{api: {}}]
start: lembrete
steps:
  lembrete:
    send: {text: Seu boleto vence amanhã.}
    rules: {quiet_hours: "09:00-12:00"}
    on: {reply: fim}
  fim: {end: completed}
"""


async def test_a_cancelled_run_leaves_no_message_queued_for_ever(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, QUIET)) as h:  # 10:00 in São Paulo
        run = await h.start("quiet")  # held back until 12:00
        await h.engine.cancel_run(run.id)
        await h.advance(timedelta(hours=3))

        [lembrete] = await h.messages(run.id)
        # "queued" would read as still on its way, hours after the run was cancelled.
        assert lembrete.status == MessageStatus.SKIPPED
        assert lembrete.last_error == "the run ended cancelled before its message went out"


async def test_a_run_a_reply_ends_skips_its_held_message(tmp_path: Path) -> None:
    async with harness(settings_with_flows(tmp_path, HELD)) as h:
        run = await h.start("held")
        await h.event("reply", text="já paguei")
        await h.advance(timedelta(hours=3))

        assert (await h.run(run.id)).status == "completed"
        [lembrete] = await h.messages(run.id)
        assert lembrete.status == MessageStatus.SKIPPED
        assert "sent" not in lembrete.status_at
