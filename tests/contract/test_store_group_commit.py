"""SQLite write path: adaptive group commit, failures and locks (reliability rows S1, S3).

Fault injection reaches the store's own connection (``_link.db``): a deferred
foreign key makes a COMMIT fail, ``max_page_count`` makes the disk look full.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.errors import StoreUnavailable
from engine.models import DueKind, NewDueWork, NewEvent
from storage import sqlite_batch
from storage.base import Commit, Store
from storage.sqlite import SQLiteStore
from tests.contract.store_kit import NOW, at


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "disparo.db"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(str(path))
    await opened.migrate()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def log(n: int, **kw: object) -> Commit:
    return Commit(now=NOW, events=[NewEvent(kind="test", at=NOW, data={"n": n}, **kw)])  # type: ignore[arg-type]


async def logged(store: Store) -> list[int]:
    return sorted(e.data["n"] for e in await store.list_events(limit=10_000))


async def reopened(path: Path) -> SQLiteStore:
    store = SQLiteStore(str(path))
    await store.open()
    return store


def connection(store: SQLiteStore) -> sqlite3.Connection:
    assert store._link is not None
    return store._link.db


async def test_writers_ready_together_share_one_commit_and_all_survive_a_restart(
    store: SQLiteStore, path: Path
) -> None:
    before = store.stats.commits, store.stats.units

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

    commits = store.stats.commits - before[0]
    assert store.stats.units - before[1] == 200
    assert commits <= 5, f"200 ready writers needed {commits} commits"
    assert store.stats.units_per_commit > 1
    await store.close()
    again = await reopened(path)
    assert await logged(again) == list(range(200))
    claimed = await again.claim_due_work(owner="a", now=at(300), lease_seconds=30, limit=500)
    assert len(claimed) == 200
    await again.close()


async def test_the_loop_runs_while_a_commit_is_in_flight_and_later_writers_wait_for_it(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first COMMIT is held on the commit thread until the test lets it go.
    release, started = threading.Event(), threading.Event()
    inline_commit = sqlite_batch.GroupCommitConnection._commit

    def held_commit(db: sqlite3.Connection) -> None:
        if not started.is_set():
            started.set()
            release.wait(5)
        inline_commit(db)

    monkeypatch.setattr(sqlite_batch.GroupCommitConnection, "_commit", staticmethod(held_commit))
    first = [asyncio.ensure_future(store.commit(log(n))) for n in range(3)]
    # The COMMIT of 0-2 reaches the commit thread; the loop is not blocked meanwhile.
    assert await asyncio.to_thread(started.wait, 5)

    # The loop is free: reads answer, and a new writer waits for the next batch.
    assert await store.next_due_at() is None
    late = asyncio.ensure_future(store.commit(log(3)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not any(w.done() for w in first), "acknowledged before its COMMIT finished"
    assert not late.done()
    assert store.stats.commits == 0

    release.set()
    await asyncio.gather(*first, late)
    assert store.stats.commits == 2  # 0-2 together, then 3 in a batch of its own
    assert await logged(store) == [0, 1, 2, 3]


async def test_a_failing_unit_fails_alone_while_its_batch_commits(store: SQLiteStore) -> None:
    await store.commit(log(0, dedupe_key="taken"))
    before = store.stats.commits

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
        store.commit(log(4)),
        return_exceptions=True,
    )

    assert [type(r).__name__ for r in results] == [
        "CommitResult",
        "CommitResult",
        "NotFound",
        "CommitResult",
    ]
    assert store.stats.commits - before == 1
    assert store.stats.failed_units == 1
    assert await logged(store) == [0, 1, 2, 4]


async def test_a_failed_commit_fails_every_writer_of_its_batch_and_writes_nothing(
    store: SQLiteStore,
) -> None:
    async def breaks_the_commit() -> object:
        # Checked only at COMMIT: the whole batch's COMMIT fails.
        connection(store).execute("PRAGMA defer_foreign_keys = ON")
        return await store.commit(
            Commit(
                now=NOW,
                new_due=[NewDueWork(kind=DueKind.TIMER, due_at=NOW, run_id="no-such-run")],
            )
        )

    results = await asyncio.gather(
        *(store.commit(log(n)) for n in range(5)), breaks_the_commit(), return_exceptions=True
    )

    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert "retry" in str(results[0])
    assert store.stats.failed_commits == 1
    assert await logged(store) == []
    assert await store.next_due_at() is None
    await store.commit(log(9))  # the next batch is fine
    assert await logged(store) == [9]


async def test_a_full_disk_is_unavailable_and_never_acknowledges_a_lost_write(
    store: SQLiteStore, path: Path
) -> None:
    db = connection(store)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = Commit(
        now=NOW, events=[NewEvent(kind="test", at=NOW, data={"n": 99, "pad": "x" * 200_000})]
    )

    results = await asyncio.gather(
        *(store.commit(log(n)) for n in range(5)), store.commit(big), return_exceptions=True
    )

    assert isinstance(results[-1], StoreUnavailable)
    assert "full" in str(results[-1])
    acknowledged = [n for n, r in enumerate(results[:-1]) if not isinstance(r, Exception)]
    await store.close()
    again = await reopened(path)
    assert await logged(again) == acknowledged
    await again.close()


async def test_a_writer_waits_for_another_processs_lock_without_blocking_the_loop(
    store: SQLiteStore, path: Path
) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        other.execute("COMMIT")

    running = asyncio.create_task(ticker())
    try:
        await asyncio.gather(store.commit(log(1)), release_later())
    finally:
        running.cancel()
        other.close()

    assert ticks >= 10, "the event loop was blocked while waiting for the lock"
    assert store.stats.lock_waits > 0
    assert await logged(store) == [1]


async def test_a_lock_held_too_long_is_unavailable(
    store: SQLiteStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_batch, "BUSY_TIMEOUT_MS", 200)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.commit(log(1))
    finally:
        other.execute("ROLLBACK")
        other.close()

    await store.commit(log(2))
    assert await logged(store) == [2]


async def test_an_idle_claim_poll_takes_no_write_lock(store: SQLiteStore) -> None:
    await store.commit(Commit(now=NOW, new_due=[NewDueWork(kind=DueKind.CALLBACK, due_at=at(60))]))
    before = store.stats.commits

    for _ in range(10):
        assert await store.claim_due_work(owner="a", now=NOW, lease_seconds=30, limit=8) == []

    assert store.stats.commits == before


async def test_close_commits_pending_writes_and_leaves_no_task(
    store: SQLiteStore, path: Path
) -> None:
    writers = [asyncio.ensure_future(store.commit(log(n))) for n in range(3)]
    await asyncio.sleep(0)  # the units ran; their COMMIT is scheduled, not issued

    await store.close()

    await asyncio.gather(*writers)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(StoreUnavailable):
        await store.commit(log(4))
    again = await reopened(path)
    assert await logged(again) == [0, 1, 2]
    await again.close()


async def test_normal_synchronous_mode_is_accepted(path: Path) -> None:
    store = SQLiteStore(str(path), synchronous="NORMAL")
    await store.migrate()
    await store.open()
    await store.commit(log(1))
    await store.close()

    again = await reopened(path)
    assert await logged(again) == [1]
    await again.close()


def _events_in_main_file(path: Path, tmp: Path) -> int:
    """Events in the database file alone, without its WAL: what checkpoints copied."""
    alone = tmp / "main-file-only.db"
    shutil.copyfile(path, alone)
    db = sqlite3.connect(str(alone))
    try:
        return int(db.execute("SELECT count(*) FROM events WHERE kind = 'test'").fetchone()[0])
    except sqlite3.OperationalError:  # not even the schema was copied yet
        return 0
    finally:
        db.close()


async def test_wal_is_checkpointed_off_the_loop_and_the_thread_ends_with_the_store(
    store: SQLiteStore, path: Path, tmp_path: Path
) -> None:
    checkpointer = store._checkpointer
    assert checkpointer is not None
    # The loop's own connection would checkpoint only far past SQLite's default.
    (pages,) = connection(store).execute("PRAGMA wal_autocheckpoint").fetchone()
    assert pages > 1000
    await asyncio.gather(*(store.commit(log(n)) for n in range(200)))
    # The thread copies the committed frames into the database file by itself.
    for _ in range(500):  # waits for the thread, at most 5 s
        # Both: the thread counts a checkpoint only after the pages are copied, so
        # the file can show them a moment before the count does.
        if checkpointer.checkpoints >= 1 and _events_in_main_file(path, tmp_path) == 200:
            break
        await asyncio.sleep(0.01)
    assert checkpointer.checkpoints >= 1
    assert _events_in_main_file(path, tmp_path) == 200
    await store.close()
    assert not checkpointer._thread.is_alive()
    reopened_store = await reopened(path)
    try:
        assert await logged(reopened_store) == list(range(200))
    finally:
        await reopened_store.close()


async def test_an_in_memory_store_has_no_checkpoint_thread() -> None:
    memory = SQLiteStore(":memory:")
    await memory.open()
    try:
        assert memory._checkpointer is None
        await memory.commit(log(1))
        assert await logged(memory) == [1]
    finally:
        await memory.close()
