"""Contract: message statuses (monotonic), status reports and pending statuses."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import StaleRun
from engine.models import (
    REPORTED_STATUSES,
    STATUS_RANK,
    DueKind,
    MessageStatus,
    NewEvent,
    StatusReport,
    status_can_advance,
)
from storage.base import Commit, MessageChange, StatusTarget, Store
from tests.contract.store_kit import NOW, Seed, at

SENDING, SENT = MessageStatus.SENDING, MessageStatus.SENT
DELIVERED, READ, FAILED = MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED


def change(message_id: str, status: MessageStatus | None, when: float = 0, **kw: object) -> Commit:
    return Commit(
        now=at(when),
        messages=[MessageChange(message_id=message_id, at=at(when), status=status, **kw)],  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- message changes


async def test_status_moves_forward_only_and_records_when(store: Store, seed: Seed) -> None:
    message_id = await seed.message(await seed.run(), status=SENDING)

    delivered = await store.commit(change(message_id, DELIVERED, 10))
    back = await store.commit(change(message_id, SENT, 20))

    assert delivered.status_applied == {message_id: DELIVERED}
    assert back.status_applied == {}
    message = await store.get_message(message_id)
    assert message is not None
    assert message.status == DELIVERED
    assert message.status_at[DELIVERED] == at(10)
    assert SENT not in message.status_at


async def test_a_status_that_may_not_move_is_dropped_alone(store: Store, seed: Seed) -> None:
    message_id = await seed.message(await seed.run(), status=READ)

    result = await store.commit(
        change(message_id, SENT, 10, provider_message_id="wamid.late", attempts=2)
    )

    assert result.status_applied == {}
    message = await store.get_message(message_id)
    assert message is not None
    assert (message.status, message.provider_message_id, message.attempts) == (
        READ,
        "wamid.late",
        2,
    )


async def test_force_moves_a_status_back(store: Store, seed: Seed) -> None:
    message_id = await seed.message(await seed.run(), status=SENDING)

    result = await store.commit(change(message_id, MessageStatus.QUEUED, 5, force=True))

    assert result.status_applied == {message_id: MessageStatus.QUEUED}
    message = await store.get_message(message_id)
    assert message is not None
    assert message.status == MessageStatus.QUEUED


async def test_expected_status_mismatch_fails_the_whole_commit(store: Store, seed: Seed) -> None:
    run = await seed.run()
    message_id = await seed.message(run, status=SENT)
    other_id = await seed.message(run, status=SENDING)

    with pytest.raises(StaleRun):
        await store.commit(
            Commit(
                now=at(1),
                messages=[
                    MessageChange(message_id=other_id, at=at(1), status=SENT),
                    MessageChange(
                        message_id=message_id,
                        at=at(1),
                        status=DELIVERED,
                        expected_status=SENDING,
                    ),
                ],
            )
        )

    other = await store.get_message(other_id)
    assert other is not None
    assert other.status == SENDING


async def test_fields_left_at_their_default_are_not_touched(store: Store, seed: Seed) -> None:
    message_id = await seed.message(await seed.run())
    await store.commit(
        Commit(
            now=at(1),
            messages=[
                MessageChange(
                    message_id=message_id,
                    at=at(1),
                    status=SENDING,
                    payload={"type": "text", "body": "Olá"},
                    attempts=1,
                    next_attempt_at=at(60),
                    last_error="timeout",
                )
            ],
        )
    )

    await store.commit(change(message_id, None, 2, provider_message_id="wamid.1"))
    kept = await store.get_message(message_id)
    await store.commit(change(message_id, None, 3, next_attempt_at=None, last_error=None))
    cleared = await store.get_message(message_id)

    assert kept is not None
    assert cleared is not None
    assert kept.payload == {"type": "text", "body": "Olá"}
    assert (kept.attempts, kept.next_attempt_at, kept.last_error) == (1, at(60), "timeout")
    assert kept.provider_message_id == "wamid.1"
    assert (cleared.next_attempt_at, cleared.last_error) == (None, None)
    assert cleared.updated_at == at(3)


async def test_find_message_by_provider_id_or_by_key(store: Store, seed: Seed) -> None:
    message_id = await seed.message(await seed.run(), provider="robbu", provider_message_id="x1")
    stored = await store.get_message(message_id)
    assert stored is not None

    by_id = await store.find_message("robbu", provider_message_id="x1")
    other_provider = await store.find_message("altu", provider_message_id="x1")
    by_key = await store.find_message("robbu", idempotency_key=stored.idempotency_key)

    assert by_id == stored
    assert other_provider is None
    assert by_key == stored
    assert await store.find_message("robbu", idempotency_key="nope") is None


async def test_count_outbound_counts_messages_that_left_since_and_those_on_their_way(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    await seed.message(run, status=SENT, when=at(-3600))
    await seed.message(run, status=DELIVERED, when=at(10))
    await seed.message(run, status=READ, when=at(20))
    await seed.message(run, status=SENDING, when=at(-86_400))  # on its way: counts whenever
    await seed.message(run, status=MessageStatus.SKIPPED, when=at(40))
    await seed.message(run, status=MessageStatus.QUEUED, when=at(50))

    assert await store.count_outbound(run.contact_id, NOW) == 3
    assert await store.count_outbound(run.contact_id, at(-7200)) == 4
    assert await store.count_outbound("someone-else", at(-7200)) == 0


async def test_count_outbound_counts_from_since_itself_to_the_microsecond(
    store: Store, seed: Seed
) -> None:
    # `max_per_day` counts the sends of the day: one that left at its first instant is in.
    run = await seed.run()
    await seed.message(run, status=SENT, when=NOW)
    await seed.message(run, status=DELIVERED, when=NOW - timedelta(microseconds=1))

    assert await store.count_outbound(run.contact_id, NOW) == 1
    assert await store.count_outbound(run.contact_id, NOW - timedelta(microseconds=1)) == 2
    assert await store.count_outbound(run.contact_id, NOW + timedelta(microseconds=1)) == 0


async def test_last_outbound_at_skips_the_asking_run(store: Store, seed: Seed) -> None:
    first = await seed.run()
    await seed.message(first, status=SENT, when=at(-3600))
    await seed.message(first, status=MessageStatus.SKIPPED, when=at(-60))
    second = await seed.run(first.contact_id, exclusive=False)
    await seed.message(second, status=READ, when=at(-10))

    assert await store.last_outbound_at(first.contact_id) == at(-10)
    assert await store.last_outbound_at(first.contact_id, exclude_run=second.id) == at(-3600)
    assert await store.last_outbound_at(first.contact_id, exclude_run=first.id) == at(-10)
    assert await store.last_outbound_at("someone-else") is None


async def test_last_outbound_at_counts_a_send_on_its_way_from_its_sending_commit(
    store: Store, seed: Seed
) -> None:
    first = await seed.run()
    await seed.message(first, status=SENT, when=at(-3600))
    second = await seed.run(first.contact_id, exclusive=False)
    await seed.message(second, status=SENDING, when=at(-5))

    assert await store.last_outbound_at(first.contact_id, exclude_run=first.id) == at(-5)
    assert await store.last_outbound_at(first.contact_id, exclude_run=second.id) == at(-3600)


async def test_the_same_status_applied_five_times_at_once_moves_once(
    store: Store, seed: Seed
) -> None:
    message_id = await seed.message(await seed.run(), status=SENT)

    results = await asyncio.gather(
        *(store.commit(change(message_id, DELIVERED, 1)) for _ in range(5))
    )

    assert sum(len(r.status_applied) for r in results) == 1


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(reports=st.lists(st.sampled_from(REPORTED_STATUSES), min_size=1, max_size=6))
async def test_any_order_of_reports_never_regresses(
    store: Store, seed: Seed, reports: list[MessageStatus]
) -> None:
    message_id = await seed.message(await seed.run(), status=SENDING)
    expected = SENDING
    for step, status in enumerate(reports):
        await store.commit(change(message_id, status, step))
        if status_can_advance(expected, status):
            expected = status
        stored = await store.get_message(message_id)
        assert stored is not None
        assert stored.status == expected
    top = max((s for s in reports if s in STATUS_RANK), key=STATUS_RANK.__getitem__, default=None)
    failed_first = FAILED in reports and (
        READ not in reports or reports.index(FAILED) < reports.index(READ)
    )
    assert expected == (FAILED if failed_first else top)


# ---------------------------------------------------------------- status reports


def report(status: MessageStatus = DELIVERED, **kw: object) -> StatusReport:
    fields: dict[str, object] = {"provider": "sandbox", "status": status, "at": at(30)}
    fields.update(kw)
    return StatusReport(**fields)  # type: ignore[arg-type]


async def test_a_report_for_a_known_message_is_logged_and_queued(store: Store, seed: Seed) -> None:
    run = await seed.run()
    message_id = await seed.message(run, status=SENT, provider_message_id="wamid.1")

    outcomes = await store.ingest_status_reports(
        [report(provider_message_id="wamid.1", error_code="131", dedupe_key="d1")], at(40)
    )

    assert outcomes == ["queued"]
    [work] = await seed.claim_all(when=at(40))
    assert (work.kind, work.message_id, work.due_at) == (DueKind.STATUS, message_id, at(40))
    assert work.payload["status"] == "delivered"
    assert work.payload["at"] == at(30).isoformat()
    assert (work.payload["error_code"], work.payload["error_message"]) == ("131", None)
    [event] = await store.list_events(run_id=run.id)
    assert (event.kind, event.message_id, event.at, event.dedupe_key) == (
        "status.delivered",
        message_id,
        at(30),
        "d1",
    )
    assert event.contact_id == run.contact_id


# ---------------------------------------------------------------- applied at once
# SQLite asks ``run_ignores`` inside the webhook's write; PostgreSQL never asks (its batch is
# one server-side call) and queues. Either way every report ends up applied once.


def asks_the_engine(store: Store) -> bool:
    return type(store).__name__ == "SQLiteStore"


class Judge:
    """A ``run_ignores`` that records what it was shown and answers ``answer``."""

    def __init__(self, answer: list[NewEvent] | None) -> None:
        self.answer = answer
        self.asked: list[StatusTarget] = []

    def __call__(self, target: StatusTarget) -> list[NewEvent] | None:
        self.asked.append(target)
        return self.answer


async def test_a_report_its_run_ignores_is_applied_in_the_same_write(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    message_id = await seed.message(run, status=SENT, provider_message_id="wamid.1")
    note = NewEvent(
        kind="run.event_ignored",
        at=at(40),
        contact_id=run.contact_id,
        run_id=run.id,
        data={"reason": "no `failed` route"},
    )
    judge = Judge([note])
    failed = report(
        FAILED, provider_message_id="wamid.1", error_message="unreachable", dedupe_key="f"
    )

    outcomes = await store.ingest_status_reports([failed], at(40), run_ignores=judge)

    message = await store.get_message(message_id)
    assert message is not None
    kinds = [e.kind for e in reversed(await store.list_events(run_id=run.id))]  # oldest first
    if not asks_the_engine(store):
        assert (outcomes, judge.asked, message.status) == (["queued"], [], SENT)
        assert [w.kind for w in await seed.claim_all(when=at(40))] == [DueKind.STATUS]
        assert kinds == ["status.failed"]
        return
    assert outcomes == ["applied"]
    [target] = judge.asked
    assert (target.message_id, target.message_status, target.status, target.provider) == (
        message_id,
        SENT,
        FAILED,
        "sandbox",
    )
    assert (target.run.id, target.run.version, target.message_step_seq) == (
        run.id,
        run.version,
        message.step_seq,
    )
    # What the dispatcher would have written: the status, its time, the error.
    assert (message.status, message.status_at[FAILED], message.last_error) == (
        FAILED,
        at(30),
        "unreachable",
    )
    assert await seed.claim_all(when=at(40)) == []  # nothing left to apply
    assert kinds == ["status.failed", "run.event_ignored"]


async def test_a_report_the_run_reacts_to_is_queued(store: Store, seed: Seed) -> None:
    run = await seed.run()
    message_id = await seed.message(run, status=SENT, provider_message_id="wamid.1")
    judge = Judge(None)

    outcomes = await store.ingest_status_reports(
        [report(READ, provider_message_id="wamid.1")], at(40), run_ignores=judge
    )

    assert outcomes == ["queued"]
    assert len(judge.asked) == (1 if asks_the_engine(store) else 0)
    [work] = await seed.claim_all(when=at(40))
    assert (work.kind, work.message_id) == (DueKind.STATUS, message_id)
    message = await store.get_message(message_id)
    assert message is not None
    assert message.status == SENT


async def test_the_engine_is_not_asked_about_a_status_that_cannot_advance_or_a_duplicate(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    await seed.message(run, status=READ, provider_message_id="wamid.1")
    other = await seed.message(run, status=SENT, provider_message_id="wamid.2")
    judge = Judge([])
    late = report(DELIVERED, provider_message_id="wamid.1")
    twice = report(DELIVERED, provider_message_id="wamid.2", dedupe_key="d2")

    outcomes = await store.ingest_status_reports([late, twice, twice], at(40), run_ignores=judge)

    applied = "applied" if asks_the_engine(store) else "queued"
    # The late report is left to the dispatcher, which drops it, as it always did.
    assert outcomes == ["queued", applied, "duplicate"]
    assert [t.message_id for t in judge.asked] == ([other] if asks_the_engine(store) else [])


async def test_a_report_matched_by_idempotency_key(store: Store, seed: Seed) -> None:
    message_id = await seed.message(await seed.run(), status=SENT)
    stored = await store.get_message(message_id)
    assert stored is not None

    outcomes = await store.ingest_status_reports(
        [report(READ, idempotency_key=stored.idempotency_key)], at(40)
    )

    assert outcomes == ["queued"]
    [work] = await seed.claim_all(when=at(40))
    assert work.message_id == message_id


async def test_a_repeated_dedupe_key_is_a_duplicate(store: Store, seed: Seed) -> None:
    await seed.message(await seed.run(), provider_message_id="wamid.1")
    same = report(provider_message_id="wamid.1", dedupe_key="d1")

    first = await store.ingest_status_reports([same, same], at(40))
    later = await store.ingest_status_reports([same], at(50))

    assert first == ["queued", "duplicate"]
    assert later == ["duplicate"]
    assert len(await seed.claim_all(when=at(60))) == 1


async def test_an_unknown_message_keeps_its_report_pending_until_the_id_arrives(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    message_id = await seed.message(run, status=SENDING)
    early = [
        report(SENT, provider_message_id="wamid.9", dedupe_key="s"),
        report(DELIVERED, provider_message_id="wamid.9", dedupe_key="d"),
    ]

    assert await store.ingest_status_reports(early, at(1)) == ["pending", "pending"]
    assert await store.ingest_status_reports(early[:1], at(2)) == ["duplicate"]
    assert await seed.claim_all(when=at(2)) == []
    assert await store.list_events(kind_prefix="status.") == []

    await store.commit(
        Commit(
            now=at(3),
            messages=[
                MessageChange(
                    message_id=message_id,
                    at=at(3),
                    status=SENT,
                    expected_status=SENDING,
                    provider_message_id="wamid.9",
                )
            ],
        )
    )

    queued = await seed.claim_all(when=at(3))
    assert [(w.kind, w.message_id, w.payload["status"]) for w in queued] == [
        (DueKind.STATUS, message_id, "sent"),
        (DueKind.STATUS, message_id, "delivered"),
    ]
    assert {w.due_at for w in queued} == {at(3)}
    events = await store.list_events(run_id=run.id, kind_prefix="status.")
    assert [e.kind for e in events] == ["status.delivered", "status.sent"]
    # Applied once: the same webhook delivered again is still a duplicate.
    assert await store.ingest_status_reports(early, at(4)) == ["duplicate", "duplicate"]
    await store.commit(change(message_id, None, 5, provider_message_id="wamid.9"))
    assert await seed.claim_all(owner="node-b", when=at(20)) == []  # nothing new queued


async def test_a_pending_report_by_key_is_released_with_the_provider_id(
    store: Store, seed: Seed
) -> None:
    message_id = await seed.message(await seed.run(), status=SENDING)
    stored = await store.get_message(message_id)
    assert stored is not None

    outcome = await store.ingest_status_reports(
        [report(SENT, idempotency_key="not-yet-known"), report(READ, provider_message_id="z")],
        at(1),
    )
    assert outcome == ["pending", "pending"]
    # The key never matches a message, the provider id arrives later.
    await store.commit(change(message_id, SENT, 2, provider_message_id="z"))

    [work] = await seed.claim_all(when=at(2))
    assert work.payload["status"] == "read"


async def test_one_report_problem_does_not_drop_the_others(store: Store, seed: Seed) -> None:
    message_id = await seed.message(await seed.run(), provider_message_id="ok")
    await store.ingest_status_reports([report(provider_message_id="ok", dedupe_key="seen")], at(1))

    outcomes = await store.ingest_status_reports(
        [
            report(provider_message_id="unknown"),
            report(provider_message_id="ok", dedupe_key="seen"),
            report(READ, provider_message_id="ok", dedupe_key="new"),
        ],
        at(2),
    )

    assert outcomes == ["pending", "duplicate", "queued"]
    statuses = [w.payload["status"] for w in await seed.claim_all(when=at(2))]
    assert statuses == ["delivered", "read"]
    assert (await store.find_message("sandbox", provider_message_id="ok")).id == message_id  # type: ignore[union-attr]


async def test_a_report_no_message_could_match_is_refused(store: Store, seed: Seed) -> None:
    with pytest.raises(ValueError, match="neither"):
        await store.ingest_status_reports([report(provider_message_id="fine"), report()], at(1))
    assert await store.ingest_status_reports([], at(1)) == []
    await store.commit(
        change(await seed.message(await seed.run()), None, 2, provider_message_id="fine")
    )
    assert await seed.claim_all(when=at(3)) == []


async def test_ambiguous_messages_are_listed_oldest_first_until_settled(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    later = await seed.message(run, status=MessageStatus.AMBIGUOUS, when=at(20))
    earlier = await seed.message(run, status=MessageStatus.AMBIGUOUS, when=at(10))
    await seed.message(run, status=MessageStatus.SENT, when=at(5))

    assert [m.id for m in await store.list_ambiguous_messages(limit=10)] == [earlier, later]
    assert [m.id for m in await store.list_ambiguous_messages(limit=1)] == [earlier]

    await store.commit(change(earlier, FAILED, 30))  # a report settled it

    assert [m.id for m in await store.list_ambiguous_messages(limit=10)] == [later]
