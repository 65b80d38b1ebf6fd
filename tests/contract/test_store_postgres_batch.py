"""PostgreSQL specifics: group commit, JSON documents, the SQL status rule, migrations."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from engine.errors import SchemaOutdated, StoreError
from engine.models import ContactUpsert, DueKind, MessageStatus, NewDueWork, NewEvent
from storage.base import Commit, ContactChange, MessageChange
from storage.postgres import PostgresStore
from tests.contract.store_kit import NOW, Seed, at

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(postgres_dsn)
    await opened.migrate()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def log(n: int, **fields: object) -> Commit:
    return Commit(now=NOW, events=[NewEvent(kind="test", at=NOW, data={"n": n}, **fields)])  # type: ignore[arg-type]


async def logged(store: PostgresStore) -> list[int]:
    return sorted(e.data["n"] for e in await store.list_events(limit=10_000))


async def test_writers_ready_together_share_a_few_transactions(store: PostgresStore) -> None:
    before = store.stats.batches, store.stats.units

    await asyncio.gather(
        *(
            store.commit(
                Commit(
                    now=NOW,
                    new_due=[NewDueWork(kind=DueKind.CALLBACK, due_at=at(n), payload={"n": n})],
                    events=[NewEvent(kind="test", at=NOW, data={"n": n})],
                )
            )
            for n in range(200)
        )
    )

    batches = store.stats.batches - before[0]
    assert store.stats.units - before[1] == 200
    assert batches <= 12, f"200 ready writers needed {batches} transactions"
    assert await logged(store) == list(range(200))
    claimed = await store.claim_due_work(owner="a", now=at(300), lease_seconds=30, limit=500)
    assert len(claimed) == 200


async def test_a_failing_unit_fails_alone_while_its_batch_commits(store: PostgresStore) -> None:
    await store.commit(log(0, dedupe_key="taken"))

    results = await asyncio.gather(
        store.commit(log(1)),
        store.commit(log(2)),
        store.commit(
            Commit(
                now=NOW,
                events=[NewEvent(kind="test", at=NOW, data={"n": 3})],
                new_due=[NewDueWork(kind=DueKind.TIMER, due_at=NOW, run_id="no-such-run")],
            )
        ),
        store.commit(log(4, dedupe_key="taken")),  # dropped as a duplicate, not an error
        store.commit(log(5)),
        return_exceptions=True,
    )

    assert [type(r).__name__ for r in results] == [
        "CommitResult",
        "CommitResult",
        "NotFound",
        "CommitResult",
        "CommitResult",
    ]
    assert store.stats.failed_units == 1
    assert await logged(store) == [0, 1, 2, 5]


async def test_a_nul_character_is_refused_before_it_reaches_the_batch(
    store: PostgresStore,
) -> None:
    results = await asyncio.gather(
        store.commit(log(1)),
        store.commit(Commit(now=NOW, events=[NewEvent(kind="bad\x00kind", at=NOW)])),
        store.commit(log(2)),
        return_exceptions=True,
    )

    assert isinstance(results[1], ValueError)
    assert "NUL" in str(results[1])
    assert await logged(store) == [1, 2]


async def test_json_documents_keep_their_key_order(store: PostgresStore) -> None:
    seed = Seed(store)
    await store.upsert_contact(ContactUpsert(id="c1", context={"z": 1, "a": 2, "m": 3}), NOW)
    await store.upsert_contact(ContactUpsert(id="c1", context={"a": None, "b": 4}), NOW)
    await store.commit(
        Commit(now=NOW, contact=ContactChange(contact_id="c1", context_patch={"z": 9, "c": 5}))
    )
    run = await seed.run("c1")
    message_id = await seed.message(run)
    payload = {"type": "template", "name": "boleto", "params": {"valor": "1", "data": "2"}}
    await store.commit(
        Commit(
            now=at(1),
            messages=[
                MessageChange(
                    message_id=message_id,
                    at=at(1),
                    status=MessageStatus.SENDING,
                    payload=payload,
                )
            ],
        )
    )

    contact = await store.get_contact("c1")
    message = await store.get_message(message_id)
    assert contact is not None
    assert message is not None
    assert list(contact.context.items()) == [("z", 9), ("m", 3), ("b", 4), ("c", 5)]
    assert list(message.payload) == ["type", "name", "params"]
    assert list(message.payload["params"]) == ["valor", "data"]
    assert list(message.status_at) == ["queued", "sending"]


async def test_the_sql_status_rule_is_the_engine_rule(store: PostgresStore) -> None:
    from engine.models import status_can_advance

    connection = await asyncpg.connect(store._pool._dsn)
    try:
        pairs = list(itertools.product(MessageStatus, repeat=2))
        answers = await connection.fetch(
            "SELECT s, n, disparo_status_can_advance(s, n) AS ok "
            "FROM unnest($1::text[], $2::text[]) AS p (s, n)",
            [s.value for s, _ in pairs],
            [n.value for _, n in pairs],
        )
    finally:
        await connection.close()

    mismatches = [
        (a["s"], a["n"])
        for a in answers
        if a["ok"] != status_can_advance(MessageStatus(a["s"]), MessageStatus(a["n"]))
    ]
    assert len(answers) == 64
    assert mismatches == []


async def test_two_processes_migrating_at_once_apply_each_migration_once(
    postgres_dsn: str,
) -> None:
    first, second = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    expected = await first.pending_migrations()

    applied = await asyncio.gather(first.migrate(), second.migrate())

    assert sorted(applied[0] + applied[1]) == expected
    assert await first.pending_migrations() == []
    await first.close()
    await second.close()


async def test_a_database_from_a_newer_disparo_is_refused(postgres_dsn: str) -> None:
    migrator = PostgresStore(postgres_dsn)
    await migrator.migrate()
    await migrator.close()
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("INSERT INTO schema_migrations (name) VALUES ('9999_future')")
    finally:
        await connection.close()

    with pytest.raises(StoreError, match="newer disparo"):
        await PostgresStore(postgres_dsn).open()


def test_disparo_migrate_on_postgresql(postgres_dsn: str, tmp_path: Path) -> None:
    config = tmp_path / "disparo.yaml"
    config.write_text(
        f"storage: '{postgres_dsn}'\napi_token: t0ken-0123456789\nflows: {ROOT / 'flows'}\n"
        "providers:\n  sandbox: {type: sandbox}\n"
    )

    def disparo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args, "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    async def open_fails() -> str:
        with pytest.raises(SchemaOutdated) as raised:
            await PostgresStore(postgres_dsn).open()
        return str(raised.value)

    outdated = asyncio.run(open_fails())
    first = disparo("migrate")
    again = disparo("migrate")

    assert (
        "11 pending migrations (0001_initial, 0002_triggers, 0003_provider_state, 0004_retention, "
        "0005_erasure, 0006_ambiguous, 0007_sending, 0008_claim_order, 0009_window_channels, "
        "0010_event_contacts, 0011_lock_order)" in outdated
    )
    assert "run `disparo migrate`" in outdated
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert first.stdout.strip().endswith(
        "): 0001_initial, 0002_triggers, 0003_provider_state, 0004_retention, "
        "0005_erasure, 0006_ambiguous, 0007_sending, 0008_claim_order, 0009_window_channels, "
        "0010_event_contacts, 0011_lock_order"
    )
    assert first.stdout.startswith("applied 11 migrations to ")
    assert again.stdout.strip().endswith(") is up to date")
