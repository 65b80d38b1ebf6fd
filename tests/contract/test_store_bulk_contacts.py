"""Contract: the contacts a ``Store.start_runs`` carries (``disparo trigger`` CSV rows)
are written exactly as ``Store.upsert_contact`` writes them, and only for the
requests that start a run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from engine.models import Contact, ContactUpsert
from storage.base import BulkStart, BulkStartResult, Store
from tests.contract.store_kit import NOW, Seed
from tests.contract.test_store_bulk_starts import bulk


def bulk_with(upserts: list[ContactUpsert], *, exclusive: bool = False) -> BulkStart:
    """A start per upsert, each with its own key (``<contact>:<position>``)."""
    requests = [(u.id, f"csv:cobranca:{u.id}:{n}", {}) for n, u in enumerate(upserts)]
    return replace(bulk(requests, exclusive=exclusive), trigger="csv", contacts=upserts)


def profile(contact: Contact | None) -> dict[str, Any]:
    assert contact is not None
    return {
        "phone": contact.phone,
        "email": contact.email,
        "name": contact.name,
        "tags": sorted(contact.tags),
        "context": dict(contact.context),
        "timezone": contact.timezone,
    }


async def test_new_contacts_are_created_with_their_runs(store: Store) -> None:
    upserts = [
        ContactUpsert(id="c1", phone="+5511999998888", name="Maria", context={"valor": 10}),
        ContactUpsert(id="c2", email="joao@example.com", tags=("vip",)),
    ]

    result = await store.start_runs(bulk_with(upserts))

    assert result == BulkStartResult(started=2)
    assert profile(await store.get_contact("c1")) == {
        "phone": "+5511999998888",
        "email": None,
        "name": "Maria",
        "tags": [],
        "context": {"valor": 10},
        "timezone": None,
    }
    assert profile(await store.get_contact("c2"))["tags"] == ["vip"]
    assert len(await store.list_open_runs("c2")) == 1


async def test_an_update_keeps_what_it_leaves_out_and_merges_the_context(
    store: Store, seed: Seed
) -> None:
    await seed.contact(
        "c1",
        phone="+5511999998888",
        email="maria@example.com",
        name="Maria",
        tags=("vip",),
        timezone="America/Manaus",
        context={"valor": 10, "plano": "ouro", "vencimento": "2026-11-30"},
    )

    await store.start_runs(
        bulk_with(
            [ContactUpsert(id="c1", name="Maria Souza", context={"valor": 20, "plano": None})]
        )
    )

    assert profile(await store.get_contact("c1")) == {
        "phone": "+5511999998888",
        "email": "maria@example.com",
        "name": "Maria Souza",
        "tags": ["vip"],
        "context": {"valor": 20, "vencimento": "2026-11-30"},
        "timezone": "America/Manaus",
    }


async def test_a_batch_writes_what_the_same_single_upserts_write(store: Store) -> None:
    steps = [
        ContactUpsert(id="x1", phone="+5511911112222", context={"a": 1, "b": 2}),
        ContactUpsert(id="x2", name="Ana", tags=("t1", "t2")),
        ContactUpsert(id="x1", name="Bia", context={"b": None, "c": 3}),
        ContactUpsert(id="x2", context={"z": "zz"}, replace_context=True),
        ContactUpsert(id="x1", email="bia@example.com", tags=("novo",)),
        ContactUpsert(id="x3"),
    ]
    for step in steps:
        await store.upsert_contact(replace(step, id=f"single-{step.id}"), NOW)

    await store.start_runs(bulk_with([replace(s, id=f"batch-{s.id}") for s in steps]))

    for contact in ("x1", "x2", "x3"):
        single = await store.get_contact(f"single-{contact}")
        batch = await store.get_contact(f"batch-{contact}")
        assert profile(batch) == profile(single), contact
    assert profile(await store.get_contact("batch-x1"))["context"] == {"a": 1, "c": 3}


async def test_requests_that_start_nothing_leave_their_contact_untouched(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1", name="Maria", context={"valor": 10})
    await seed.contact("c2", name="João", context={"valor": 20})
    first = bulk_with([ContactUpsert(id="c1", name="Maria", context={"valor": 10})])
    await store.start_runs(first)
    await store.start_runs(
        bulk_with([ContactUpsert(id="c2", context={"valor": 21})], exclusive=True)
    )

    # c1: the same key again, with other data; c2: already in the exclusive flow.
    again = await store.start_runs(
        replace(first, contacts=[ContactUpsert(id="c1", name="Outra", context={"valor": 99})])
    )
    refused = await store.start_runs(
        replace(
            bulk_with([ContactUpsert(id="c2", name="Outro")], exclusive=True),
            requests=[("c2", "csv:cobranca:c2:other", {})],
        )
    )

    assert (again.existing, refused.already_active) == (1, ("c2",))
    assert profile(await store.get_contact("c1"))["name"] == "Maria"
    assert profile(await store.get_contact("c1"))["context"] == {"valor": 10}
    assert profile(await store.get_contact("c2"))["name"] == "João"
    assert profile(await store.get_contact("c2"))["context"] == {"valor": 21}


async def test_contacts_that_do_not_match_the_requests_are_refused_naming_the_field(
    store: Store,
) -> None:
    starts = bulk_with([ContactUpsert(id="c1"), ContactUpsert(id="c2")])

    with pytest.raises(ValueError, match=r"contacts\[1\] has id 'c3'"):
        await store.start_runs(
            replace(starts, contacts=[ContactUpsert(id="c1"), ContactUpsert(id="c3")])
        )
    with pytest.raises(ValueError, match="got 1 contacts for 2 requests"):
        await store.start_runs(replace(starts, contacts=[ContactUpsert(id="c1")]))

    assert await store.get_contacts(["c1", "c2", "c3"]) == {}
