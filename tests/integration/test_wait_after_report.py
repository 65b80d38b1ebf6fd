"""A wait for `read` (or `delivered`) entered after its message was already read
moves on at once: the "not read in 2 h" SMS never goes to a contact who read."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from engine.models import MessageStatus
from tests.integration.engine_kit import harness, settings_with_flows

PAUSA = """flow: pausa
defaults: {provider: sandbox}
triggers: [{api: {}}]
start: aviso
steps:
  aviso:
    send: {text: Seu pedido saiu para entrega.}
    on: {delivered: pausa}
  pausa:
    wait: 10m
    next: espera_leitura
  espera_leitura:
    wait: {for: read, up_to: 2h}
    on: {read: lido, timeout: sms}
  sms:
    send: {channel: sms, provider: sandbox_sms, text: Seu pedido saiu para entrega.}
    next: fim
  lido: {end: completed}
  fim: {end: completed}
"""


async def test_a_message_read_during_a_pause_is_not_followed_by_the_not_read_sms(
    tmp_path: Path,
) -> None:
    async with harness(settings_with_flows(tmp_path, PAUSA)) as h:  # read after 5 s
        run = await h.start("pausa")
        await h.advance(timedelta(minutes=10, seconds=1))  # read at 10:00:05, in the pause

        done = await h.run(run.id)
        assert (done.step, done.status) == ("lido", "completed")

        await h.advance(timedelta(hours=3))

        [aviso] = await h.messages(run.id)  # no SMS: she read it
        assert aviso.status == MessageStatus.READ
        kinds = await h.kinds(run.id)
        assert "timer" in kinds  # the pause's
        # The wait's own timer went with it: no late `timeout` to ignore.
        ignored = await h.engine.store.list_events(
            run_id=run.id, kind_prefix="run.event_ignored", limit=10
        )
        assert not [e for e in ignored if "timeout" in str(e.data["reason"])]
        assert await h.engine.store.next_due_at() is None


async def test_a_wait_whose_read_leads_back_to_it_does_not_spin(tmp_path: Path) -> None:
    again = (
        PAUSA.replace("flow: pausa", "flow: again")
        .replace("on: {read: lido, timeout: sms}", "on: {read: espera_leitura, timeout: sms}")
        .replace("  lido: {end: completed}\n", "")
    )
    async with harness(settings_with_flows(tmp_path, again)) as h:
        run = await h.start("again")
        await asyncio.wait_for(h.advance(timedelta(minutes=10, seconds=1)), timeout=10)

        assert (await h.run(run.id)).step == "espera_leitura"  # waits, as for a new read
