"""Contract: what a send taken over and a timer ask of the queue.

``has_queued_status``: a status report of the message waits as STATUS work.
``answers_queued_before``: an inbound event or a status report for the run, queued
(due) strictly before the given time, still waits to be handled, claimed or not.
"""

from __future__ import annotations

from datetime import timedelta

from engine.models import ContactEvent, DueKind, MessageStatus, NewDueWork, Run, StatusReport
from storage.base import Commit, Completion, MessageChange, Store
from tests.contract.store_kit import NOW, Seed, at

SENDING, DELIVERED = MessageStatus.SENDING, MessageStatus.DELIVERED
MICROSECOND = timedelta(microseconds=1)


def delivered(provider_message_id: str) -> StatusReport:
    return StatusReport(
        provider="sandbox", status=DELIVERED, at=NOW, provider_message_id=provider_message_id
    )


async def sent_message(seed: Seed, run: Run, provider_message_id: str) -> str:
    return await seed.message(run, status=SENDING, provider_message_id=provider_message_id)


async def report(store: Store, provider_message_id: str, when: float = 0) -> None:
    outcomes = await store.ingest_status_reports([delivered(provider_message_id)], at(when))
    assert outcomes == ["queued"]


async def reply(store: Store, contact_id: str, when: float = 0) -> None:
    event = ContactEvent(type="reply", at=at(when), contact_id=contact_id, text="paguei")
    assert await store.ingest_contact_events([event], at(when)) == ["queued"]


async def dispatch_row(store: Store, run: Run, message_id: str) -> None:
    work = NewDueWork(kind=DueKind.DISPATCH, due_at=at(-60), run_id=run.id, message_id=message_id)
    await store.commit(Commit(now=NOW, new_due=[work]))


# ---------------------------------------------------------------- has_queued_status


async def test_a_queued_report_is_seen_until_it_is_handled(store: Store, seed: Seed) -> None:
    message_id = await sent_message(seed, await seed.run(), "wamid.1")
    assert await store.has_queued_status(message_id) is False

    await report(store, "wamid.1")
    assert await store.has_queued_status(message_id) is True

    # Claimed by a dispatcher, it still waits to be applied.
    [work] = await seed.claim_all()
    assert work.kind == DueKind.STATUS
    assert await store.has_queued_status(message_id) is True

    await store.commit(Commit(now=NOW, done=Completion(work=work)))
    assert await store.has_queued_status(message_id) is False


async def test_other_messages_reports_and_other_work_do_not_count(store: Store, seed: Seed) -> None:
    run = await seed.run()
    mine = await sent_message(seed, run, "wamid.mine")
    other = await sent_message(seed, run, "wamid.other")
    # The message's own send (DISPATCH) and the run's timer are not reports.
    await dispatch_row(store, run, mine)
    await seed.due(DueKind.TIMER, run_id=run.id, due_at=at(-60))

    await report(store, "wamid.other")

    assert await store.has_queued_status(other) is True
    assert await store.has_queued_status(mine) is False
    assert await store.has_queued_status("m-unknown") is False


async def test_a_report_kept_pending_counts_once_its_provider_id_is_recorded(
    store: Store, seed: Seed
) -> None:
    message_id = await seed.message(await seed.run(), status=SENDING)
    # The webhook won the race against the send's commit: kept, not queued yet.
    assert await store.ingest_status_reports([delivered("wamid.late")], NOW) == ["pending"]
    assert await store.has_queued_status(message_id) is False

    record = MessageChange(message_id=message_id, at=at(1), provider_message_id="wamid.late")
    await store.commit(Commit(now=at(1), messages=[record]))

    assert await store.has_queued_status(message_id) is True


# ---------------------------------------------------------------- answers_queued_before


async def test_nothing_queued_nothing_to_wait_for(store: Store, seed: Seed) -> None:
    run = await seed.run()
    await seed.due(DueKind.TIMER, run_id=run.id, due_at=at(-60))  # the timer itself
    message_id = await sent_message(seed, run, "wamid.1")
    await dispatch_row(store, run, message_id)

    assert await store.answers_queued_before(run.id, at(60)) is False
    assert await store.answers_queued_before("r-unknown", at(60)) is False


async def test_a_reply_queued_before_the_deadline_goes_first(store: Store, seed: Seed) -> None:
    run = await seed.run()
    await reply(store, run.contact_id, when=-1)

    assert await store.answers_queued_before(run.id, NOW) is True


async def test_a_status_report_of_the_runs_message_goes_first(store: Store, seed: Seed) -> None:
    run = await seed.run()
    await sent_message(seed, run, "wamid.1")
    await report(store, "wamid.1", when=-1)

    assert await store.answers_queued_before(run.id, NOW) is True


async def test_the_time_comparison_is_strict_to_the_microsecond(store: Store, seed: Seed) -> None:
    by_reply = await seed.run()
    await reply(store, by_reply.contact_id)
    by_report = await seed.run()
    await sent_message(seed, by_report, "wamid.1")
    await report(store, "wamid.1")

    for run in (by_reply, by_report):
        # Queued at the deadline itself (or after it): the timer does not wait.
        assert await store.answers_queued_before(run.id, NOW) is False
        assert await store.answers_queued_before(run.id, NOW - MICROSECOND) is False
        assert await store.answers_queued_before(run.id, NOW + MICROSECOND) is True


async def test_answers_of_other_runs_do_not_count(store: Store, seed: Seed) -> None:
    contact = await seed.contact()
    waiting = await seed.run(contact.id, flow="cobranca")
    other_contact = await seed.run(flow="cobranca")
    await reply(store, other_contact.contact_id, when=-5)
    await sent_message(seed, other_contact, "wamid.other")
    await report(store, "wamid.other", when=-5)

    assert await store.answers_queued_before(waiting.id, NOW) is False
    assert await store.answers_queued_before(other_contact.id, NOW) is True


async def test_a_claimed_answer_still_waits_a_handled_one_does_not(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    await reply(store, run.contact_id, when=-5)
    await sent_message(seed, run, "wamid.1")
    await report(store, "wamid.1", when=-5)

    claimed = await seed.claim_all(owner="node-b")
    assert {work.kind for work in claimed} == {DueKind.INBOUND, DueKind.STATUS}
    assert await store.answers_queued_before(run.id, NOW) is True  # node-b is on it

    inbound = next(work for work in claimed if work.kind == DueKind.INBOUND)
    await store.commit(Commit(now=NOW, done=Completion(work=inbound)))
    assert await store.answers_queued_before(run.id, NOW) is True  # the report is left

    status = next(work for work in claimed if work.kind == DueKind.STATUS)
    await store.commit(Commit(now=NOW, done=Completion(work=status)))
    assert await store.answers_queued_before(run.id, NOW) is False


async def test_a_report_kept_pending_is_not_an_answer_yet(store: Store, seed: Seed) -> None:
    run = await seed.run()
    await seed.message(run, status=SENDING)
    assert await store.ingest_status_reports([delivered("wamid.late")], at(-5)) == ["pending"]

    assert await store.answers_queued_before(run.id, NOW) is False
