"""Contract: the trigger verbs of the store — the keyed schedule of trigger rows, cron
firings recorded once, and the contact pages fan-outs and sweeps walk."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from engine.errors import Conflict, StaleFence
from engine.models import ContactEvent, DueKind, NewDueWork, NewEvent
from storage.base import Commit, Completion, ContactChange, Store, TriggerFiring
from tests.contract.store_kit import NOW, Seed, at


def cron_row(due_in: float = 60, **payload: object) -> NewDueWork:
    return NewDueWork(kind=DueKind.CRON, due_at=at(due_in), payload={"flow": "f", **payload})


def sweep_row(due_in: float = 0) -> NewDueWork:
    return NewDueWork(kind=DueKind.SWEEP, due_at=at(due_in), payload={"flow": "g"})


# ------------------------------------------------------------------ schedule


async def test_scheduling_inserts_missing_keys_and_keeps_stored_rows_as_they_are(
    store: Store, seed: Seed
) -> None:
    added = await store.schedule_triggers({"cron:f:0": cron_row(), "after:g:1": sweep_row()}, NOW)
    claimed = await seed.claim_all(when=at(60))
    cron = next(w for w in claimed if w.kind == DueKind.CRON)
    # The handler moves the row on: next fire time and state in its payload.
    await store.commit(
        Commit(
            now=at(60),
            done=Completion(work=cron, retry_at=at(3600), payload={"flow": "f", "fire": 2}),
        )
    )

    again = await store.schedule_triggers({"cron:f:0": cron_row(), "after:g:1": sweep_row()}, NOW)

    assert sorted(added) == ["after:g:1", "cron:f:0"]
    assert {w.kind for w in claimed} == {DueKind.CRON, DueKind.SWEEP}
    assert again == []
    # The sweep row's lease ran out and it comes back; the cron row waits for its time.
    assert [w.kind for w in await seed.claim_all(when=at(3599))] == [DueKind.SWEEP]
    (moved,) = await seed.claim_all(when=at(3600))
    assert (moved.kind, dict(moved.payload)) == (DueKind.CRON, {"flow": "f", "fire": 2})


async def test_scheduling_drops_keyed_rows_not_wanted_and_never_touches_other_rows(
    store: Store, seed: Seed
) -> None:
    await store.schedule_triggers({"cron:f:0:old": cron_row(0), "after:g:1": sweep_row()}, NOW)
    await seed.due(DueKind.TIMER, payload={"n": 1})
    await seed.due(DueKind.FANOUT, payload={"n": 2})

    added = await store.schedule_triggers(
        {"cron:f:0:new": cron_row(0, edited=True), "after:g:1": sweep_row()}, NOW
    )
    claimed = await seed.claim_all(when=at(60))

    assert added == ["cron:f:0:new"]
    kinds = sorted((str(w.kind), dict(w.payload).get("edited", False)) for w in claimed)
    assert kinds == [("cron", True), ("fanout", False), ("sweep", False), ("timer", False)]


async def test_a_dropped_row_that_was_being_handled_cannot_be_completed(
    store: Store, seed: Seed
) -> None:
    await store.schedule_triggers({"cron:f:0": cron_row(0)}, NOW)
    (held,) = await seed.claim_all()

    await store.schedule_triggers({}, NOW)

    with pytest.raises(StaleFence):
        await store.commit(Commit(now=NOW, done=Completion(work=held, retry_at=at(60))))
    assert await seed.claim_all(when=at(3600)) == []


async def test_engines_scheduling_at_once_store_each_key_once(
    store: Store, another_store: Callable[[], Awaitable[Store]], seed: Seed
) -> None:
    second = await another_store()
    wanted = {"cron:f:0": cron_row(0), "after:g:1": sweep_row()}

    results = await asyncio.gather(
        store.schedule_triggers(wanted, NOW), second.schedule_triggers(wanted, NOW)
    )

    assert sorted(k for added in results for k in added) == ["after:g:1", "cron:f:0"]
    assert len(await seed.claim_all(when=at(60))) == 2


async def test_stored_trigger_rows_are_read_back_with_their_state_by_key(
    store: Store, seed: Seed
) -> None:
    await store.schedule_triggers(
        {"cron:f:0:a": cron_row(60, fire_time="t1"), "after:g:1:b": sweep_row()}, NOW
    )
    await seed.due(DueKind.FANOUT, payload={"n": 2})  # not a keyed row: not listed
    claimed = await seed.claim_all(when=at(60))
    cron = next(w for w in claimed if w.kind == DueKind.CRON)
    await store.commit(
        Commit(
            now=at(60),
            done=Completion(work=cron, retry_at=at(3600), payload={"flow": "f", "fire_time": "t2"}),
        )
    )

    stored = await store.stored_triggers()

    assert [(s.key, s.kind) for s in stored] == [
        ("after:g:1:b", DueKind.SWEEP),
        ("cron:f:0:a", DueKind.CRON),
    ]
    # A leased row is listed too, with what was last committed.
    assert (stored[1].due_at, dict(stored[1].payload)) == (
        at(3600),
        {"flow": "f", "fire_time": "t2"},
    )
    assert dict(stored[0].payload) == {"flow": "g"}


async def test_the_last_firing_of_a_trigger_is_its_newest_fire_time(store: Store) -> None:
    for trigger, fire in ((0, at(0)), (0, at(86400)), (0, at(3600)), (1, at(2 * 86400))):
        await store.commit(
            Commit(now=NOW, firing=TriggerFiring(flow="f", trigger=trigger, fire_time=fire))
        )

    assert await store.last_firing("f", 0) == at(86400)
    assert await store.last_firing("f", 1) == at(2 * 86400)
    assert await store.last_firing("f", 2) is None
    assert await store.last_firing("g", 0) is None


# ------------------------------------------------------------------ firings


async def test_a_fire_time_fires_once_and_a_repeat_writes_nothing(store: Store, seed: Seed) -> None:
    fire = at(0)

    def firing_commit(n: int) -> Commit:
        return Commit(
            now=NOW,
            firing=TriggerFiring(flow="f", trigger=1, fire_time=fire),
            new_due=[NewDueWork(kind=DueKind.FANOUT, due_at=NOW, payload={"n": n})],
            events=[NewEvent(kind="trigger.fired", at=NOW, data={"n": n})],
        )

    await store.commit(firing_commit(1))
    with pytest.raises(Conflict):
        await store.commit(firing_commit(2))
    # Another trigger of the flow, or another fire time, is a different firing.
    await store.commit(Commit(now=NOW, firing=TriggerFiring(flow="f", trigger=2, fire_time=fire)))
    await store.commit(Commit(now=NOW, firing=TriggerFiring(flow="f", trigger=1, fire_time=at(60))))

    claimed = await seed.claim_all()
    events = await store.list_events(kind_prefix="trigger.")
    assert [dict(w.payload) for w in claimed] == [{"n": 1}]
    assert [dict(e.data) for e in events] == [{"n": 1}]


async def test_a_firing_with_a_stale_fence_is_not_recorded(store: Store, seed: Seed) -> None:
    await store.schedule_triggers({"cron:f:0": cron_row(0)}, NOW)
    (first,) = await seed.claim_all(owner="a")
    (second,) = await seed.claim_all(owner="b", when=at(31))
    firing = TriggerFiring(flow="f", trigger=0, fire_time=at(0))

    with pytest.raises(StaleFence):
        await store.commit(Commit(now=at(31), done=Completion(work=first), firing=firing))
    await store.commit(Commit(now=at(31), done=Completion(work=second), firing=firing))


# ------------------------------------------------------------------ contact pages


async def test_contacts_page_in_id_order_after_a_cursor(store: Store, seed: Seed) -> None:
    for contact_id in ("c-3", "c-1", "b-9", "c-2", "c-10"):
        await seed.contact(contact_id, context={"n": contact_id})

    first = await store.page_contacts(after=None, limit=2)
    second = await store.page_contacts(after=first[-1].id, limit=2)
    third = await store.page_contacts(after=second[-1].id, limit=2)

    assert [c.id for c in first] == ["b-9", "c-1"]
    assert [c.id for c in second] == ["c-10", "c-2"]
    assert [c.id for c in third] == ["c-3"]
    assert third[0].context == {"n": "c-3"}
    assert await store.page_contacts(after="c-3", limit=2) == []
    assert await store.page_contacts(after=None, limit=0) == []


async def replied(store: Store, seed: Seed, contact_id: str, seconds: float) -> None:
    await seed.contact(contact_id)
    await store.ingest_contact_events(
        [ContactEvent(type="reply", at=at(seconds), contact_id=contact_id, text="oi")], NOW
    )


async def test_the_window_holds_contacts_whose_timestamp_is_in_it_in_time_order(
    store: Store, seed: Seed
) -> None:
    await replied(store, seed, "c-1", 30)
    await replied(store, seed, "c-2", 10)
    await replied(store, seed, "c-3", 20)
    await replied(store, seed, "c-4", 20)
    await replied(store, seed, "c-5", 50)
    await seed.contact("never-wrote")

    found = await store.window_page("last_inbound_at", above=at(10), up_to=at(30), limit=10)
    everyone = await store.window_page("last_inbound_at", above=None, up_to=None, limit=10)

    assert [c.id for c, _ in found] == ["c-3", "c-4", "c-1"]  # (10, 30]: c-2 is at 10
    assert found[0][1] == at(20)
    assert [c.id for c, _ in everyone] == ["c-2", "c-3", "c-4", "c-1", "c-5"]


async def test_the_window_pages_with_a_timestamp_and_id_cursor(store: Store, seed: Seed) -> None:
    for n in range(5):
        await replied(store, seed, f"c-{n}", 20 if n < 4 else 40)

    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await store.window_page(
            "last_inbound_at", above=at(0), up_to=at(40), cursor=cursor, limit=2
        )
        if not page:
            break
        pages.append([c.id for c, _ in page])
        last, stamp = page[-1]
        cursor = (stamp, last.id)

    assert pages == [["c-0", "c-1"], ["c-2", "c-3"], ["c-4"]]


async def test_the_window_reads_interaction_and_outbound_timestamps_too(
    store: Store, seed: Seed
) -> None:
    await seed.contact("talked")
    await seed.contact("messaged")
    await store.ingest_contact_events(
        [ContactEvent(type="interaction", at=at(5), contact_id="talked")], NOW
    )
    await store.commit(
        Commit(now=NOW, contact=ContactChange(contact_id="messaged", last_outbound_at=at(7)))
    )

    talked = await store.window_page("last_interaction_at", above=None, up_to=at(10), limit=5)
    messaged = await store.window_page("last_outbound_at", above=at(6), up_to=None, limit=5)

    assert [c.id for c, _ in talked] == ["talked"]
    assert [c.id for c, _ in messaged] == ["messaged"]
    assert await store.window_page("last_inbound_at", above=None, up_to=None, limit=5) == []


async def test_trigger_rows_come_back_with_their_kind_and_payload(store: Store, seed: Seed) -> None:
    for kind in (DueKind.CRON, DueKind.FANOUT, DueKind.SWEEP):
        await seed.due(kind, payload={"kind": str(kind), "cursor": None})

    claimed = await seed.claim_all(when=NOW + timedelta(seconds=1))

    assert [(w.kind, dict(w.payload)) for w in claimed] == [
        (kind, {"kind": str(kind), "cursor": None})
        for kind in (DueKind.CRON, DueKind.FANOUT, DueKind.SWEEP)
    ]
