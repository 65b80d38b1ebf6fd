"""SQLite group commit: store calls per second and units per COMMIT for N concurrent writers.

Each writer loops over ``SQLiteStore.commit`` with what a `send` step writes (a
message, its dispatch row, an event) and waits until it is durable, like the
dispatcher does before a POST. With one writer every call pays one fsync; with
many, the writers ready in the same loop iteration share one.

    .venv/bin/python bench/store_commit.py [--writers 1 8 64 256] [--units 6000]
                                           [--synchronous FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.models import ContactUpsert, DueKind, NewDueWork, NewEvent, RunStatus
from storage.base import Commit, NewMessage, NewRun
from storage.sqlite import SQLiteStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def outbox(n: int) -> Commit:
    message_id = f"m{n}"
    return Commit(
        now=NOW,
        new_messages=[
            NewMessage(
                id=message_id,
                run_id="r1",
                contact_id="c1",
                flow="bench",
                step="aviso",
                step_seq=1,
                provider="gateway",
                channel="whatsapp",
                idempotency_key=f"r1:aviso:{n}",
                payload={"type": "text", "body": "Oi Maria! Seu pedido saiu para entrega."},
            )
        ],
        new_due=[NewDueWork(kind=DueKind.DISPATCH, due_at=NOW, run_id="r1", message_id=message_id)],
        events=[NewEvent(kind="run.step", at=NOW, run_id="r1", data={"step": "aviso"})],
    )


async def measure(writers: int, units: int, synchronous: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(f"{tmp}/bench.db", synchronous=synchronous)  # type: ignore[arg-type]
        await store.migrate()
        await store.open()
        await store.upsert_contact(ContactUpsert(id="c1"), NOW)
        run = NewRun(
            id="r1",
            flow="bench",
            flow_version="v",
            contact_id="c1",
            step="aviso",
            status=RunStatus.ACTIVE,
            idempotency_key="r1",
        )
        await store.commit(Commit(now=NOW, new_run=run))
        numbers = iter(range(units))
        before = store.stats.commits, store.stats.units

        async def writer() -> None:
            for n in numbers:
                await store.commit(outbox(n))

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(writer() for _ in range(writers)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        commits = store.stats.commits - before[0]
        done = store.stats.units - before[1]
        await store.close()
    print(
        f"writers {writers:>4}  {done / wall:>8.0f} calls/s  {commits / wall:>7.0f} commits/s  "
        f"{done / commits:>6.1f} calls/commit  {cpu / done * 1e6:>5.0f} µs CPU/call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--units", type=int, default=6000)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args()
    print(f"SQLiteStore.commit, synchronous={args.synchronous}, {args.units} calls per row")
    for writers in args.writers:
        asyncio.run(measure(writers, args.units, args.synchronous))


if __name__ == "__main__":
    main()
