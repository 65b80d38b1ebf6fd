"""A message is `sending` only once its request can start: a send that waits for
its provider's connection slot (or Robbu's first login) is still `queued`. So a
worker killed meanwhile leaves nothing a provider without idempotency keys would
have to call ambiguous: the next worker takes the work over and sends it once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import ContactUpsert, MessageStatus, Run
from engine.runtime import Engine
from providers.robbu import RobbuConfig
from tests.fakes.gateway import FakeGateway, Fault
from tests.fakes.robbu import LOGIN, FakeRobbu
from tests.fakes.robbu import Fault as RobbuFault
from tests.integration.engine_kit import START, harness, settings_with_flows, until
from tests.integration.test_dispatch_reuse import FLOW
from tests.integration.test_provider_faults import AUTH, make_settings

S = MessageStatus
RUNS = 3


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


async def start_runs(engine: Engine, count: int = RUNS) -> list[Run]:
    runs = []
    for i in range(count):
        run, _ = await engine.start_run(
            "aviso", ContactUpsert(id=f"c-{i}", phone=f"+55119999988{i:02d}", name="Ana")
        )
        runs.append(run)
    return runs


async def statuses(engine: Engine, runs: list[Run]) -> list[MessageStatus]:
    found = [m for run in runs for m in await engine.store.list_run_messages(run.id)]
    return sorted(m.status for m in found)


def waiting(engine: Engine) -> int:
    return sum(d.waiting for _, d in engine.dispatcher.sender.watching.values())


def snapshot(database: Path, copy: Path) -> None:
    """The database as a `kill -9` would leave it at this instant."""
    with (
        contextlib.closing(sqlite3.connect(database)) as src,
        contextlib.closing(sqlite3.connect(copy)) as dst,
    ):
        src.backup(dst)


async def test_sends_waiting_for_the_connection_stay_queued_and_are_sent_once_after_a_crash(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    settings = make_settings(
        tmp_path, gateway, idempotency_header=None, max_in_flight=1, timeout=30
    )
    gateway.fail_next(Fault.hang())  # the first request reaches the gateway and hangs
    crashed = tmp_path / "crashed.db"
    async with harness(settings) as h:
        runs = await start_runs(h.engine)
        dying = asyncio.create_task(h.engine.dispatcher.process_due())
        try:
            await until(
                lambda: gateway.in_flight == 1 and waiting(h.engine) == RUNS - 1,
                "one request at the gateway and the others waiting for the connection",
            )
            # Only the request that may have left is `sending`.
            assert await statuses(h.engine, runs) == [S.QUEUED, S.QUEUED, S.SENDING]
            snapshot(tmp_path / "disparo.db", crashed)
        finally:
            dying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dying

    # The next process, on the database the killed one left, once the leases lapsed.
    restarted = settings.model_copy(update={"storage": f"sqlite:///{crashed}"})
    lease = timedelta(seconds=restarted.dispatcher.lease_seconds)
    async with harness(restarted, at=START + 2 * lease) as h:
        await h.engine.settle()
        assert await statuses(h.engine, runs) == [S.AMBIGUOUS, S.SENT, S.SENT]
        (ambiguous,) = [
            m
            for run in runs
            for m in await h.engine.store.list_run_messages(run.id)
            if m.status == S.AMBIGUOUS
        ]
    # Every key reached the gateway exactly once; the ambiguous one is the hung one.
    by_key = gateway.stats()["requests_by_key"]
    assert len(by_key) == RUNS
    assert set(by_key.values()) == {1}
    assert gateway.received[0]["idempotency_key"] == ambiguous.idempotency_key


def robbu_settings(tmp_path: Path, fake: FakeRobbu) -> Any:
    flow = FLOW.replace("provider: gateway", "provider: robbu_whatsapp")
    config = RobbuConfig.model_validate(
        {
            "type": "robbu",
            "base_url": fake.base_url,
            "company": "acme",
            "username": "api.disparo",
            "password": "s3nha",
            "private_token": "private-token-0123",
            "channel": "whatsapp",
            "timeout": 30,
            "max_in_flight": 2,
        }
    )
    return settings_with_flows(tmp_path, flow, providers={"robbu_whatsapp": config})


async def test_sends_are_not_sending_while_robbus_first_login_runs(tmp_path: Path) -> None:
    async with FakeRobbu(password="s3nha", private_token="private-token-0123") as robbu:
        robbu.fail_next(RobbuFault.hang(), path=LOGIN)
        async with harness(robbu_settings(tmp_path, robbu)) as h:
            runs = await start_runs(h.engine)
            sending = asyncio.create_task(h.engine.dispatcher.process_due())
            try:
                await until(
                    lambda: robbu.stats()["requests"].get(LOGIN) == 1 and waiting(h.engine) == RUNS,
                    "the login at Robbu, and every send waiting for it or a connection",
                )
                # A crash now: nothing was sent, and nothing may look as if it had been.
                assert await statuses(h.engine, runs) == [S.QUEUED] * RUNS
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
            assert await statuses(h.engine, runs) == [S.QUEUED] * RUNS


async def test_a_failed_login_leaves_the_message_queued_and_counts_the_attempt(
    tmp_path: Path,
) -> None:
    async with FakeRobbu(password="s3nha", private_token="private-token-0123") as robbu:
        robbu.fail_next(RobbuFault.error(503), path=LOGIN)
        async with harness(robbu_settings(tmp_path, robbu)) as h:
            (run,) = await start_runs(h.engine, 1)
            await h.engine.settle()
            (message,) = await h.engine.store.list_run_messages(run.id)
            assert message.status == S.QUEUED
            assert message.attempts == 1
            assert "login" in (message.last_error or "")
            assert robbu.stats()["sent"] == 0

            await h.advance(timedelta(hours=1))
            (message,) = await h.engine.store.list_run_messages(run.id)
            assert message.status == S.SENT
            assert robbu.stats()["sent"] == 1
