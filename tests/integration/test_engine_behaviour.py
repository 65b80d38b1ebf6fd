"""What operators rely on: opt-out, render errors that send nothing, leases that
outlive a dead worker, logs without phone numbers or secrets."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.errors import Conflict, StaleFence
from engine.logs import RedactingFilter
from engine.models import ContactEvent, ContactUpsert, DueKind, MessageStatus, RunStatus
from engine.runtime import Engine
from storage.base import Commit, Completion
from tests.integration.engine_kit import START, harness, running_engine, settings_for

S = MessageStatus
BOLETO = {"valor": 1670, "vencimento": "2026-11-30"}


async def test_a_contact_who_replies_sair_gets_nothing_more(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        await h.event("reply", text="SAIR")
        contact = await h.engine.get_contact("c-1")
        assert contact.opted_out_at is not None

        run = await h.start("cobranca_boleto", context=BOLETO)
        await h.advance(timedelta(seconds=2))

        (reminder,) = await h.messages(run.id)
        assert reminder.status == S.SKIPPED
        assert reminder.provider_message_id is None
        opt_out = [d for d in await h.decisions(run.id) if d["rule"] == "opt_out"]
        assert opt_out[0]["outcome"] == "skip"


async def test_an_opt_out_cancels_the_runs_waiting_for_the_contact(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await h.start("cobranca_boleto", context=BOLETO)
        await h.advance(timedelta(seconds=6))
        assert (await h.run(run.id)).status == RunStatus.WAITING  # the 2 h timeout is set

        await h.event("opt_out", text="pelo app")
        await h.advance(timedelta(hours=3))  # past the timeout that would send the SMS

        done = await h.run(run.id)
        assert done.status == RunStatus.CANCELLED
        assert [m.step for m in await h.messages(run.id)] == ["lembrete"]  # no SMS
        finished = [
            e.data
            for e in await h.engine.store.list_events(run_id=run.id, limit=100)
            if e.kind == "run.finished"
        ]
        assert finished == [{"status": "cancelled", "reason": "the contact opted out"}]


async def test_a_sair_reply_is_no_answer_the_flow_routes(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await h.start("cobranca_boleto", context=BOLETO)
        await h.advance(timedelta(seconds=6))

        # cobranca_boleto routes any reply to a live agent: SAIR must not get there.
        await h.event("reply", text="Sair")
        await h.advance(timedelta(seconds=6))

        assert (await h.run(run.id)).status == RunStatus.CANCELLED
        assert [m.step for m in await h.messages(run.id)] == ["lembrete"]
        contact = await h.engine.get_contact("c-1")
        assert contact.attendance is None  # never handed to an agent
        assert contact.opted_out_at is not None


async def test_a_missing_variable_fails_the_message_and_names_the_field(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        await h.event("reply", text="oi")
        await h.advance(timedelta(minutes=11))
        run = await h.start("cobranca_boleto", context={"vencimento": "2026-11-30"})  # no valor
        await h.advance(timedelta(seconds=2))

        reminder = (await h.messages(run.id))[0]
        assert reminder.status == S.FAILED
        assert reminder.provider_message_id is None  # nothing reached the provider
        assert reminder.last_error is not None
        for part in ("cobranca_boleto", "lembrete", "send.text", "valor"):
            assert part in reminder.last_error


async def test_one_open_run_per_contact_unless_the_flow_allows_many(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        await h.start("cobranca_boleto", context=BOLETO)
        with pytest.raises(Conflict, match="already has an open run"):
            await h.start("cobranca_boleto", context=BOLETO)


async def test_work_claimed_by_a_dead_worker_is_taken_over_after_its_lease(
    tmp_path: Path,
) -> None:
    async with harness(settings_for(tmp_path, dispatcher={"lease_seconds": 30})) as h:
        await h.event("reply", text="oi")  # the survey goes only inside the window
        run, _ = await h.engine.start_run(
            "pesquisa_nps", ContactUpsert(id="c-1", phone="+5511999998888", name="Maria")
        )
        # Another process claims the send and dies before doing anything.
        claimed = await h.engine.store.claim_due_work(
            owner="dead-worker", now=h.clock.now(), lease_seconds=30, limit=10
        )
        assert claimed
        await h.engine.settle()
        (message,) = await h.messages(run.id)
        assert message.status == S.QUEUED  # still leased: nobody else touches it

        await h.advance(timedelta(seconds=31))
        await h.advance(timedelta(seconds=6))

        (message,) = await h.messages(run.id)
        assert message.status == S.READ
        assert message.attempts == 1
        # The dead worker's fence is stale: its late commit must not land.
        with pytest.raises(StaleFence):
            await h.engine.store.commit(Commit(now=h.clock.now(), done=Completion(work=claimed[0])))


async def test_logs_mask_phones_and_hide_the_api_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path)
    # pytest keeps one capture handler for every test: the filter goes with this one.
    redacting = RedactingFilter(settings.secret_values())
    caplog.handler.addFilter(redacting)
    try:
        async with harness(settings) as h:
            caplog.set_level(logging.INFO)
            await h.engine.ingest_contact_events(
                [ContactEvent(type="reply", at=h.clock.now(), phone="+5511977776666", text="oi")]
            )
            logging.getLogger("disparo.test").info("token is %s", "test-token-0123456789")
            await h.start("cobranca_boleto", context=BOLETO)
            await h.advance(timedelta(seconds=6))
    finally:
        caplog.handler.removeFilter(redacting)

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "inbound reply" in text
    assert "+5511977776666" not in text
    assert "5511977776666" not in text
    assert "test-token-0123456789" not in text


async def test_stopping_while_a_claim_commits_leaves_the_claimed_work_to_the_next_process(
    tmp_path: Path,
) -> None:
    async with running_engine(settings_for(tmp_path)) as (engine, _):
        real_claim = engine.store.claim_due_work
        claimed, release = asyncio.Event(), asyncio.Event()

        async def claim_then_pause(**kw: Any) -> Any:
            work = await real_claim(**kw)
            if any(w.kind == DueKind.DISPATCH for w in work):
                claimed.set()
                await release.wait()  # the claim is durable; the loop hasn't spawned yet
            return work

        engine.store.claim_due_work = claim_then_pause  # type: ignore[method-assign]
        await engine.ingest_contact_events(
            [ContactEvent(type="reply", at=START, contact_id="c-1", text="oi")]
        )
        run, _ = await engine.start_run(
            "pesquisa_nps", ContactUpsert(id="c-1", phone="+5511999998888", name="Maria")
        )
        await claimed.wait()
        stopping = asyncio.create_task(engine.dispatcher.stop())
        await asyncio.sleep(0)
        release.set()
        await stopping

        # The stopping engine started no send: the message is queued again, unleased,
        # and another process can claim it at once (not after the lease ends).
        (message,) = await engine.store.list_run_messages(run.id)
        assert message.status == MessageStatus.QUEUED
        assert message.attempts == 0
        free = await real_claim(owner="next", now=START, lease_seconds=30, limit=10)
        assert [w.message_id for w in free] == [message.id]


def hold_sends(engine: Engine) -> tuple[list[str], asyncio.Event]:
    """Hold every sandbox send until the event is set; the list gets each one's key."""
    sandbox = engine.providers["sandbox"]
    real_send, gate, keys = sandbox.send, asyncio.Event(), []

    async def held_send(message: Any) -> Any:
        keys.append(message.idempotency_key)
        await gate.wait()
        return await real_send(message)

    sandbox.send = held_send  # type: ignore[method-assign]
    return keys, gate


