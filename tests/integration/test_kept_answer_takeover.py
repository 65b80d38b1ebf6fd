"""A process's answer, kept through a store outage longer than the lease, reaches
the store as a status report; the process that then takes the send over must read
it instead of calling the provider again.

Seen running two `disparo serve` on PostgreSQL behind a 70 s outage: the process
that sent recorded "sent as a status report" half a second before the other one
claimed the expired send, found the message still `sending` (the report was queued,
not applied yet) and sent it again with its idempotency key, 20 requests out of 300.
README: "past the lease it is recorded like a status report ... Nothing is sent
again for it."
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.models import ContactUpsert, MessageStatus, RunStatus
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import two_engines
from tests.integration.test_dispatch_reuse import FLOW  # a step that moves on when sent
from tests.integration.test_provider_faults import AUTH, make_settings
from tests.integration.test_store_outage_outcome import Outage, eventually, pass_time


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


@pytest.mark.parametrize("idempotency_header", ["Idempotency-Key", None])
async def test_a_send_taken_over_after_its_answer_was_queued_is_not_sent_again(
    tmp_path: Path,
    gateway: FakeGateway,
    storage: str,
    caplog: pytest.LogCaptureFixture,
    idempotency_header: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="disparo.sending")
    settings = make_settings(tmp_path, gateway, idempotency_header=idempotency_header)
    (tmp_path / "flows" / "aviso.yaml").write_text(FLOW)
    # One row per claim: the expired send first (it came due first), then the report.
    dispatcher = settings.dispatcher.model_copy(update={"max_in_flight": 1})
    settings = settings.model_copy(update={"storage": storage, "dispatcher": dispatcher})
    async with two_engines(settings) as (one, two, clock):
        outage = Outage(one)  # only the first process loses the store
        run, _ = await one.start_run(
            "aviso", ContactUpsert(id="c-1", phone="+5511999998888", name="Ana")
        )
        # It enters the step and sends; the answer's commit is refused, and the answer
        # is kept meanwhile.
        sending = asyncio.create_task(one.dispatcher.process_due())

        async def refused() -> bool:
            return outage.refused > 0

        await eventually(refused, "the answer's commit refused")
        assert gateway.stats()["requests"] == 1
        await pass_time(clock, 70)  # past the lease: the answer waits as a status report
        outage.end()

        async def queued() -> bool:
            await pass_time(clock, 1)
            return "recorded sent as a status report" in caplog.text

        await eventually(queued, "the kept answer queued as a status report", tries=20)
        # (its next claim met the outage: the dispatcher loop would just poll again)
        await asyncio.gather(sending, return_exceptions=True)

        for _ in range(5):  # the other process claims the expired send and the report
            await two.dispatcher.process_due()
            await pass_time(clock, 1)
        (message,) = await two.store.list_run_messages(run.id)
        found = await two.store.get_run(run.id)
        events = await two.store.list_events(run_id=run.id, limit=1000)

    assert gateway.stats()["requests"] == 1, gateway.stats()  # not even with its key
    assert message.status == MessageStatus.SENT
    assert found is not None
    assert found.status == RunStatus.COMPLETED
    assert "message.ambiguous" not in [e.kind for e in events]
