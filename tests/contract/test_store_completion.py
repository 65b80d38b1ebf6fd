"""Contract: completing due work checks its fence in the same write, and a commit
that cancels both a run's timers and all its rows drops each row once."""

from __future__ import annotations

import pytest

from engine.errors import StaleFence
from engine.models import DueKind, NewEvent
from storage.base import Commit, Completion, Store
from tests.contract.store_kit import NOW, Seed, at


async def test_a_stale_fence_cannot_reschedule_and_the_newer_claim_keeps_its_lease(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    await seed.due(run_id=run.id, payload={"try": 1})
    [stale] = await seed.claim_all(owner="node-a", when=NOW)
    [fresh] = await seed.claim_all(owner="node-b", when=at(31))
    late_event = NewEvent(kind="timer", at=at(40), run_id=run.id)

    with pytest.raises(StaleFence, match=f"claimed again \\(fence {fresh.fence}\\)"):
        await store.commit(
            Commit(
                now=at(40),
                done=Completion(work=stale, retry_at=at(50), payload={"try": 2}),
                events=[late_event],
            )
        )

    assert await store.list_events(run_id=run.id) == []
    # node-b still holds the row: nobody can claim it before its lease ends.
    assert await seed.claim_all(owner="node-c", when=at(60)) == []
    await store.commit(Commit(now=at(61), done=Completion(work=fresh, retry_at=at(70))))
    [again] = await seed.claim_all(owner="node-c", when=at(70))
    assert (again.id, again.payload, again.attempts) == (fresh.id, {"try": 1}, fresh.attempts + 1)


async def test_a_gone_row_is_named_gone(store: Store, seed: Seed) -> None:
    await seed.due()
    [work] = await seed.claim_all()
    await store.commit(Commit(now=at(1), done=Completion(work=work)))

    with pytest.raises(StaleFence, match="is gone"):
        await store.commit(Commit(now=at(2), done=Completion(work=work, retry_at=at(9))))


async def test_cancelling_timers_and_all_rows_of_a_run_at_once_keeps_only_the_own_row(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    other = await seed.run(flow="outro", exclusive=False)
    await seed.due(DueKind.TIMER, run_id=run.id, payload={"n": "own"})
    [own] = await seed.claim_all()
    for kind in (DueKind.TIMER, DueKind.INBOUND, DueKind.DISPATCH):
        await seed.due(kind, run_id=run.id, due_at=at(10), payload={"n": str(kind)})
    await seed.due(DueKind.TIMER, run_id=other.id, due_at=at(10), payload={"n": "other run"})

    await store.commit(
        Commit(
            now=at(1),
            done=Completion(work=own, retry_at=at(5)),
            cancel_all_due_of_run=run.id,
            cancel_timers_of_run=run.id,
        )
    )

    remaining = await seed.claim_all(owner="node-b", when=at(10))
    assert sorted(w.payload["n"] for w in remaining) == ["other run", "own"]
