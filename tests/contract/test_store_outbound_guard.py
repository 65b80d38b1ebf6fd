"""Contract: the ``OutboundGuard`` of a ``sending`` commit (``max_per_day`` and
``recent_contact`` checked again as the send begins). A refused commit writes nothing;
two stores (two processes) committing sends of one contact at once let through only
what the counts allow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from engine.errors import OutboundChanged
from engine.models import MessageStatus, NewEvent, Run
from storage.base import Commit, MessageChange, OutboundGuard, Store
from tests.contract.store_kit import NOW, Seed, at

QUEUED, SENDING, SENT = MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT
DAY_START = NOW - timedelta(hours=10)


def sending(run: Run, message_id: str, **guard: object) -> Commit:
    """The commit that makes a queued message ``sending``, with its guard and event."""
    return Commit(
        now=NOW,
        messages=[
            MessageChange(
                message_id=message_id,
                at=NOW,
                status=SENDING,
                expected_status=QUEUED,
                attempts=1,
            )
        ],
        events=[
            NewEvent(
                kind="decision", at=NOW, contact_id=run.contact_id, run_id=run.id, data={"m": 1}
            )
        ],
        guard=OutboundGuard(
            contact_id=run.contact_id,
            message_id=message_id,
            run_id=run.id,
            **guard,  # type: ignore[arg-type]
        ),
    )


async def test_max_per_day_refuses_the_send_past_the_cap_and_writes_nothing(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    await seed.message(run, status=SENT, when=at(-60))  # left today
    await seed.message(run, status=SENT, when=DAY_START - timedelta(minutes=1))  # yesterday
    await seed.message(run, status=SENDING, when=at(-5))  # on its way
    waiting = await seed.message(run, status=QUEUED)

    with pytest.raises(OutboundChanged, match="max_per_day 2 is reached"):
        await store.commit(sending(run, waiting, day_start=DAY_START, max_per_day=2))

    message = await store.get_message(waiting)
    assert message is not None
    assert message.status == QUEUED
    assert message.attempts == 0
    assert await store.list_events(run_id=run.id, kind_prefix="decision") == []

    await store.commit(sending(run, waiting, day_start=DAY_START, max_per_day=3))
    message = await store.get_message(waiting)
    assert message is not None
    assert message.status == SENDING


async def test_recent_contact_refuses_while_another_runs_send_is_on_its_way(
    store: Store, seed: Seed
) -> None:
    first = await seed.run()
    await seed.message(first, status=SENDING, when=at(-1))  # this run's own: not counted
    other = await seed.run(first.contact_id, exclusive=False)
    await seed.message(other, status=SENT, when=at(-5 * 3600))  # left before the span
    waiting = await seed.message(first, status=QUEUED)
    since = NOW - timedelta(hours=4)

    await store.commit(sending(first, waiting, recent_since=since))  # passes

    later = await seed.message(first, status=QUEUED)
    await seed.message(other, status=SENDING, when=at(-2))
    with pytest.raises(OutboundChanged, match="recent_contact"):
        await store.commit(sending(first, later, recent_since=since))
    message = await store.get_message(later)
    assert message is not None
    assert message.status == QUEUED


async def test_two_stores_committing_sends_of_one_contact_at_once_let_one_through(
    store: Store, seed: Seed, another_store: Callable[[], Awaitable[Store]]
) -> None:
    run = await seed.run()
    waiting = [await seed.message(run, status=QUEUED) for _ in range(6)]
    stores = [store, await another_store(), await another_store()]

    async def attempt(which: int, message_id: str) -> bool:
        try:
            await stores[which % 3].commit(
                sending(run, message_id, day_start=DAY_START, max_per_day=1)
            )
        except OutboundChanged:
            return False
        return True

    through = await asyncio.gather(*(attempt(n, m) for n, m in enumerate(waiting)))

    assert sum(through) == 1
    statuses = [(await store.get_message(m)) for m in waiting]
    assert sorted(str(m.status) for m in statuses if m is not None) == ["queued"] * 5 + ["sending"]