async def test_a_full_dispatcher_sends_the_rest_as_slots_free_without_polling_the_store(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, dispatcher={"max_in_flight": 2})
    async with running_engine(settings) as (engine, _):
        in_flight, gate = hold_sends(engine)
        real_next_due, asked = engine.store.next_due_at, []

        async def counted_next_due() -> Any:
            asked.append(len(engine.dispatcher._tasks))
            return await real_next_due()

        engine.store.next_due_at = counted_next_due  # type: ignore[method-assign]
        runs = []
        for i in range(5):
            run, _ = await engine.start_run(
                "cobranca_boleto",
                ContactUpsert(id=f"c-{i}", phone=f"+55119999988{i:02d}", name="Ana"),
                context=BOLETO,
            )
            runs.append(run)
        for _ in range(200):
            if len(in_flight) == 2:
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)  # room for a third send to slip through if it could
        assert len(in_flight) == 2
        assert all(tasks < 2 for tasks in asked)  # never asked while every slot was busy

        gate.set()
        for _ in range(500):
            statuses = [m.status for r in runs for m in await engine.store.list_run_messages(r.id)]
            if statuses.count(S.SENT) == 5:
                break
            await asyncio.sleep(0.002)
        assert statuses.count(S.SENT) == 5
        assert len(set(in_flight)) == 5


async def test_a_send_slower_than_the_lease_keeps_its_work_through_heartbeats(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, dispatcher={"lease_seconds": 30})
    async with running_engine(settings) as (engine, clock):
        calls, gate = hold_sends(engine)
        run, _ = await engine.start_run(
            "cobranca_boleto",
            ContactUpsert(id="c-1", phone="+5511999998888", name="Ana"),
            context=BOLETO,
        )
        for _ in range(200):
            if calls:
                break
            await asyncio.sleep(0.001)
        assert len(calls) == 1

        for _ in range(18):  # 90 s of virtual time: three leases
            clock.advance(timedelta(seconds=5))
            for _ in range(5):
                await asyncio.sleep(0.001)  # the heartbeat runs and commits
        # Another process looking for work now finds none: the lease was extended.
        taken = await engine.store.claim_due_work(
            owner="other-process", now=clock.now(), lease_seconds=30, limit=10
        )
        assert [w.kind for w in taken if w.run_id == run.id] == []

        gate.set()
        for _ in range(500):
            (message, *_) = await engine.store.list_run_messages(run.id)
            if message.status == S.SENT:
                break
            await asyncio.sleep(0.002)
        assert message.status == S.SENT
        assert calls == [message.idempotency_key]
