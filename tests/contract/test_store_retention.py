"""Contract: the retention purge deletes what finished long ago, in batches, and nothing
a run, a rule or a late report still needs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from engine.errors import Conflict
from engine.models import (
    ContactEvent,
    DueKind,
    MessageStatus,
    NewEvent,
    RunStatus,
    StatusReport,
)
from storage.base import Commit, Completion, NewRun, Purged, Store, TriggerFiring
from tests.contract.store_kit import NOW, Seed

DAY = timedelta(days=1)
CUTOFF = NOW - 30 * DAY
OLD = NOW - 40 * DAY
RECENT = NOW - DAY


async def _events(store: Store, seed: Seed, run_id: str, contact_id: str, n: int) -> None:
    await store.commit(
        Commit(
            now=OLD,
            events=[
                NewEvent(kind=f"step.{i}", at=OLD, run_id=run_id, contact_id=contact_id)
                for i in range(n)
            ],
        )
    )


async def test_a_finished_run_goes_with_its_messages_and_events_and_open_or_recent_runs_stay(
    store: Store, seed: Seed
) -> None:
    done = await seed.run(status=RunStatus.COMPLETED, when=OLD)
    first = await seed.message(
        done, status=MessageStatus.READ, provider_message_id="wamid.old", when=OLD
    )
    second = await seed.message(done, status=MessageStatus.FAILED, when=OLD)
    await _events(store, seed, done.id, done.contact_id, 3)
    waiting = await seed.run(status=RunStatus.WAITING, when=OLD)
    waiting_message = await seed.message(waiting, status=MessageStatus.SENT, when=OLD)
    await _events(store, seed, waiting.id, waiting.contact_id, 2)
    recent = await seed.run(status=RunStatus.CANCELLED, when=RECENT)
    recent_message = await seed.message(recent, when=RECENT)

    expected = Purged(runs=1, messages=2, events=3)
    assert await store.count_purgeable(CUTOFF) == expected
    assert await store.get_run(done.id) is not None  # counting deletes nothing

    purged = await store.purge(CUTOFF, limit=100)

    assert purged == expected
    assert purged.total == 6
    assert await store.get_run(done.id) is None
    assert await store.get_message(first) is None
    assert await store.get_message(second) is None
    assert await store.list_run_messages(done.id) == []
    assert await store.list_events(run_id=done.id) == []
    assert await store.find_message("sandbox", provider_message_id="wamid.old") is None
    # The contact stays; so do the open run and the run that ended recently.
    assert await store.get_contact(done.contact_id) is not None
    assert (await store.get_run(waiting.id)) is not None
    assert await store.get_message(waiting_message) is not None
    assert len(await store.list_events(run_id=waiting.id)) == 2
    assert await store.get_message(recent_message) is not None
    # A late webhook for the purged message is kept, not refused.
    late = StatusReport(
        provider="sandbox", status=MessageStatus.READ, at=NOW, provider_message_id="wamid.old"
    )
    assert await store.ingest_status_reports([late], NOW) == ["pending"]
    assert await store.purge(CUTOFF, limit=100) == Purged()


async def test_the_key_of_a_purged_run_starts_a_new_run(store: Store, seed: Seed) -> None:
    old = await seed.run(status=RunStatus.FAILED, when=OLD)
    await store.purge(CUTOFF, limit=10)
    assert await store.get_run_by_key(old.idempotency_key) is None

    result = await store.commit(
        Commit(
            now=NOW,
            new_run=NewRun(
                id="r-again",
                flow=old.flow,
                flow_version="v1",
                contact_id=old.contact_id,
                step="lembrete",
                status=RunStatus.ACTIVE,
                idempotency_key=old.idempotency_key,
            ),
        )
    )

    assert result.created
    assert result.run is not None
    assert result.run.id == "r-again"


async def test_a_run_that_due_work_still_names_is_kept_until_the_work_is_done(
    store: Store, seed: Seed
) -> None:
    reported = await seed.run(status=RunStatus.COMPLETED, when=OLD)
    message = await seed.message(
        reported, status=MessageStatus.DELIVERED, provider_message_id="wamid.late", when=OLD
    )
    late = StatusReport(
        provider="sandbox", status=MessageStatus.READ, at=NOW, provider_message_id="wamid.late"
    )
    assert await store.ingest_status_reports([late], NOW) == ["queued"]
    timed = await seed.run(status=RunStatus.CANCELLED, when=OLD)
    await seed.due(DueKind.TIMER, run_id=timed.id, due_at=NOW + DAY)
    free = await seed.run(status=RunStatus.COMPLETED, when=OLD)

    assert await store.count_purgeable(CUTOFF) == Purged(runs=1)
    assert await store.purge(CUTOFF, limit=10) == Purged(runs=1)
    assert await store.get_run(free.id) is None
    assert await store.get_message(message) is not None

    [status_row] = [w for w in await seed.claim_all(when=NOW) if w.kind is DueKind.STATUS]
    assert status_row.message_id == message
    await store.commit(Commit(now=NOW, done=Completion(work=status_row)))

    assert await store.purge(CUTOFF, limit=10) == Purged(runs=1, messages=1, events=1)
    assert await store.get_run(reported.id) is None
    assert await store.get_run(timed.id) is not None  # its timer is still queued


async def test_batches_take_the_oldest_first_and_say_when_more_is_left(
    store: Store, seed: Seed
) -> None:
    runs = [
        await seed.run(status=RunStatus.COMPLETED, when=NOW - days * DAY) for days in (35, 50, 40)
    ]

    assert (await store.count_purgeable(CUTOFF)).runs == 3
    first = await store.purge(CUTOFF, limit=2)
    assert (first.runs, first.more) == (2, True)
    assert [await store.get_run(r.id) is None for r in runs] == [False, True, True]

    second = await store.purge(CUTOFF, limit=2)
    assert (second.runs, second.more) == (1, False)
    assert await store.get_run(runs[0].id) is None


async def test_events_of_no_run_old_pending_reports_and_firings_go_and_the_contact_keeps_its_facts(
    store: Store, seed: Seed
) -> None:
    contact = await seed.contact(phone="+5511999990000")
    facts = [
        ContactEvent(type="opt_out", at=OLD, contact_id=contact.id, text="SAIR"),
        ContactEvent(type="reply", at=RECENT, contact_id=contact.id, text="oi"),
    ]
    assert await store.ingest_contact_events(facts[:1], OLD) == ["queued"]
    assert await store.ingest_contact_events(facts[1:], RECENT) == ["queued"]
    for when, pid in ((OLD, "wamid.never"), (RECENT, "wamid.soon")):
        report = StatusReport(
            provider="sandbox", status=MessageStatus.SENT, at=when, provider_message_id=pid
        )
        assert await store.ingest_status_reports([report], when) == ["pending"]
    for when in (OLD, RECENT):
        firing = TriggerFiring(flow="cobranca", trigger=0, fire_time=when)
        await store.commit(Commit(now=when, firing=firing))

    expected = Purged(events=1, pending_statuses=1, trigger_firings=1)
    assert await store.count_purgeable(CUTOFF) == expected

    purged = await store.purge(CUTOFF, limit=100)

    assert purged == expected
    kept = await store.get_contact(contact.id)
    assert kept is not None
    assert kept.opted_out_at == OLD
    assert [e.at for e in await store.list_events(contact_id=contact.id)] == [RECENT]
    # The recent firing is still recorded: that fire time cannot fire again.
    recent = TriggerFiring(flow="cobranca", trigger=0, fire_time=RECENT)
    with pytest.raises(Conflict):
        await store.commit(Commit(now=NOW, firing=recent))


async def test_two_purgers_at_once_share_the_work(
    store: Store, seed: Seed, another_store: Callable[[], Awaitable[Store]]
) -> None:
    runs = [await seed.run(status=RunStatus.COMPLETED, when=OLD - i * DAY) for i in range(6)]
    other = await another_store()

    both = await asyncio.gather(store.purge(CUTOFF, limit=3), other.purge(CUTOFF, limit=3))

    assert sum(p.runs for p in both) == 6
    assert [await store.get_run(r.id) for r in runs] == [None] * 6


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
async def test_a_batch_limit_below_one_is_refused(store: Store, limit: object) -> None:
    with pytest.raises(ValueError, match="purge batch limit"):
        await store.purge(CUTOFF, limit=limit)  # type: ignore[arg-type]
