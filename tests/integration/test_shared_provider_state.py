"""Two engine processes on one store share Interflow's per-minute limit and the Robbu
login token: each "process" here is its own store connection, its own
``StoreProviderState`` (the engine's) with its own owner name, and its own provider
instance, on one database (a PostgreSQL schema, or one SQLite file). Time is a
virtual clock; nothing sleeps for real."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from engine.clock import VirtualClock
from engine.errors import ProviderAuthError, ProviderRateLimited
from engine.models import OutboundMessage, Text
from engine.provider_state import StoreProviderState
from providers.interflow import InterflowConfig, InterflowProvider
from providers.robbu import RobbuConfig, RobbuProvider
from storage.base import Store
from tests.contract.conftest import database  # noqa: F401  (the fixture: SQLite and PostgreSQL)
from tests.contract.store_kit import Database
from tests.fakes.interflow import API_KEY, CHANNEL_ID, FakeInterflow
from tests.fakes.interflow import Fault as InterflowFault
from tests.fakes.robbu import FakeRobbu, Fault
from tests.provider_kit import outbound

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "s3nha-da-api-robbu-7f3a"
PRIVATE_TOKEN = "af5addfsdf52-a5dfsc-44fdf6-80bc-eda1d2af8"


class SteppingClock(VirtualClock):
    """A virtual clock its sleepers do not move: a process polling the store for
    another process's login yields to the loop and polls again until that login lands,
    however long it takes in real time. (Moving the clock to each poll's wake-up time
    let a login slowed by a loaded machine outlast the renewal claim's lease in virtual
    time, and the waiting process logged in too.)"""

    async def sleep_until(self, when: datetime, wake: asyncio.Event | None = None) -> None:
        await asyncio.sleep(0)


class StoreHost:
    """The ProviderHost one engine process offers: the engine's state on its store."""

    def __init__(self, store: Store, clock: VirtualClock, owner: str) -> None:
        self.provider_state = StoreProviderState(store, clock, owner)

    async def schedule_callback(self, provider: str, delay_seconds: float, body: bytes) -> None:
        raise AssertionError(f"provider {provider} never schedules callbacks")


@pytest.fixture
async def stores(database: Database) -> AsyncIterator[list[Store]]:  # noqa: F811
    """Three stores on one migrated database: processes a, b and a later c."""
    opened = [database.new_store() for _ in range(3)]
    await opened[0].migrate()
    for store in opened:
        await store.open()
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


def message(key: str) -> OutboundMessage:
    return outbound(Text(body="Olá"), key=key, phone="+5511999999999")


# ---------------------------------------------------------------- Interflow's limit


async def test_two_processes_stay_under_interflows_limit_together_and_send_everything(
    stores: list[Store],
) -> None:
    clock = VirtualClock(START)

    def seconds() -> float:
        return clock.now().timestamp()

    async with FakeInterflow(limit_per_minute=6, monotonic=seconds, wall_clock=seconds) as fake:
        config = InterflowConfig(
            base_url=fake.base_url,
            api_key=SecretStr(API_KEY),
            channel_id=CHANNEL_ID,
            rate_limit="6/min",
            webhook_secret="hook",
        )
        processes = [
            InterflowProvider("interflow", config, StoreHost(store, clock, owner))
            for store, owner in zip(stores[:2], ("host-a", "host-b"), strict=False)
        ]
        for provider in processes:
            await provider.start()
        due = {(i % 2, f"k-{i}"): clock.now() for i in range(20)}
        sent_at: list[datetime] = []
        sent_by = [0, 0]
        parked: list[ProviderRateLimited] = []

        async def attempt(process: int, key: str) -> None:
            try:
                await processes[process].send(message(key))
            except ProviderRateLimited as exc:
                parked.append(exc)  # the engine parks it durably until retry_after
                due[process, key] = clock.now() + timedelta(seconds=exc.retry_after or 0.0)
                return
            del due[process, key]
            sent_at.append(clock.now())
            sent_by[process] += 1

        try:
            while due:
                clock.set(max(clock.now(), min(due.values())))
                ready = [item for item, at in due.items() if at <= clock.now()]
                await asyncio.gather(*(attempt(process, key) for process, key in ready))
        finally:
            for provider in processes:
                await provider.close()

    assert len(fake.accepted) == 20  # every message went
    assert parked  # the budget made the processes wait, before any request left
    assert {(e.left, e.status) for e in parked} == {(False, None)}
    assert all(e.retry_after is not None and e.retry_after > 0 for e in parked)
    assert 429 not in fake.answers  # Interflow never had to refuse one
    for start in sent_at:
        in_window = [t for t in sent_at if start <= t < start + timedelta(seconds=60)]
        assert len(in_window) <= 6
    assert min(sent_by) > 0  # both processes sent: the budget was shared, not split
    assert clock.now() - START >= timedelta(seconds=3 * 60)  # 20 at 6 a minute


