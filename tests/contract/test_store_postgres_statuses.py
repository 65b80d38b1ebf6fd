"""PostgreSQL asks ``run_ignores`` before its ingest transaction: inside it, a report is
applied only if its message and its run are still what the engine judged."""

from __future__ import annotations

import pytest

from engine.models import DueKind, MessageStatus, StatusReport
from storage.base import Commit, RunChange
from storage.postgres import PostgresStore
from storage.postgres_codec import status_reports_unit
from tests.contract.store_kit import Seed, at

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(postgres_store: PostgresStore) -> PostgresStore:
    return postgres_store


def delivered(pid: str) -> StatusReport:
    return StatusReport(
        provider="sandbox", status=MessageStatus.DELIVERED, at=at(30), provider_message_id=pid
    )


async def ingest_judged(
    store: PostgresStore, report: StatusReport, expected: MessageStatus, run_version: int
) -> list[str]:
    apply = {"expected_status": expected.value, "run_version": run_version, "events": []}
    outcomes: list[str] = await store._apply(status_reports_unit([report], at(40), [apply]))
    return outcomes


@pytest.mark.parametrize("moved", ["message", "run"])
async def test_a_report_judged_on_a_state_that_moved_is_queued(
    store: PostgresStore, moved: str
) -> None:
    seed = Seed(store)
    run = await seed.run()
    message_id = await seed.message(run, status=MessageStatus.SENT, provider_message_id="w1")
    expected, version = MessageStatus.SENT, run.version
    if moved == "message":
        expected = MessageStatus.SENDING  # judged before the message was sent
    else:
        await store.commit(
            Commit(
                now=at(35),
                run=RunChange(
                    run_id=run.id,
                    expected_version=run.version,
                    step=run.step,
                    status=run.status,
                    step_seq=run.step_seq + 1,
                    vars=run.vars,
                ),
            )
        )

    outcomes = await ingest_judged(store, delivered("w1"), expected, version)

    assert outcomes == ["queued"]
    [work] = await seed.claim_all(when=at(40))
    assert (work.kind, work.message_id) == (DueKind.STATUS, message_id)
    message = await store.get_message(message_id)
    assert message is not None
    assert message.status == MessageStatus.SENT


async def test_a_report_judged_on_the_current_state_is_applied(store: PostgresStore) -> None:
    seed = Seed(store)
    run = await seed.run()
    message_id = await seed.message(run, status=MessageStatus.SENT, provider_message_id="w1")

    outcomes = await ingest_judged(store, delivered("w1"), MessageStatus.SENT, run.version)

    assert outcomes == ["applied"]
    assert await seed.claim_all(when=at(40)) == []
    message = await store.get_message(message_id)
    assert message is not None
    assert message.status == MessageStatus.DELIVERED
