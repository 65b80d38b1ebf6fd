"""Contract: contacts, their facts, contact events, the event log and flow versions."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from engine.errors import NotFound
from engine.models import Attendance, ContactEvent, ContactUpsert, DueKind, NewEvent, RunStatus
from storage.base import Commit, ContactChange, Store
from tests.contract.store_kit import NOW, Seed, at


def event(kind: str, when: float, **kw: object) -> ContactEvent:
    fields: dict[str, object] = {"type": kind, "at": at(when), "contact_id": "c1"}
    fields.update(kw)
    return ContactEvent(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- contacts


async def test_upsert_creates_then_changes_only_what_is_given(store: Store) -> None:
    created = await store.upsert_contact(
        ContactUpsert(
            id="c1",
            phone="+5511999998888",
            name="Maria Souza",
            tags=("vip",),
            context={"valor": 1670, "plano": "ouro"},
            timezone="America/Sao_Paulo",
        ),
        NOW,
    )
    changed = await store.upsert_contact(
        ContactUpsert(id="c1", email="maria@example.com", context={"valor": 1800, "plano": None}),
        at(60),
    )

    assert created.created_at == created.updated_at == NOW
    assert (changed.phone, changed.name, changed.email) == (
        "+5511999998888",
        "Maria Souza",
        "maria@example.com",
    )
    assert changed.tags == ("vip",)
    assert changed.timezone == "America/Sao_Paulo"
    assert changed.context == {"valor": 1800}
    assert (changed.created_at, changed.updated_at) == (NOW, at(60))
    assert await store.get_contact("c1") == changed


async def test_upsert_can_replace_the_context_and_tags(store: Store, seed: Seed) -> None:
    await seed.contact("c1", tags=("a", "b"), context={"x": 1, "y": 2})

    replaced = await store.upsert_contact(
        ContactUpsert(id="c1", tags=(), context={"z": [1, 2]}, replace_context=True), NOW
    )

    assert replaced.context == {"z": [1, 2]}
    assert replaced.tags == ()


async def test_get_contacts_returns_the_known_ones(store: Store, seed: Seed) -> None:
    for contact_id in ("c1", "c2", "c3"):
        await seed.contact(contact_id)

    found = await store.get_contacts(["c3", "missing", "c1"])

    assert sorted(found) == ["c1", "c3"]
    assert found["c3"].id == "c3"
    assert await store.get_contacts([]) == {}
    assert len(await store.get_contacts([f"c{n}" for n in range(5000)])) == 3


async def test_find_contact_by_phone(store: Store, seed: Seed) -> None:
    await seed.contact("c1", phone="+5511999998888")

    found = await store.find_contact_by_phone("+5511999998888")

    assert found is not None
    assert found.id == "c1"
    assert await store.find_contact_by_phone("+5511000000000") is None


async def test_find_contacts_by_phone_returns_every_contact_with_it_oldest_first(
    store: Store,
) -> None:
    phone = "+5511999998888"
    # Created out of id order: the order is by creation time, then id.
    for contact_id, when in (("c-new", 60), ("c-old", 0), ("c-twin-b", 30), ("c-twin-a", 30)):
        await store.upsert_contact(ContactUpsert(id=contact_id, phone=phone), at(when))
    await store.upsert_contact(ContactUpsert(id="c-other", phone="+5511000000000"), NOW)
    await store.upsert_contact(ContactUpsert(id="c-none"), NOW)
    await store.upsert_contact(ContactUpsert(id="c-old", name="Maria"), at(90))  # not re-dated

    found = await store.find_contacts_by_phone(phone)

    assert [c.id for c in found] == ["c-old", "c-twin-a", "c-twin-b", "c-new"]
    assert found[0].name == "Maria"
    assert all(c.phone == phone for c in found)
    assert await store.find_contacts_by_phone("+5511777777777") == []
    oldest = await store.find_contact_by_phone(phone)
    assert oldest is not None
    assert oldest.id == "c-old"


async def test_a_phones_opt_outs_up_to_a_time_are_found_earliest_first(store: Store) -> None:
    phone = "+5511999998888"
    for contact_id in ("c-late", "c-b", "c-a", "c-never", "c-self"):
        await store.upsert_contact(ContactUpsert(id=contact_id, phone=phone), NOW)
    await store.upsert_contact(ContactUpsert(id="c-elsewhere", phone="+5511000000000"), NOW)
    stops = [("c-late", 90), ("c-b", 30), ("c-a", 30), ("c-elsewhere", 10)]
    for contact_id, when in stops:
        stop = ContactEvent(type="opt_out", at=at(when), contact_id=contact_id, text="SAIR")
        assert await store.ingest_contact_events([stop], at(when)) == ["queued"]

    found = await store.find_phone_opt_outs(phone, at(60))

    assert [c.id for c in found] == ["c-a", "c-b"]  # same time: by id
    assert [c.opted_out_at for c in found] == [at(30), at(30)]
    assert [c.id for c in await store.find_phone_opt_outs(phone, at(30))] == ["c-a", "c-b"]
    assert await store.find_phone_opt_outs(phone, at(29)) == []
    assert await store.find_phone_opt_outs("+5511777777777", at(600)) == []


async def test_contact_change_merges_context_and_keeps_the_latest_outbound(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1", context={"a": 1, "b": 2})
    attendance = Attendance(attendant="Ana", since=at(5), until=at(3600))

    await store.commit(
        Commit(
            now=at(10),
            contact=ContactChange(
                contact_id="c1",
                context_patch={"b": None, "c": {"d": 3}},
                last_outbound_at=at(10),
                attendance=attendance,
            ),
        )
    )
    await store.commit(
        Commit(now=at(20), contact=ContactChange(contact_id="c1", last_outbound_at=at(1)))
    )

    contact = await store.get_contact("c1")
    assert contact is not None
    assert contact.context == {"a": 1, "c": {"d": 3}}
    assert contact.last_outbound_at == at(10)
    assert contact.attendance == attendance
    assert contact.updated_at == at(20)
    with pytest.raises(NotFound):
        await store.commit(Commit(now=NOW, contact=ContactChange(contact_id="nobody")))


async def test_datetimes_round_trip_exactly(store: Store, seed: Seed) -> None:
    await seed.contact("c1")
    precise = NOW + timedelta(microseconds=123457)
    elsewhere = precise.astimezone(timezone(timedelta(hours=-3)))

    await store.commit(
        Commit(now=NOW, contact=ContactChange(contact_id="c1", last_outbound_at=elsewhere))
    )

    contact = await store.get_contact("c1")
    assert contact is not None
    assert contact.last_outbound_at == precise
    assert contact.last_outbound_at.utcoffset() == timedelta(0)


# ---------------------------------------------------------------- contact events


async def test_replies_move_the_facts_forward_only(store: Store, seed: Seed) -> None:
    await seed.contact("c1")

    outcomes = await store.ingest_contact_events(
        [event("reply", 100, text="oi"), event("button", 50, button_id="pagar")], at(200)
    )
    await store.ingest_contact_events([event("interaction", 150)], at(200))

    assert outcomes == ["queued", "queued"]
    contact = await store.get_contact("c1")
    assert contact is not None
    assert (contact.last_inbound_at, contact.last_interaction_at) == (at(100), at(150))


async def test_a_reply_by_sms_or_email_is_an_interaction_but_opens_no_whatsapp_window(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1")

    outcomes = await store.ingest_contact_events(
        [
            event("reply", 100, text="oi", channel="whatsapp"),
            event("reply", 150, text="ok", channel="sms"),
            event("button", 160, button_id="pagar", channel="email"),
        ],
        at(200),
    )

    assert outcomes == ["queued", "queued", "queued"]
    contact = await store.get_contact("c1")
    assert contact is not None
    # The 24 h window is WhatsApp's: only the WhatsApp reply opened it.
    assert (contact.last_inbound_at, contact.last_interaction_at) == (at(100), at(160))
    logged = await store.list_events(contact_id="c1", kind_prefix="inbound.", limit=10)
    assert sorted(e.kind for e in logged) == ["inbound.button", "inbound.reply", "inbound.reply"]
    assert {e.data.get("channel") for e in logged} == {"whatsapp", "sms", "email"}


async def test_attendance_and_opt_out_follow_the_newest_event(store: Store, seed: Seed) -> None:
    await seed.contact("c1")

    await store.ingest_contact_events(
        [
            event("attendance_started", 10, attendant="Ana", until=at(900)),
            event("opt_out", 20),
            event("opt_in", 30),
            event("opt_out", 25),  # older than the opt-in: arrives late, changes nothing
        ],
        at(40),
    )
    middle = await store.get_contact("c1")
    await store.ingest_contact_events(
        [event("attendance_ended", 50), event("attendance_started", 45), event("opt_out", 60)],
        at(70),
    )
    final = await store.get_contact("c1")

    assert middle is not None
    assert final is not None
    assert middle.attendance == Attendance(attendant="Ana", since=at(10), until=at(900))
    assert middle.opted_out_at is None
    assert final.attendance is None
    assert final.opted_out_at == at(60)


async def test_an_event_is_logged_and_queued_for_every_open_run(store: Store, seed: Seed) -> None:
    contact = await seed.contact("c1")
    first = await seed.run(contact.id, flow="a")
    second = await seed.run(contact.id, flow="b")
    await seed.run(contact.id, flow="c", status=RunStatus.COMPLETED)

    outcomes = await store.ingest_contact_events(
        [event("button", 5, button_id="pagar", text="Pagar agora", dedupe_key="wamid.7")],
        at(6),
    )

    assert outcomes == ["queued"]
    work = await seed.claim_all(when=at(6))
    assert sorted(w.run_id for w in work) == sorted([first.id, second.id])  # type: ignore[type-var]
    assert {w.kind for w in work} == {DueKind.INBOUND}
    assert {w.due_at for w in work} == {at(6)}
    payload = work[0].payload
    assert (payload["type"], payload["button_id"], payload["text"]) == (
        "button",
        "pagar",
        "Pagar agora",
    )
    assert payload["at"] == at(5).isoformat()
    [logged] = await store.list_events(contact_id="c1")
    assert (logged.kind, logged.at, logged.dedupe_key) == ("inbound.button", at(5), "wamid.7")
    assert logged.data["button_id"] == "pagar"


async def test_duplicates_and_unknown_contacts_change_nothing(store: Store, seed: Seed) -> None:
    await seed.contact("c1")
    await seed.run("c1")
    reply = event("reply", 5, text="sim", dedupe_key="d1")
    await store.ingest_contact_events([reply], at(6))

    outcomes = await store.ingest_contact_events(
        [event("reply", 9, text="sim", dedupe_key="d1"), event("reply", 9, contact_id="ghost")],
        at(10),
    )

    assert outcomes == ["duplicate", "unknown_contact"]
    assert len(await seed.claim_all(when=at(10))) == 1
    contact = await store.get_contact("c1")
    assert contact is not None
    assert contact.last_inbound_at == at(5)
    assert await store.get_contact("ghost") is None


async def test_an_event_without_a_contact_id_is_refused(store: Store, seed: Seed) -> None:
    await seed.contact("c1")

    with pytest.raises(ValueError, match="contact_id"):
        await store.ingest_contact_events(
            [event("reply", 1), event("reply", 2, contact_id=None, phone="+5511")], at(3)
        )

    assert await store.list_events(contact_id="c1") == []


# ---------------------------------------------------------------- event log and flows


async def test_list_events_is_newest_first_with_filters(store: Store, seed: Seed) -> None:
    run = await seed.run()
    other = await seed.run()
    kinds = ["run.started", "decision", "run.step", "decision", "run.finished"]
    await store.commit(
        Commit(
            now=NOW,
            events=[
                NewEvent(
                    kind=kind, at=at(n), contact_id=run.contact_id, run_id=run.id, data={"n": n}
                )
                for n, kind in enumerate(kinds)
            ]
            + [NewEvent(kind="decision", at=NOW, run_id=other.id)],
        )
    )

    everything = await store.list_events(run_id=run.id)
    runs_only = await store.list_events(contact_id=run.contact_id, kind_prefix="run.", limit=2)

    assert [e.data["n"] for e in everything] == [4, 3, 2, 1, 0]
    assert [e.kind for e in runs_only] == ["run.finished", "run.step"]
    assert len(await store.list_events(kind_prefix="decision")) == 3
    assert len(await store.list_events(limit=3)) == 3


async def test_an_event_with_a_seen_dedupe_key_is_dropped(store: Store) -> None:
    once = NewEvent(kind="decision", at=NOW, dedupe_key="same")

    await store.commit(Commit(now=NOW, events=[once, once]))
    await store.commit(Commit(now=NOW, events=[once]))

    assert len(await store.list_events()) == 1


async def test_flow_versions_are_kept_per_version(store: Store) -> None:
    await store.save_flow_version("cobranca", "v1", "flow: cobranca\n")
    await store.save_flow_version("cobranca", "v2", "flow: cobranca # 2\n")
    await store.save_flow_version("cobranca", "v1", "flow: cobranca\n")

    assert await store.get_flow_source("cobranca", "v1") == "flow: cobranca\n"
    assert await store.get_flow_source("cobranca", "v2") == "flow: cobranca # 2\n"
    assert await store.get_flow_source("cobranca", "v3") is None
