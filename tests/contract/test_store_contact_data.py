"""Contract: one person's data. Every run of a contact can be listed, and erasing
the contact deletes everything kept about them and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.errors import StaleFence
from engine.models import (
    ContactEvent,
    ContactUpsert,
    DueKind,
    MessageStatus,
    NewEvent,
    RunStatus,
    StatusReport,
)
from storage.base import Commit, Completion, Erased, NewMessage, Store
from tests.contract.store_kit import NOW, Seed

EARLIER = NOW - timedelta(days=3)


async def _kept_about(store: Store, contact_id: str, run_ids: list[str]) -> set[int]:
    """The ids of the events of the contact and of its runs."""
    found = await store.list_events(contact_id=contact_id)
    for run_id in run_ids:
        found += await store.list_events(run_id=run_id)
    return {event.id for event in found}


async def test_erasing_a_contact_deletes_its_runs_messages_events_and_due_work_only(
    store: Store, seed: Seed
) -> None:
    maria = await seed.contact(
        phone="+5511999998888", name="Maria Souza", context={"cpf": "123.456.789-09"}
    )
    done = await seed.run(maria.id, status=RunStatus.COMPLETED, when=EARLIER)
    read = await seed.message(
        done, status=MessageStatus.READ, provider_message_id="wamid.maria1", when=EARLIER
    )
    await store.commit(
        Commit(
            now=EARLIER,
            events=[NewEvent(kind="run.completed", at=EARLIER, run_id=done.id)],  # no contact
        )
    )
    waiting = await seed.run(maria.id, flow="nps", status=RunStatus.WAITING)
    sent = await seed.message(waiting, status=MessageStatus.SENT, provider_message_id="wamid.m2")
    await seed.due(DueKind.TIMER, run_id=waiting.id, due_at=NOW + timedelta(hours=2))
    # A report for the open run's message (STATUS work naming the message), a reply
    # (an event of the contact and INBOUND work for the open run) and a report that
    # came before its message was recorded (kept pending by the message's key).
    delivered = StatusReport(
        provider="sandbox", status=MessageStatus.DELIVERED, at=NOW, provider_message_id="wamid.m2"
    )
    assert await store.ingest_status_reports([delivered], NOW) == ["queued"]
    reply = ContactEvent(type="reply", at=NOW, contact_id=maria.id, text="quero pagar")
    assert await store.ingest_contact_events([reply], NOW) == ["queued"]
    early = StatusReport(
        provider="sandbox", status=MessageStatus.SENT, at=NOW, idempotency_key="nps:maria:2"
    )
    assert await store.ingest_status_reports([early], NOW) == ["pending"]
    queued = NewMessage(
        id="m-maria-queued",
        run_id=waiting.id,
        contact_id=maria.id,
        flow="nps",
        step="pergunta",
        step_seq=2,
        provider="sandbox",
        channel="whatsapp",
        idempotency_key="nps:maria:2",
    )
    await store.commit(Commit(now=NOW, new_messages=[queued]))
    # Someone else, whose rows must all stay.
    joao = await seed.contact(phone="+5511988887777", name="João")
    theirs = await seed.run(joao.id, status=RunStatus.WAITING)
    their_message = await seed.message(theirs, status=MessageStatus.SENT)
    await seed.due(DueKind.TIMER, run_id=theirs.id, due_at=NOW + timedelta(hours=1))
    their_reply = ContactEvent(type="reply", at=NOW, contact_id=joao.id, text="oi")
    assert await store.ingest_contact_events([their_reply], NOW) == ["queued"]
    their_events = await _kept_about(store, joao.id, [theirs.id])

    events = await _kept_about(store, maria.id, [done.id, waiting.id])
    claimed = await seed.claim_all(when=NOW + timedelta(hours=3))  # a worker holds them
    mine = [work for work in claimed if work.run_id == waiting.id or work.message_id == sent]
    assert {work.kind for work in mine} == {DueKind.TIMER, DueKind.STATUS, DueKind.INBOUND}

    erased = await store.erase_contact(maria.id, keep_opt_out=True, now=NOW)

    assert erased == Erased(
        runs=2, messages=3, events=len(events), due_work=len(mine), pending_statuses=1
    )
    assert await store.get_contact(maria.id) is None
    assert await store.find_contact_by_phone("+5511999998888") is None
    for run in (done, waiting):
        assert await store.get_run(run.id) is None
        assert await store.get_run_by_key(run.idempotency_key) is None
    for message_id in (read, sent, queued.id):
        assert await store.get_message(message_id) is None
    assert await store.find_message("sandbox", provider_message_id="wamid.maria1") is None
    assert await _kept_about(store, maria.id, [done.id, waiting.id]) == set()
    # The worker that held the contact's due work writes nothing.
    with pytest.raises(StaleFence):
        await store.commit(Commit(now=NOW, done=Completion(work=mine[0])))
    # Everything of the other contact is still there, their due work included.
    assert await store.get_contact(joao.id) is not None
    assert await store.get_run(theirs.id) is not None
    assert await store.get_message(their_message) is not None
    assert await _kept_about(store, joao.id, [theirs.id]) == their_events
    theirs_claimed = [w for w in claimed if w.run_id == theirs.id]
    for work in theirs_claimed:
        await store.commit(Commit(now=NOW, done=Completion(work=work)))
    # Erasing again finds nobody; the id can be used again from scratch.
    assert await store.erase_contact(maria.id, keep_opt_out=True, now=NOW) is None
    again = await seed.contact(maria.id, phone="+5511999998888")
    assert again.name is None
    assert again.context == {}


async def test_an_opted_out_contact_keeps_only_its_id_and_opt_out(store: Store, seed: Seed) -> None:
    ana = await seed.contact(
        phone="+5521977776666",
        name="Ana Lima",
        email="ana@example.com",
        tags=("vip",),
        context={"plano": "ouro"},
        timezone="America/Recife",
    )
    for event in (
        ContactEvent(type="reply", at=EARLIER, contact_id=ana.id, text="oi"),
        ContactEvent(type="opt_out", at=EARLIER, contact_id=ana.id, text="SAIR"),
    ):
        assert await store.ingest_contact_events([event], EARLIER) == ["queued"]
    run = await seed.run(ana.id, status=RunStatus.COMPLETED, when=EARLIER)

    erased = await store.erase_contact(ana.id, keep_opt_out=True, now=NOW)

    assert erased is not None
    assert (erased.runs, erased.opt_out_kept) == (1, True)
    bare = await store.get_contact(ana.id)
    assert bare is not None
    assert bare.opted_out_at == EARLIER
    assert (bare.phone, bare.email, bare.name, bare.tags, dict(bare.context)) == (
        None,
        None,
        None,
        (),
        {},
    )
    assert (bare.timezone, bare.last_inbound_at, bare.last_interaction_at) == (None, None, None)
    assert bare.updated_at == NOW
    assert await store.list_events(contact_id=ana.id) == []
    assert await store.get_run(run.id) is None
    # Whoever brings the id back finds the opt-out still in force.
    back = await store.upsert_contact(ContactUpsert(id=ana.id, phone="+5521977776666"), NOW)
    assert back.opted_out_at == EARLIER


async def test_forgetting_the_opt_out_deletes_the_contact_row_too(store: Store, seed: Seed) -> None:
    bia = await seed.contact(phone="+5531966665555")
    opt_out = ContactEvent(type="opt_out", at=EARLIER, contact_id=bia.id, text="PARAR")
    assert await store.ingest_contact_events([opt_out], EARLIER) == ["queued"]

    erased = await store.erase_contact(bia.id, keep_opt_out=False, now=NOW)

    assert erased == Erased(events=1)
    assert await store.get_contact(bia.id) is None


async def test_erasing_a_contact_nobody_stored_writes_nothing(store: Store) -> None:
    assert await store.erase_contact("ninguem", keep_opt_out=True, now=NOW) is None
    assert await store.get_contact("ninguem") is None


async def test_every_run_of_a_contact_is_listed_oldest_first_and_only_theirs(
    store: Store, seed: Seed
) -> None:
    maria = await seed.contact()
    first = await seed.run(maria.id, status=RunStatus.COMPLETED, when=EARLIER)
    second = await seed.run(maria.id, flow="nps", status=RunStatus.WAITING)
    await seed.run()  # someone else's

    runs = await store.list_contact_runs(maria.id)

    assert [(r.id, r.status) for r in runs] == [
        (first.id, RunStatus.COMPLETED),
        (second.id, RunStatus.WAITING),
    ]
    assert await store.list_contact_runs("ninguem") == []
