"""Contract: ``Store.start_run`` writes a contact and starts its run, or writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.errors import Conflict
from engine.models import Contact, ContactUpsert, RunStatus
from storage.base import Commit, Store
from tests.contract.store_kit import NOW, Seed, at
from tests.contract.test_store_runs import new_run, outbox


def starter(
    run_id: str, key: str, seen: list[Contact], **fields: Any
) -> Callable[[Contact], Commit]:
    """A ``build`` that records the contact it was given and creates run ``run_id``."""

    def build(contact: Contact) -> Commit:
        seen.append(contact)
        return Commit(
            now=NOW,
            new_run=new_run(run_id, contact.id, key, **fields),
            **outbox(run_id, contact.id, f"{run_id}-m"),
        )

    return build


async def test_the_contact_is_merged_and_built_on_then_written_with_its_run(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1", name="Maria", context={"plano": "ouro", "cidade": "Recife"})
    seen: list[Contact] = []

    result = await store.start_run(
        ContactUpsert(id="c1", phone="+5581999990001", context={"pedido": "P1", "cidade": None}),
        key="k1",
        flow="cobranca",
        exclusive=True,
        now=at(5),
        build=starter("r1", "k1", seen),
    )

    assert result.created is True
    assert result.run is not None
    assert result.run.id == "r1"
    # build saw the contact as stored after the upsert: merged, not as sent.
    assert [c.context for c in seen] == [{"plano": "ouro", "pedido": "P1"}]
    assert seen[0].name == "Maria"
    assert seen[0].phone == "+5581999990001"
    stored = await store.get_contact("c1")
    assert stored is not None
    assert stored.context == {"plano": "ouro", "pedido": "P1"}
    message = await store.get_message("r1-m")
    assert message is not None
    assert message.status == "queued"
    assert [w.message_id for w in await seed.claim_all()] == ["r1-m"]


async def test_a_new_contact_is_created(store: Store, seed: Seed) -> None:
    seen: list[Contact] = []
    result = await store.start_run(
        ContactUpsert(id="novo", phone="+5511988887777", name="Ana"),
        key=None,
        flow="cobranca",
        exclusive=False,
        now=NOW,
        build=starter("r1", "auto:r1", seen),
    )
    assert result.created is True
    stored = await store.get_contact("novo")
    assert stored is not None
    assert stored.name == "Ana"
    assert seen[0].id == "novo"


async def test_a_key_already_used_returns_its_run_and_writes_nothing(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1", context={"pedido": "P1"})
    seen: list[Contact] = []
    first = await store.start_run(
        ContactUpsert(id="c1"),
        key="k1",
        flow="cobranca",
        exclusive=False,
        now=NOW,
        build=starter("r1", "k1", seen),
    )

    again = await store.start_run(
        ContactUpsert(id="c1", name="Outro Nome", context={"pedido": "P2"}),
        key="k1",
        flow="cobranca",
        exclusive=False,
        now=at(10),
        build=starter("r2", "k1", seen),
    )

    assert again.created is False
    assert again.run == first.run
    assert len(seen) == 1  # not even built
    stored = await store.get_contact("c1")
    assert stored is not None
    assert stored.context == {"pedido": "P1"}
    assert stored.name != "Outro Nome"
    assert await store.get_run("r2") is None


async def test_a_refused_start_raises_conflict_and_leaves_the_contact_alone(
    store: Store, seed: Seed
) -> None:
    await seed.contact("c1", context={"pedido": "P1"})
    await seed.run("c1", status=RunStatus.WAITING)

    with pytest.raises(Conflict):
        await store.start_run(
            ContactUpsert(id="c1", context={"pedido": "P2"}),
            key="k2",
            flow="cobranca",
            exclusive=True,
            now=at(10),
            build=starter("r2", "k2", [], exclusive=True),
        )

    stored = await store.get_contact("c1")
    assert stored is not None
    assert stored.context == {"pedido": "P1"}
    assert await store.get_run("r2") is None
    assert await store.get_run_by_key("k2") is None