async def test_a_429_or_a_smaller_limit_one_process_sees_holds_for_the_other(
    stores: list[Store],
) -> None:
    clock = VirtualClock(START)

    def seconds() -> float:
        return clock.now().timestamp()

    async with FakeInterflow(limit_per_minute=3, monotonic=seconds, wall_clock=seconds) as fake:
        config = InterflowConfig(
            base_url=fake.base_url, api_key=SecretStr(API_KEY), channel_id=CHANNEL_ID
        )
        first = InterflowProvider("interflow", config, StoreHost(stores[0], clock, "host-a"))
        second = InterflowProvider("interflow", config, StoreHost(stores[1], clock, "host-b"))
        for provider in (first, second):
            await provider.start()
        try:
            fake.fail_next(InterflowFault(kind="rate_limit", retry_after="17"))
            with pytest.raises(ProviderRateLimited) as vendor:
                await first.send(message("a-1"))
            assert vendor.value.status == 429
            with pytest.raises(ProviderRateLimited) as held:
                await second.send(message("b-1"))
            assert held.value.status is None  # Interflow never saw it
            assert held.value.retry_after == pytest.approx(17.0)
            clock.advance(17)
            await second.send(message("b-1"))  # Interflow says it allows 3, not 60
            await first.send(message("a-1"))
            assert first.window.limit == 3
            # The refused request counts too: three started in this window.
            with pytest.raises(ProviderRateLimited) as full:
                await second.send(message("b-2"))
            assert full.value.retry_after == pytest.approx(61.0 - 17.0)
        finally:
            for provider in (first, second):
                await provider.close()
    assert fake.answers == [429, 201, 201]


# ---------------------------------------------------------------- the Robbu token


async def robbu_processes(
    robbu: FakeRobbu, stores: list[Store], clock: VirtualClock, count: int = 2
) -> list[RobbuProvider]:
    config = RobbuConfig.model_validate(
        {
            "base_url": robbu.base_url,
            "company": "acme",
            "username": "api.disparo",
            "password": PASSWORD,
            "private_token": PRIVATE_TOKEN,
            "timeout": 2,
        }
    )
    started = []
    for index in range(count):
        host = StoreHost(stores[index], clock, f"host-{'abc'[index]}")
        provider = RobbuProvider("robbu_whatsapp", config, host)
        await provider.start()
        started.append(provider)
    return started


@pytest.fixture
async def robbu() -> AsyncIterator[FakeRobbu]:
    async with FakeRobbu(password=PASSWORD, private_token=PRIVATE_TOKEN) as fake:
        yield fake


async def test_a_burst_of_401s_across_two_processes_costs_exactly_one_login(
    robbu: FakeRobbu, stores: list[Store]
) -> None:
    clock = SteppingClock(START)
    a, b = await robbu_processes(robbu, stores, clock)
    try:
        await asyncio.gather(a.send(message("first-a")), b.send(message("first-b")))
        assert robbu.logins == 1  # the first token is shared too
        robbu.login_elsewhere()  # someone logged in by hand: the shared token is dead
        burst = [p.send(message(f"{i}-{n}")) for i in range(10) for n, p in enumerate((a, b))]
        await asyncio.gather(*burst)
    finally:
        for provider in (a, b):
            await provider.close()
    assert robbu.logins == 3  # ours, the one by hand, and one renewal for both processes
    assert a.login.logins + b.login.logins == 2
    assert len(robbu.received) == 22
    renewed = {h["Authorization"] for h in robbu.received_headers[2:]}
    assert renewed == {f"Bearer {robbu.token}"}  # both continue with the new token


async def test_a_process_whose_token_another_renewed_takes_the_new_one_without_a_login(
    robbu: FakeRobbu, stores: list[Store]
) -> None:
    clock = SteppingClock(START)
    a, b = await robbu_processes(robbu, stores, clock)
    try:
        await a.send(message("a-1"))
        await b.send(message("b-1"))  # the stored token: no login of its own
        robbu.login_elsewhere()
        await a.send(message("a-2"))  # a renews
        logins = robbu.logins
        await b.send(message("b-2"))  # b's token is stale: refused once, then a's
        assert robbu.logins == logins
        (c,) = await robbu_processes(robbu, stores[2:], clock, count=1)  # a restart
        await c.send(message("c-1"))
        await c.close()
    finally:
        for provider in (a, b):
            await provider.close()
    assert robbu.logins == 3
    assert len(robbu.received) == 5


async def test_the_shared_token_never_reaches_logs_errors_or_the_stores_reprs(
    robbu: FakeRobbu, stores: list[Store], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = SteppingClock(START)
    a, b = await robbu_processes(robbu, stores, clock)
    seen: list[str] = []
    try:
        await a.send(message("a-1"))
        robbu.login_elsewhere()
        await asyncio.gather(a.send(message("a-2")), b.send(message("b-1")))
        robbu.fail_next(Fault.unauthorized(), times=3)
        with pytest.raises(ProviderAuthError) as refused:
            await b.send(message("b-2"))
        seen.append("".join(traceback.format_exception(refused.value)) + repr(refused.value))
        stored = await stores[0].get_provider_credential(a.login.credential)
        seen += [repr(stored), str(stored), repr(a.login)]
    finally:
        for provider in (a, b):
            await provider.close()
    text = caplog.text + "".join(seen)
    assert robbu.tokens_issued  # there were tokens to leak
    for token in robbu.tokens_issued:
        assert token not in text
    assert PASSWORD not in text
