"""Stopping the engine under load: sends that have not left go back to the queue at
once; a request on the wire is waited for, up to the grace, then cut off and left
``sending`` (it may have reached the vendor)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.models import ContactUpsert, Message, MessageStatus, Run
from engine.runtime import Engine
from engine.settings import Settings
from providers.base import SendWithdrawn, watch_departure
from providers.transport import HttpTransport
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import harness, running_engine, until
from tests.integration.test_provider_faults import AUTH, make_settings

S = MessageStatus


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


@asynccontextmanager
async def one_out_two_waiting(
    tmp_path: Path, gateway: FakeGateway
) -> AsyncIterator[tuple[Settings, Engine, list[Run]]]:
    """A running engine with three runs on a provider with one connection and no
    idempotency key: the first request is held at the gateway, the two others wait
    for the connection. A send left `sending` there could never be resent."""
    settings = make_settings(tmp_path, gateway, max_in_flight=1, timeout=30)
    gateway.pause()
    async with running_engine(settings) as (engine, _):
        runs = []
        for i in range(3):
            run, _ = await engine.start_run(
                "aviso", ContactUpsert(id=f"c-{i}", phone=f"+55119999988{i:02d}", name="Ana")
            )
            runs.append(run)
        watching = engine.dispatcher.sender.watching
        await until(
            lambda: gateway.in_flight == 1 and sum(d.waiting for _, d in watching.values()) == 2,
            "one request at the gateway and two waiting for the connection",
        )
        yield settings, engine, runs


async def messages_of(engine: Engine, runs: list[Run]) -> list[Message]:
    return [m for run in runs for m in await engine.store.list_run_messages(run.id)]


async def statuses(engine: Engine, runs: list[Run]) -> list[MessageStatus]:
    return sorted(m.status for m in await messages_of(engine, runs))


async def test_stopping_gives_back_the_sends_waiting_for_a_connection(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    async with one_out_two_waiting(tmp_path, gateway) as (settings, engine, runs):
        stopping = asyncio.create_task(engine.dispatcher.stop(grace=60))
        # The two waiting are cancelled and write their release, while the first is out...
        await until(lambda: len(engine.dispatcher._tasks) == 1, "the waiting given back")
        assert await statuses(engine, runs) == [S.QUEUED, S.QUEUED, S.SENDING]
        assert not stopping.done()
        gateway.resume()
        await stopping
        # ...which the stop waited for and recorded.
        assert await statuses(engine, runs) == [S.QUEUED, S.QUEUED, S.SENT]
        assert gateway.stats()["requests"] == 1
        given_back = [m for m in await messages_of(engine, runs) if m.status == S.QUEUED]
        assert [m.attempts for m in given_back] == [0, 0]

    # The next engine sends the two others at once, one request each.
    async with harness(settings) as h:
        await h.engine.settle()
        assert await statuses(h.engine, runs) == [S.SENT] * 3
    assert gateway.stats()["requests"] == 3
    assert set(gateway.stats()["requests_by_key"].values()) == {1}


async def test_a_request_still_out_after_the_grace_is_cut_off_and_left_sending(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    async with one_out_two_waiting(tmp_path, gateway) as (_, engine, runs):
        await engine.dispatcher.stop(grace=0)
        # The request on the wire may have reached the gateway: never given back.
        assert await statuses(engine, runs) == [S.QUEUED, S.QUEUED, S.SENDING]


@pytest.mark.parametrize("keys", [True, False], ids=["with-keys", "without-keys"])
async def test_a_request_cut_off_at_the_grace_is_named_in_a_warning(
    tmp_path: Path, gateway: FakeGateway, caplog: pytest.LogCaptureFixture, keys: bool
) -> None:
    """The on-call person reading the log learns which message was left `sending`
    by the stop and what the next process will do with it."""
    header = "Idempotency-Key" if keys else None
    settings = make_settings(
        tmp_path, gateway, max_in_flight=1, timeout=30, idempotency_header=header
    )
    gateway.pause()
    async with running_engine(settings) as (engine, _):
        run, _ = await engine.start_run(
            "aviso", ContactUpsert(id="c-1", phone="+5511999998800", name="Ana")
        )
        await until(lambda: gateway.in_flight == 1, "the request at the gateway")
        caplog.set_level(logging.INFO, logger="disparo")
        await engine.dispatcher.stop(grace=0)
        (message,) = await messages_of(engine, [run])
        assert message.status == S.SENDING
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    cut_off = [w for w in warnings if message.id in w]
    assert len(cut_off) == 1, warnings
    assert "cut off" in cut_off[0]
    assert "gateway" in cut_off[0]
    if keys:
        assert "resends it with the same idempotency key" in cut_off[0]
    else:
        assert "ambiguous" in cut_off[0]


async def test_a_withdrawn_send_starts_no_request(gateway: FakeGateway) -> None:
    transport = HttpTransport("gateway", timeout=5, max_in_flight=1)
    await transport.start()
    try:
        with watch_departure() as watched:
            watched.withdrawn = True
            with pytest.raises(SendWithdrawn):
                await transport.request("POST", gateway.url, body=b"{}")
        assert watched.never_left
        assert gateway.stats()["requests"] == 0

        with watch_departure() as watched:  # not withdrawn: it goes, and says so
            answer = await transport.request("POST", gateway.url, body=b"{}")
        assert answer.status == 401  # no Authorization: the gateway refused it
        assert watched.may_have_left
        assert not watched.never_left
        assert gateway.stats()["requests"] == 1
    finally:
        await transport.close()


@pytest.mark.parametrize("landed", [True, False], ids=["outbox-written", "outbox-not-written"])
async def test_a_send_cut_off_before_it_left_goes_back_to_the_queue_not_ambiguous(
    tmp_path: Path, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    """The grace ran out while the send was still writing its outbox row (a slow
    store): nothing reached the provider, so the message is queued again, its
    attempt uncounted, its due work free at once. A keyless provider would
    otherwise find it `sending` and call it ambiguous: never sent."""
    settings = make_settings(tmp_path, gateway, max_in_flight=1, timeout=30)
    async with harness(settings) as h:
        run, _ = await h.engine.start_run(
            "aviso", ContactUpsert(id="c-1", phone="+5511999998800", name="Ana")
        )
        store = h.engine.store
        commit = store.commit
        writing = asyncio.Event()

        async def slow_outbox(change: Any) -> Any:
            if any(m.status == S.SENDING for m in change.messages):
                if landed:
                    await commit(change)
                writing.set()
                await asyncio.Event().wait()  # the store never answers in time
            return await commit(change)

        monkeypatch.setattr(store, "commit", slow_outbox)
        await h.engine.dispatcher.claim_and_spawn()
        await until(writing.is_set, "the outbox write under way")
        [(task, _)] = h.engine.dispatcher._tasks.values()
        task.cancel()  # what stop() does once the grace is over
        await asyncio.gather(task, return_exceptions=True)
        monkeypatch.undo()

        (message,) = await store.list_run_messages(run.id)
        assert (message.status, message.attempts) == (S.QUEUED, 0)
        [work] = await store.claim_due_work(
            owner="next", now=h.clock.now(), lease_seconds=30, limit=10
        )
        assert work.message_id == message.id
    assert gateway.stats()["requests"] == 0
