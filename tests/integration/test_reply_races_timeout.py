"""A reply and the step's timeout due at the same moment, on two engines sharing one
store: exactly one branch advances, and a reply that came before the deadline wins
even when another engine takes the timer while the reply is still being handled. A
reply after the deadline never holds the timeout back; a redelivered one moves nothing.

PostgreSQL is the deployment this is for; SQLite is checked too.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from engine.models import ContactEvent, ContactUpsert, DueKind
from engine.runtime import Engine
from engine.settings import Settings
from tests.integration.engine_kit import Harness, settings_with_flows, two_engines

FLOW = """\
flow: pergunta
description: Asks, then thanks a reply or follows up after an hour of silence.
defaults:
  provider: sandbox
  rules: {window: ignore}
start: pergunta
steps:
  pergunta:
    send: {text: "Você vem amanhã?"}
    on:
      reply: respondeu
    timeout: {after: 1h, goto: sem_resposta}
  respondeu:
    send: {text: "Obrigado pela resposta!"}
    next: fim
  sem_resposta:
    send: {text: "Ainda não tivemos sua resposta."}
    next: fim
  fim:
    end: completed
"""


def shared(tmp_path: Path, storage: str) -> Settings:
    base = settings_with_flows(tmp_path, FLOW)
    # One row per claim: the reply and the timer go to different engines.
    return base.model_copy(
        update={
            "storage": storage,
            "dispatcher": base.dispatcher.model_copy(update={"max_in_flight": 1}),
        }
    )


async def both_handle_everything_due(one: Engine, two: Engine) -> None:
    for _ in range(10):
        await asyncio.gather(one.dispatcher.process_due(), two.dispatcher.process_due())


def reply(h: Harness, text: str, dedupe_key: str | None = None) -> ContactEvent:
    return ContactEvent(
        type="reply",
        at=h.clock.now(),
        contact_id="c-1",
        text=text,
        source="sandbox",
        dedupe_key=dedupe_key,
    )


async def test_a_reply_before_the_deadline_wins_over_the_timer_another_engine_handles_first(
    tmp_path: Path, storage: str
) -> None:
    async with two_engines(shared(tmp_path, storage)) as (one, two, clock):
        h = Harness(one, clock)
        run, _ = await one.start_run("pergunta", ContactUpsert(id="c-1", phone="+5511999998888"))
        await both_handle_everything_due(one, two)  # sent: the hour starts now
        clock.advance(timedelta(minutes=59, seconds=59))
        await both_handle_everything_due(one, two)  # delivered, read: still waiting
        await one.ingest_contact_events([reply(h, "sim")])
        clock.advance(timedelta(seconds=2))  # the timeout is due too before anyone looks
        # Engine one takes the reply and is slow with it; engine two takes the timer.
        (taken,) = await one.store.claim_due_work(
            owner=one.dispatcher.owner, now=clock.now(), lease_seconds=30, limit=1
        )
        await two.dispatcher.process_due()
        await one.dispatcher.handle(taken)
        await both_handle_everything_due(one, two)
        clock.advance(timedelta(hours=2))
        await both_handle_everything_due(one, two)
        finished = await h.run(run.id)
        steps = [m.step for m in await h.messages(run.id)]
        kinds = await h.kinds(run.id)

    assert taken.kind == DueKind.INBOUND
    assert finished.status == "completed"
    assert steps == ["pergunta", "respondeu"]  # not "Ainda não tivemos sua resposta."
    assert kinds.count("run.finished") == 1


async def test_a_reply_after_the_deadline_never_holds_the_timeout_back(
    tmp_path: Path, storage: str
) -> None:
    async with two_engines(shared(tmp_path, storage)) as (one, two, clock):
        h = Harness(one, clock)
        run, _ = await one.start_run("pergunta", ContactUpsert(id="c-1", phone="+5511999998888"))
        await both_handle_everything_due(one, two)  # sent: the hour starts now
        clock.advance(timedelta(hours=1, seconds=1))
        # A reply a second after the deadline, queued before the timer was handled.
        await one.ingest_contact_events([reply(h, "sim")])
        await one.dispatcher.process_due()
        finished = await h.run(run.id)
        steps = [m.step for m in await h.messages(run.id)]

    assert steps == ["pergunta", "sem_resposta"]
    assert finished.status == "completed"


async def test_a_reply_at_the_deadline_and_its_redelivery_advance_exactly_one_branch(
    tmp_path: Path, storage: str
) -> None:
    async with two_engines(shared(tmp_path, storage)) as (one, two, clock):
        h = Harness(one, clock)
        run, _ = await one.start_run("pergunta", ContactUpsert(id="c-1", phone="+5511999998888"))
        await both_handle_everything_due(one, two)
        clock.advance(timedelta(hours=1))
        # The vendor delivers the reply twice, to each engine, as the timer comes due.
        await asyncio.gather(
            one.ingest_contact_events([reply(h, "sim", "sandbox:inbound:r-1")]),
            two.ingest_contact_events([reply(h, "sim", "sandbox:inbound:r-1")]),
        )
        await both_handle_everything_due(one, two)
        finished = await h.run(run.id)
        steps = [m.step for m in await h.messages(run.id)]
        kinds = await h.kinds(run.id)

    assert finished.status == "completed"
    assert steps[0] == "pergunta"
    assert steps[1:] in (["respondeu"], ["sem_resposta"]), steps
    assert kinds.count("run.finished") == 1
