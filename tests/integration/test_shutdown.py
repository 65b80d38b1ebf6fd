"""Stopping the engine under load: sends that have not left go back to the queue at
once; a request on the wire is waited for, up to the grace, then cut off and left
``sending`` (it may have reached the vendor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engine.models import ContactUpsert, MessageStatus, Run
from engine.runtime import Engine
from providers.base import SendWithdrawn, watch_departure
from providers.transport import HttpTransport
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import harness, running_engine
from tests.integration.test_provider_faults import AUTH, make_settings

S = MessageStatus


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def one_out_two_waiting(engine: Engine, gateway: FakeGateway) -> list[Run]:
    """Three runs on a provider with one connection: the first request is held at the
    gateway, the two others wait for the connection."""
    runs = []
    for i in range(3):
        run, _ = await engine.start_run(
            "aviso", ContactUpsert(id=f"c-{i}", phone=f"+55119999988{i:02d}", name="Ana")
        )
        runs.append(run)
    watching = engine.dispatcher.sender.watching
    await until(
        lambda: gateway.in_flight == 1 and sum(d.waiting for d in watching.values()) == 2,
        "one request at the gateway and two waiting for the connection",
    )
    return runs


async def statuses(engine: Engine, runs: list[Run]) -> list[MessageStatus]:
    found = []
    for run in runs:
        (message,) = await engine.store.list_run_messages(run.id)
        found.append(message.status)
    return found


async def test_stopping_gives_back_the_sends_waiting_for_a_connection(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    # One connection, no idempotency key: a send left `sending` could never be resent.
    settings = make_settings(tmp_path, gateway, max_in_flight=1, timeout=30)
    gateway.pause()
    async with running_engine(settings) as (engine, _):
        runs = await one_out_two_waiting(engine, gateway)
        watching = engine.dispatcher.sender.watching
        stopping = asyncio.create_task(engine.dispatcher.stop(grace=60))
        await until(lambda: not any(d.waiting for d in watching.values()), "the waiting withdrawn")
        await asyncio.sleep(0.01)
        # The two that never left are queued again while the first is still out...
        assert sorted(await statuses(engine, runs)) == [S.QUEUED, S.QUEUED, S.SENDING]
        assert not stopping.done()
        gateway.resume()
        await stopping
        # ...which the stop waited for and recorded.
        after_stop = await statuses(engine, runs)
        assert sorted(after_stop) == [S.QUEUED, S.QUEUED, S.SENT]
        assert gateway.stats()["requests"] == 1
        given_back = [m for r in runs for m in await engine.store.list_run_messages(r.id)]
        assert all(m.attempts == 0 for m in given_back if m.status == S.QUEUED)

    # The next engine sends the two others at once, one request each.
    async with harness(settings) as h:
        await h.engine.settle()
        assert await statuses(h.engine, runs) == [S.SENT] * 3
    assert gateway.stats()["requests"] == 3
    assert set(gateway.stats()["requests_by_key"].values()) == {1}


async def test_a_request_still_out_after_the_grace_is_cut_off_and_left_sending(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    settings = make_settings(tmp_path, gateway, max_in_flight=1, timeout=30)
    gateway.pause()
    async with running_engine(settings) as (engine, _):
        runs = await one_out_two_waiting(engine, gateway)
        await engine.dispatcher.stop(grace=0)
        # The request on the wire may have reached the gateway: never given back.
        assert sorted(await statuses(engine, runs)) == [S.QUEUED, S.QUEUED, S.SENDING]
    gateway.resume()


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
