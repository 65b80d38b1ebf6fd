"""Contract: due work is claimed with a lease and a fence, and completed under it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from engine.errors import StaleFence
from engine.models import DueKind, DueWork, NewEvent
from storage.base import Commit, Completion, Store
from tests.contract.store_kit import NOW, Seed, at

MICROSECOND = timedelta(microseconds=1)


async def test_claim_takes_due_rows_in_due_order_with_a_lease_and_a_new_fence(
    store: Store, seed: Seed
) -> None:
    await seed.due(due_at=at(5), payload={"n": 3})
    await seed.due(due_at=at(-10), payload={"n": 1})
    await seed.due(due_at=at(5), payload={"n": 4})
    await seed.due(due_at=at(0), payload={"n": 2})
    await seed.due(due_at=at(6), payload={"n": 5})

    claimed = await store.claim_due_work(owner="node-a", now=at(5), lease_seconds=30, limit=10)

    assert [w.payload["n"] for w in claimed] == [1, 2, 3, 4]
    assert {(w.lease_owner, w.lease_until, w.fence) for w in claimed} == {("node-a", at(35), 1)}
    assert await store.claim_due_work(owner="node-b", now=at(5), lease_seconds=30, limit=10) == []


async def test_claim_respects_the_limit(store: Store, seed: Seed) -> None:
    for n in range(5):
        await seed.due(due_at=at(n), payload={"n": n})

    first = await store.claim_due_work(owner="a", now=at(10), lease_seconds=30, limit=2)
    rest = await store.claim_due_work(owner="a", now=at(10), lease_seconds=30, limit=10)

    assert [w.payload["n"] for w in first] == [0, 1]
    assert [w.payload["n"] for w in rest] == [2, 3, 4]
    assert await store.claim_due_work(owner="a", now=at(10), lease_seconds=30, limit=0) == []


async def test_work_of_runs_under_way_is_claimed_before_runs_waiting_to_start(
    store: Store, seed: Seed
) -> None:
    # A 200,000-row CSV leaves its START rows due from the moment it ran: claimed
    # oldest first, every one was entered before the first message went out, and an
    # API run's message, a timer or a cron firing waited minutes behind them.
    for n in range(3):
        await seed.due(DueKind.START, due_at=at(-60 + n), payload={"n": f"start-{n}"})
    await seed.due(DueKind.DISPATCH, due_at=at(0), payload={"n": "send"})
    await seed.due(DueKind.CRON, due_at=at(1), payload={"n": "cron"})
    await seed.due(DueKind.DISPATCH, due_at=at(99), payload={"n": "later"})
    # The chunks that write START rows take their turn among them.
    await seed.due(DueKind.FANOUT, due_at=at(-59), payload={"n": "fanout"})
    await seed.due(DueKind.SWEEP, due_at=at(-70), payload={"n": "sweep"})

    first = await store.claim_due_work(owner="a", now=at(5), lease_seconds=30, limit=3)
    rest = await store.claim_due_work(owner="a", now=at(5), lease_seconds=30, limit=10)

    assert [w.payload["n"] for w in first] == ["send", "cron", "sweep"]
    assert [w.payload["n"] for w in rest] == ["start-0", "start-1", "fanout", "start-2"]


async def test_an_expired_lease_is_claimable_just_after_it_ends(store: Store, seed: Seed) -> None:
    await seed.due()
    [first] = await seed.claim_all(owner="node-a", when=NOW)

    assert await store.next_due_at() == at(30) + MICROSECOND
    assert await seed.claim_all(owner="node-b", when=at(30)) == []
    [again] = await seed.claim_all(owner="node-b", when=at(30) + MICROSECOND)

    assert (again.id, again.lease_owner, again.fence) == (first.id, "node-b", first.fence + 1)


async def test_a_stale_fence_cannot_complete_and_writes_nothing(store: Store, seed: Seed) -> None:
    run = await seed.run()
    await seed.due(run_id=run.id)
    [stale] = await seed.claim_all(owner="node-a", when=NOW)
    [fresh] = await seed.claim_all(owner="node-b", when=at(31))
    late_event = NewEvent(kind="timer", at=at(40), run_id=run.id)

    with pytest.raises(StaleFence):
        await store.commit(Commit(now=at(40), done=Completion(work=stale), events=[late_event]))

    assert await store.list_events(run_id=run.id) == []
    await store.commit(Commit(now=at(41), done=Completion(work=fresh), events=[late_event]))
    assert len(await store.list_events(run_id=run.id)) == 1
    assert await store.next_due_at() is None
    with pytest.raises(StaleFence):  # the row is gone now
        await store.commit(Commit(now=at(42), done=Completion(work=fresh)))


async def test_retry_at_gives_the_row_back_later(store: Store, seed: Seed) -> None:
    await seed.due(DueKind.DISPATCH, payload={"try": 1})
    [work] = await seed.claim_all()

    await store.commit(
        Commit(now=at(1), done=Completion(work=work, retry_at=at(120), payload={"try": 2}))
    )

    assert await store.next_due_at() == at(120)
    assert await seed.claim_all(when=at(119)) == []
    [again] = await seed.claim_all(owner="node-b", when=at(120))
    assert (again.id, again.attempts, again.payload, again.due_at) == (
        work.id,
        1,
        {"try": 2},
        at(120),
    )
    assert again.fence == work.fence + 1


async def test_retry_without_payload_keeps_it(store: Store, seed: Seed) -> None:
    await seed.due(payload={"keep": True})
    [work] = await seed.claim_all()

    await store.commit(Commit(now=at(1), done=Completion(work=work, retry_at=at(2))))

    [again] = await seed.claim_all(when=at(2))
    assert again.payload == {"keep": True}


async def test_extend_leases_only_for_rows_still_held(store: Store, seed: Seed) -> None:
    for _ in range(3):
        await seed.due()
    held = await seed.claim_all(owner="node-a")
    lost = held[2]
    [taken] = await store.claim_due_work(owner="node-b", now=at(31), lease_seconds=30, limit=1)
    assert taken.id == held[0].id

    extended = await store.extend_leases(owner="node-a", work=held, until=at(90))

    assert extended == {held[1].id, lost.id}
    assert await store.extend_leases(owner="node-a", work=[], until=at(90)) == set()
    # node-b holds its row until 61, node-a the extended ones until 90.
    assert await store.claim_due_work(owner="node-c", now=at(60), lease_seconds=30, limit=10) == []


async def test_cancel_timers_drops_only_the_runs_unclaimed_timers(store: Store, seed: Seed) -> None:
    run = await seed.run()
    other = await seed.run()
    await seed.due(DueKind.TIMER, run_id=run.id, due_at=at(0), payload={"n": "held"})
    [held] = await seed.claim_all(owner="node-a")
    await seed.due(DueKind.TIMER, run_id=run.id, due_at=at(60), payload={"n": "timer"})
    await seed.due(DueKind.INBOUND, run_id=run.id, due_at=at(60), payload={"n": "inbound"})
    await seed.due(DueKind.TIMER, run_id=other.id, due_at=at(60), payload={"n": "other"})

    await store.commit(Commit(now=at(1), cancel_timers_of_run=run.id))

    await store.commit(Commit(now=at(2), done=Completion(work=held)))  # still there
    remaining = await seed.claim_all(owner="node-b", when=at(60))
    assert sorted(w.payload["n"] for w in remaining) == ["inbound", "other"]


async def test_cancel_all_drops_every_unclaimed_row_of_the_run_but_its_own(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    await seed.due(DueKind.TIMER, run_id=run.id, payload={"n": "own"})
    [own] = await seed.claim_all()
    for kind in (DueKind.TIMER, DueKind.INBOUND, DueKind.DISPATCH):
        await seed.due(kind, run_id=run.id, due_at=at(10))
    await seed.due(DueKind.CALLBACK, due_at=at(10), payload={"n": "no run"})

    await store.commit(
        Commit(now=at(1), done=Completion(work=own, retry_at=at(5)), cancel_all_due_of_run=run.id)
    )

    remaining = await seed.claim_all(owner="node-b", when=at(10))
    assert sorted(w.payload["n"] for w in remaining) == ["no run", "own"]


async def test_next_due_at_is_the_earliest_claimable_moment(store: Store, seed: Seed) -> None:
    assert await store.next_due_at() is None
    await seed.due(due_at=at(300))
    await seed.due(due_at=at(-5))
    assert await store.next_due_at() == at(-5)

    await seed.claim_all(when=NOW)  # the row due at -5 is leased until +30

    assert await store.next_due_at() == at(30) + MICROSECOND


async def test_two_claimers_on_one_database_never_get_the_same_row(
    store: Store, seed: Seed, another_store: Callable[[], Awaitable[Store]]
) -> None:
    for n in range(120):  # 8 rounds of 7 + 7, then 7 + 1: both claim in every round
        await seed.due(due_at=at(n % 7), payload={"n": n})
    second = await another_store()
    claimed: list[DueWork] = []

    def claim(claimer: Store, owner: str) -> Awaitable[list[DueWork]]:
        return claimer.claim_due_work(owner=owner, now=at(10), lease_seconds=30, limit=7)

    while True:  # both claim at the same moment, round after round
        first, other = await asyncio.gather(claim(store, "a"), claim(second, "b"))
        if not first and not other:
            break
        assert first
        assert other
        claimed += first + other

    ids = [w.id for w in claimed]
    assert len(ids) == len(set(ids)) == 120


async def test_bring_sends_forward_moves_the_runs_later_sends_nobody_holds(
    store: Store, seed: Seed
) -> None:
    # An agent ended the attendance a send was deferred for: it is decided again now.
    run = await seed.run()
    other = await seed.run()
    await seed.due(DueKind.DISPATCH, due_at=at(3600), run_id=run.id, payload={"n": "held"})
    await seed.due(DueKind.DISPATCH, due_at=at(7200), run_id=run.id, payload={"n": "held-2"})
    await seed.due(DueKind.TIMER, due_at=at(600), run_id=run.id, payload={"n": "timer"})
    await seed.due(DueKind.DISPATCH, due_at=at(3600), run_id=other.id, payload={"n": "other"})

    moved = await store.bring_sends_forward(run.id, at(10))

    assert moved == 2
    claimed = await store.claim_due_work(owner="b", now=at(10), lease_seconds=30, limit=10)
    assert sorted(w.payload["n"] for w in claimed) == ["held", "held-2"]
    assert {w.due_at for w in claimed} == {at(10)}
