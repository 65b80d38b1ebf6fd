"""SQLite erasure leaves no bytes of the person behind: not in the database file
(deleted cells and freed pages are zeroed, ``PRAGMA secure_delete``), not in its
-wal file (emptied by a checkpoint once the erasure commits), not even the old
copies that earlier updates of the contact's rows left in the pages."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from engine.models import ContactUpsert, NewEvent, RunStatus
from storage import sqlite_checkpoint
from storage.base import Commit, NewMessage, NewRun, Store
from storage.sqlite import SQLiteStore
from tests.contract.store_kit import NOW, at

PHONE = "+5511976543210"
OLD_CONTEXT = b"CONTEXTO-ANTIGO-MARCADOR"  # a context the contact had before
MARKERS = (
    b"5511976543210",
    b"Zeferina Marcadora",
    b"CPF-MARCADOR-7F3A",
    b"NOTA-LONGA-MARCADOR",
    b"VARS-MARCADOR-91C",
    b"PAYLOAD-MARCADOR-22B",
    b"EVENTO-MARCADOR-5D0",
    OLD_CONTEXT,
)


# The contract's store fixture, on SQLite only: these are the bytes of its files.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@pytest.fixture
def sqlite(store: Store) -> SQLiteStore:
    assert isinstance(store, SQLiteStore)
    return store


def on_disk(store: SQLiteStore) -> bytes:
    found = b""
    for path in (Path(store.path), Path(f"{store.path}-wal")):
        if path.exists():
            with open(path, "rb") as file:
                found += file.read()
    return found


async def seed_person(store: SQLiteStore, contact_id: str, *, marked: bool) -> None:
    def mark(text: str) -> str:
        return text if marked else text.replace("MARCADOR", "outro")

    phone = PHONE if marked else f"+55119{len(contact_id):08d}"
    old = {"nota": mark("CONTEXTO-ANTIGO-MARCADOR")}
    await store.upsert_contact(ContactUpsert(id=contact_id, phone=phone, context=old), NOW)
    context = {
        "cpf": mark("CPF-MARCADOR-7F3A"),
        "nota": "x" * 6000 + mark("NOTA-LONGA-MARCADOR"),  # on overflow pages
    }
    name = "Zeferina Marcadora" if marked else "Outra Pessoa"
    await store.upsert_contact(
        ContactUpsert(id=contact_id, phone=phone, name=name, context=context), at(1)
    )
    run_id = f"r-{contact_id}"
    await store.commit(
        Commit(
            now=at(2),
            new_run=NewRun(
                id=run_id,
                flow="cobranca",
                flow_version="v1",
                contact_id=contact_id,
                step="lembrete",
                status=RunStatus.WAITING,
                idempotency_key=f"key-{run_id}",
                vars={"protocolo": mark("VARS-MARCADOR-91C")},
            ),
            new_messages=[
                NewMessage(
                    id=f"m-{contact_id}",
                    run_id=run_id,
                    contact_id=contact_id,
                    flow="cobranca",
                    step="lembrete",
                    step_seq=1,
                    provider="sandbox",
                    channel="whatsapp",
                    idempotency_key=f"{run_id}:1",
                    payload={"body": mark("PAYLOAD-MARCADOR-22B")},
                )
            ],
            events=[
                NewEvent(
                    kind="reply",
                    at=at(2),
                    contact_id=contact_id,
                    data={"text": mark("EVENTO-MARCADOR-5D0")},
                )
            ],
        )
    )


async def test_an_erased_contact_leaves_no_bytes_in_the_database_or_its_wal(
    sqlite: SQLiteStore,
) -> None:
    store = sqlite
    for number in range(30):  # neighbours on the same pages, which stay
        await seed_person(store, f"vizinho-{number}", marked=False)
    await seed_person(store, "c-zeferina", marked=True)
    # The live values are on disk (the old context may already be zeroed).
    assert all(marker in on_disk(store) for marker in MARKERS if marker != OLD_CONTEXT)

    erased = await store.erase_contact("c-zeferina", keep_opt_out=False, now=at(3))

    assert erased is not None
    assert erased.runs == 1
    left = on_disk(store)
    assert [marker for marker in MARKERS if marker in left] == []
    assert b"outro" in left  # the neighbours' rows are all still there
    assert await store.get_contact("vizinho-7") is not None


async def test_a_reader_holding_the_wal_delays_its_emptying_and_the_log_says_so(
    sqlite: SQLiteStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(sqlite_checkpoint, "EMPTY_WAIT_MS", 0)
    store = sqlite
    await seed_person(store, "vizinho", marked=False)
    await seed_person(store, "c-zeferina", marked=True)
    reader = sqlite3.connect(store.path, isolation_level=None)
    try:
        reader.execute("BEGIN")  # another process reading, from before the erasure
        reader.execute("SELECT count(*) FROM contacts").fetchall()
        with caplog.at_level(logging.WARNING, logger="disparo.store"):
            erased = await store.erase_contact("c-zeferina", keep_opt_out=False, now=at(3))
        # The engine goes on writing meanwhile.
        await seed_person(store, "outro-vizinho", marked=False)
    finally:
        reader.close()
    assert erased is not None
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        f"contact c-zeferina is erased, but copies of its data stay in {store.path}-wal "
        "until the WAL can be emptied: another connection is reading the database; "
        "disparo tries again after its next writes"
    ]

    checkpointer = store._checkpointer
    assert checkpointer is not None
    assert await asyncio.wrap_future(checkpointer.empty_wal())  # the reader is gone
    left = on_disk(store)
    assert [marker for marker in MARKERS if marker in left] == []
