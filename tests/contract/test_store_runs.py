"""Contract: runs and the atomic Commit (idempotent creation, exclusivity, versions)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import Conflict, NotFound, StaleRun
from engine.models import DueKind, MessageStatus, NewDueWork, NewEvent, RunStatus
from storage.base import Commit, MessageChange, NewMessage, NewRun, RunChange, Store
from storage.run_message_reads import MessageState
from tests.contract.store_kit import NOW, Seed, at


def new_run(run_id: str, contact_id: str, key: str, **fields: Any) -> NewRun:
    values: dict[str, Any] = {
        "id": run_id,
        "flow": "cobranca",
        "flow_version": "v1",
        "contact_id": contact_id,
        "step": "lembrete",
        "status": RunStatus.ACTIVE,
        "idempotency_key": key,
        "vars": {"tentativa": 1, "valor": 16.7, "itens": ["a", "b"]},
        "step_seq": 1,
    }
    values.update(fields)
    return NewRun(**values)


def outbox(run_id: str, contact_id: str, message_id: str) -> dict[str, Any]:
    """What a run's first `send` step writes with it: message, dispatch row, event."""
    return {
        "new_messages": [
            NewMessage(
                id=message_id,
                run_id=run_id,
                contact_id=contact_id,
                flow="cobranca",
                step="lembrete",
                step_seq=1,
                provider="sandbox",
                channel="whatsapp",
                idempotency_key=f"{message_id}:key",
            )
        ],
        "new_due": [
            NewDueWork(kind=DueKind.DISPATCH, due_at=NOW, run_id=run_id, message_id=message_id)
        ],
        "events": [NewEvent(kind="run.started", at=NOW, contact_id=contact_id, run_id=run_id)],
    }


async def test_new_run_writes_the_run_and_its_outbox_together(store: Store, seed: Seed) -> None:
    contact = await seed.contact()

    result = await store.commit(
        Commit(now=NOW, new_run=new_run("r1", contact.id, "k1"), **outbox("r1", contact.id, "m1"))
    )

    assert result.created is True
    assert result.run is not None
    run = await store.get_run("r1")
    assert run == result.run
    assert (run.flow, run.flow_version, run.step, run.status) == (
        "cobranca",
        "v1",
        "lembrete",
        RunStatus.ACTIVE,
    )
    assert run.vars == {"tentativa": 1, "valor": 16.7, "itens": ["a", "b"]}
    assert run.created_at == run.updated_at == NOW
    message = await store.get_message("m1")
    assert message is not None
    assert message.status == "queued"
    assert [w.message_id for w in await seed.claim_all()] == ["m1"]
    assert [e.kind for e in await store.list_events(run_id="r1")] == ["run.started"]


async def test_same_idempotency_key_writes_nothing_and_returns_the_existing_run(
    store: Store, seed: Seed
) -> None:
    contact = await seed.contact()
    first = await store.commit(
        Commit(now=NOW, new_run=new_run("r1", contact.id, "k1"), **outbox("r1", contact.id, "m1"))
    )

    again = await store.commit(
        Commit(
            now=at(5),
            new_run=new_run("r2", contact.id, "k1"),
            **outbox("r2", contact.id, "m2"),
        )
    )

    assert again.created is False
    assert again.run == first.run
    assert await store.get_run("r2") is None
    assert await store.get_message("m2") is None
    assert len(await seed.claim_all()) == 1
    assert len(await store.list_events(contact_id=contact.id)) == 1


async def test_a_run_is_found_by_the_key_that_started_it(store: Store, seed: Seed) -> None:
    contact = await seed.contact()
    created = await store.commit(
        Commit(now=NOW, new_run=new_run("r1", contact.id, "k1"), **outbox("r1", contact.id, "m1"))
    )

    assert await store.get_run_by_key("k1") == created.run
    assert await store.get_run_by_key("k2") is None


