"""The store goes away right after a provider answered a send: the answer is kept
and recorded once the store is back, and nothing is sent twice.

A provider without idempotency keys (the `http` provider with
``idempotency_header: null``, like Robbu, Interflow and Altu): a message left
``sending`` there would become ``ambiguous`` at its next claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.clock import VirtualClock
from engine.errors import StoreUnavailable
from engine.models import ContactUpsert, Message, MessageStatus, RunStatus
from engine.runtime import Engine
from storage.base import Commit
from tests.fakes.gateway import FakeGateway, Fault
from tests.integration.engine_kit import running_engine
from tests.integration.test_dispatch_reuse import FLOW  # a step that moves on when sent
from tests.integration.test_provider_faults import AUTH, make_settings

# What the engine asks the store while it runs; all of it fails during the outage.
CALLS = (
    "commit",
    "claim_due_work",
    "extend_leases",
    "next_due_at",
    "get_message",
    "get_run",
    "get_contact",
    "ingest_status_reports",
)


class Outage:
    """The store stops answering at the first commit of a provider's answer (one
    carrying a provider message id, or failing the message) until ``end``."""

    def __init__(self, engine: Engine) -> None:
        self.down = False
        self.armed = True
        self.refused = 0
        store = engine.store
        for name in CALLS:
            setattr(store, name, self._guard(getattr(store, name)))

    def _guard(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.armed and args and isinstance(args[0], Commit):
                answer = any(
                    m.provider_message_id or m.status == MessageStatus.FAILED
                    for m in args[0].messages
                )
                self.down, self.armed = answer, not answer
            if self.down:
                self.refused += 1
                raise StoreUnavailable("connection refused (the test's outage)")
            return await call(*args, **kwargs)

        return guarded

    def end(self) -> None:
        self.down = self.armed = False


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


async def eventually(check: Callable[[], Awaitable[bool]], what: str, tries: int = 2000) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def pass_time(clock: VirtualClock, seconds: int) -> None:
    """Move the virtual clock a second at a time, letting the engine's tasks run."""
    for _ in range(seconds):
        clock.advance(1)
        for _ in range(20):
            await asyncio.sleep(0.001)


def no_key_settings(tmp_path: Path, gateway: FakeGateway, storage: str | None = None) -> Any:
    settings = make_settings(tmp_path, gateway, idempotency_header=None)
    (tmp_path / "flows" / "aviso.yaml").write_text(FLOW)
    if storage is None:
        return settings
    return settings.model_copy(update={"storage": storage})


async def outage_after_answer(
    tmp_path: Path, gateway: FakeGateway, seconds: int, storage: str | None = None
) -> tuple[Message, RunStatus, list[str]]:
    """Start a run whose send the gateway answers; the store is away for ``seconds``
    from the commit of that answer on. Returns the message, its run's status and
    the run's event kinds once the engine has settled."""
    settings = no_key_settings(tmp_path, gateway, storage)
    async with running_engine(settings) as (engine, clock):
        outage = Outage(engine)
        run, _ = await engine.start_run(
            "aviso", ContactUpsert(id="c-1", phone="+5511999998888", name="Ana")
        )

        async def refused() -> bool:
            return outage.refused > 0

        await eventually(refused, "the answer's commit refused")
        assert gateway.stats()["requests"] == 1
        await pass_time(clock, seconds)
        outage.end()
        store = engine.store

        async def settled() -> bool:
            await pass_time(clock, 1)
            (message,) = await store.list_run_messages(run.id)
            found = await store.get_run(run.id)
            return (
                message.status not in (MessageStatus.SENDING, MessageStatus.AMBIGUOUS)
                and found is not None
                and found.status != RunStatus.ACTIVE
                and found.status != RunStatus.WAITING
            )

        # (a virtual minute is plenty: the keeper's pauses are 5 s at most)
        await eventually(settled, "the message and its run settled", tries=60)
        (message,) = await store.list_run_messages(run.id)
        found = await store.get_run(run.id)
        assert found is not None
        events = await store.list_events(run_id=run.id, limit=1000)
        return message, found.status, [e.kind for e in sorted(events, key=lambda e: e.id)]


async def test_an_answer_the_store_refused_is_recorded_once_it_is_back(
    tmp_path: Path, gateway: FakeGateway, storage: str
) -> None:
    message, run_status, kinds = await outage_after_answer(tmp_path, gateway, 8, storage)

    assert message.status == MessageStatus.SENT
    assert message.provider_message_id is not None
    assert run_status == RunStatus.COMPLETED
    assert "message.ambiguous" not in kinds
    assert gateway.stats()["requests"] == 1


async def test_an_answer_kept_past_the_lease_is_recorded_as_a_status_report(
    tmp_path: Path, gateway: FakeGateway, storage: str
) -> None:
    # Longer than the lease (30 s): the row may be claimed again meanwhile, so the
    # answer goes through the status path, which settles the message either way.
    message, run_status, kinds = await outage_after_answer(tmp_path, gateway, 70, storage)

    assert message.status == MessageStatus.SENT
    assert message.provider_message_id is not None
    assert run_status == RunStatus.COMPLETED
    assert "status.sent" in kinds
    assert gateway.stats()["requests"] == 1


async def test_a_refusal_the_store_missed_fails_the_message_once_it_is_back(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.fail_next(Fault.reject("destinatário inválido", status=422))
    message, run_status, _ = await outage_after_answer(tmp_path, gateway, seconds=70)

    assert message.status == MessageStatus.FAILED
    assert "destinatário inválido" in (message.last_error or "")
    assert run_status == RunStatus.COMPLETED  # `failed` moves on to `next`
    assert gateway.stats()["requests"] == 1


async def test_stopping_with_an_answer_unrecorded_logs_how_to_settle_it(
    tmp_path: Path, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    settings = no_key_settings(tmp_path, gateway)
    async with running_engine(settings) as (engine, clock):
        outage = Outage(engine)
        run, _ = await engine.start_run(
            "aviso", ContactUpsert(id="c-1", phone="+5511999998888", name="Ana")
        )

        async def refused() -> bool:
            return outage.refused > 0

        await eventually(refused, "the answer's commit refused")
        await pass_time(clock, 70)  # past the lease: a status report waits for the store
        await engine.dispatcher.stop(grace=0.05)

    (record,) = [r for r in caplog.records if "outcome unrecorded" in r.getMessage()]
    assert record.levelname == "WARNING"
    line = record.getMessage()
    assert f"{run.id}:aviso" in line  # its idempotency key, to match a status event
    assert "via gateway was sent" in line
    assert "provider id gw-" in line
    assert gateway.stats()["requests"] == 1
