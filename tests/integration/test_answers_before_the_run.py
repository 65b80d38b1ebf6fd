"""An answer dated before its run began (a webhook delivered a day late, a backfill of
old replies) answers nothing of the run: the run keeps waiting and records why."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import ContactEvent
from tests.integration.engine_kit import harness, settings_with_flows

ASK = """\
flow: ask
defaults:
  provider: sandbox
start: pergunta
steps:
  pergunta:
    send: {text: "Quer pagar o boleto?"}
    on: {sent: espera}
  espera:
    wait: {for: reply, up_to: 1h}
    on: {reply: respondeu}
    timeout: {after: 1h, goto: sem_resposta}
  respondeu: {end: completed}
  sem_resposta: {end: cancelled}
"""


@pytest.mark.parametrize(
    ("dated", "step"),
    [
        (timedelta(days=-1), "espera"),  # yesterday's reply: ignored
        (timedelta(minutes=-3), "respondeu"),  # a sender's clock a little behind: kept
        (timedelta(minutes=1), "respondeu"),
    ],
)
async def test_a_reply_dated_before_the_run_began_does_not_answer_it(
    tmp_path: Path, dated: timedelta, step: str
) -> None:
    async with harness(settings_with_flows(tmp_path, ASK)) as h:
        run = await h.start("ask")
        await h.advance(timedelta(minutes=1))
        at = run.created_at + dated
        await h.engine.ingest_contact_events(
            [ContactEvent(type="reply", at=at, contact_id="c-1", text="sim")]
        )
        await h.engine.settle()
        after = await h.run(run.id)
        ignored = await h.engine.store.list_events(run_id=run.id, kind_prefix="run.event_ignored")
        reasons = [e.data["reason"] for e in ignored if e.data["reason"].startswith("`reply`")]

    assert after.step == step
    if step == "espera":
        assert reasons == [
            f"`reply` is dated {at.isoformat()}, before the run began "
            f"({run.created_at.isoformat()}): it answers nothing of this run"
        ]
    else:
        assert reasons == []