async def test_exclusive_run_refused_while_another_is_open(store: Store, seed: Seed) -> None:
    contact = await seed.contact()
    open_run = await seed.run(contact.id, status=RunStatus.WAITING)

    with pytest.raises(Conflict):
        await store.commit(
            Commit(
                now=NOW,
                new_run=new_run("r-second", contact.id, "k-second"),
                **outbox("r-second", contact.id, "m-second"),
            )
        )

    assert await store.get_run("r-second") is None
    assert await store.get_message("m-second") is None
    assert [r.id for r in await store.list_open_runs(contact.id)] == [open_run.id]
    # Another flow, or a run allowed to overlap, is fine.
    await store.commit(Commit(now=NOW, new_run=new_run("r-other", contact.id, "k-o", flow="x")))
    await store.commit(
        Commit(now=NOW, new_run=new_run("r-many", contact.id, "k-m", exclusive=False))
    )
    assert len(await store.list_open_runs(contact.id)) == 3


async def test_exclusive_run_allowed_once_the_open_one_finished(store: Store, seed: Seed) -> None:
    contact = await seed.contact()
    done = await seed.run(contact.id)
    await store.commit(
        Commit(
            now=at(1),
            run=RunChange(
                run_id=done.id,
                expected_version=done.version,
                step=None,
                status=RunStatus.COMPLETED,
                step_seq=done.step_seq,
            ),
        )
    )

    result = await store.commit(Commit(now=at(2), new_run=new_run("r2", contact.id, "k2")))

    assert result.created is True
    assert [r.id for r in await store.list_open_runs(contact.id)] == ["r2"]


async def test_run_change_bumps_the_version_and_refuses_a_stale_one(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    change = RunChange(
        run_id=run.id,
        expected_version=run.version,
        step="espera",
        status=RunStatus.WAITING,
        step_seq=2,
        vars={"resposta": "sim"},
    )

    result = await store.commit(Commit(now=at(10), run=change))

    assert result.run is not None
    assert result.run.version == run.version + 1
    assert (result.run.step, result.run.step_seq, result.run.vars) == (
        "espera",
        2,
        {"resposta": "sim"},
    )
    assert result.run.updated_at == at(10)
    assert result.run.created_at == run.created_at
    assert await store.get_run(run.id) == result.run

    stale_event = NewEvent(kind="run.step", at=at(11), run_id=run.id)
    with pytest.raises(StaleRun):
        await store.commit(Commit(now=at(11), run=change, events=[stale_event]))
    assert await store.get_run(run.id) == result.run
    assert await store.list_events(run_id=run.id) == []


async def test_a_commit_failing_late_writes_nothing_of_its_earlier_parts(
    store: Store, seed: Seed
) -> None:
    run = await seed.run()
    taken = await seed.message(run)
    taken_key = (await store.get_message(taken)).idempotency_key  # type: ignore[union-attr]
    duplicate = NewMessage(
        id="m-dup",
        run_id=run.id,
        contact_id=run.contact_id,
        flow=run.flow,
        step="lembrete",
        step_seq=2,
        provider="sandbox",
        channel="whatsapp",
        idempotency_key=taken_key,
    )
    change = RunChange(
        run_id=run.id,
        expected_version=run.version,
        step="segundo",
        status=RunStatus.WAITING,
        step_seq=2,
    )

    with pytest.raises(Conflict):
        await store.commit(
            Commit(
                now=at(1),
                run=change,
                new_messages=[duplicate],
                events=[NewEvent(kind="run.step", at=at(1), run_id=run.id)],
            )
        )

    assert await store.get_run(run.id) == run
    assert await store.get_message("m-dup") is None
    assert await store.list_events(run_id=run.id) == []


async def test_a_message_of_an_unknown_run_is_refused(store: Store) -> None:
    orphan = NewMessage(
        id="m1",
        run_id="no-such-run",
        contact_id="c",
        flow="f",
        step="s",
        step_seq=1,
        provider="sandbox",
        channel="sms",
        idempotency_key="k",
    )

    with pytest.raises(NotFound):
        await store.commit(Commit(now=NOW, new_messages=[orphan]))

    assert await store.get_message("m1") is None


async def test_open_runs_and_run_messages_are_listed_oldest_first(store: Store, seed: Seed) -> None:
    contact = await seed.contact()
    first = await seed.run(contact.id, flow="a", when=at(1))
    second = await seed.run(contact.id, flow="b", when=at(2))
    await seed.run(contact.id, flow="c", status=RunStatus.COMPLETED, when=at(3))
    m1 = await seed.message(first, when=at(4))
    m2 = await seed.message(first, when=at(5))

    assert [r.id for r in await store.list_open_runs(contact.id)] == [first.id, second.id]
    assert [m.id for m in await store.list_run_messages(first.id)] == [m1, m2]
    assert await store.list_run_messages(second.id) == []
    assert await store.list_open_runs("nobody") == []


async def test_a_runs_queued_messages_are_listed_without_the_others(
    store: Store, seed: Seed
) -> None:
    contact = await seed.contact()
    run = await seed.run(contact.id, when=at(1))
    other = await seed.run(contact.id, flow="b", when=at(1))
    first = await seed.message(run, when=at(2))
    await seed.message(run, status=MessageStatus.SENT, when=at(3))
    last = await seed.message(run, when=at(4))
    await seed.message(other, when=at(5))

    queued = await store.list_queued_run_messages(run.id)

    assert [(m.id, m.status) for m in queued] == [
        (first, MessageStatus.QUEUED),
        (last, MessageStatus.QUEUED),
    ]
    assert await store.list_queued_run_messages("no-such-run") == []


async def test_a_contacts_newest_runs_messages_are_listed_in_one_read(
    store: Store, seed: Seed
) -> None:
    contact = await seed.contact()
    oldest = await seed.run(contact.id, flow="a", when=at(1))
    middle = await seed.run(contact.id, flow="b", status=RunStatus.COMPLETED, when=at(2))
    newest = await seed.run(contact.id, flow="c", when=at(3))
    await seed.run((await seed.contact()).id, flow="a", when=at(4))  # someone else's
    await seed.message(oldest, when=at(5))
    newest_first = await seed.message(newest, when=at(6))
    middle_only = await seed.message(middle, status=MessageStatus.SENT, when=at(7))
    newest_last = await seed.message(newest, when=at(8))

    both = await store.list_contact_messages(contact.id, runs=2)

    # Run by run, oldest run first; each run's messages oldest first.
    assert [m.id for m in both] == [middle_only, newest_first, newest_last]
    assert [m.run_id for m in both] == [middle.id, newest.id, newest.id]
    assert both[0].status == MessageStatus.SENT
    assert len(await store.list_contact_messages(contact.id, runs=50)) == 4
    assert await store.list_contact_messages("nobody", runs=50) == []


async def test_whether_another_message_of_a_run_has_a_status(store: Store, seed: Seed) -> None:
    contact = await seed.contact()
    run = await seed.run(contact.id, when=at(1))
    other = await seed.run(contact.id, flow="b", when=at(1))
    first = await seed.message(run, status=MessageStatus.DELIVERED, when=at(2))
    follow_up = await seed.message(run, when=at(3))
    await seed.message(other, status=MessageStatus.SENT, when=at(4))
    reached = {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ}

    assert await store.run_has_message_in(run.id, reached, besides=follow_up)
    assert not await store.run_has_message_in(run.id, reached, besides=first)  # only itself
    assert not await store.run_has_message_in(run.id, {MessageStatus.READ}, besides=follow_up)
    assert await store.run_has_message_in(run.id, {MessageStatus.QUEUED}, besides=first)


async def test_the_latest_message_before_a_step_is_read_without_its_payload(
    store: Store, seed: Seed
) -> None:
    contact = await seed.contact()
    run = await seed.run(contact.id, when=at(1))

    async def message(message_id: str, step_seq: int, when: float) -> None:
        new = NewMessage(
            id=message_id,
            run_id=run.id,
            contact_id=contact.id,
            flow=run.flow,
            step=f"passo{step_seq}",
            step_seq=step_seq,
            provider="sandbox",
            channel="whatsapp",
            idempotency_key=f"{run.id}:{message_id}",
        )
        await store.commit(Commit(now=at(when), new_messages=[new]))

    await message("m-first", 1, 2)
    await message("m-third", 3, 3)
    await message("m-third-again", 3, 4)  # same step entry, created later
    await message("m-fifth", 5, 5)
    read = MessageChange(message_id="m-third", at=at(6), status=MessageStatus.READ, force=True)
    await store.commit(Commit(now=at(6), messages=[read]))

    latest = await store.latest_message_before(run.id, 5)

    assert latest == MessageState("m-third", 3, MessageStatus.READ)
    assert await store.latest_message_before(run.id, 3) == MessageState(
        "m-first", 1, MessageStatus.QUEUED
    )
    assert await store.latest_message_before(run.id, 1) is None
    assert await store.latest_message_before("no-such-run", 9) is None
