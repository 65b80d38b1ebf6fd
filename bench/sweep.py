"""Re-engagement sweep over 1,000,000 contacts in one SQLite store.

Builds a store of ``--contacts`` contacts whose last inbound message is spread evenly
over the last 100 hours (10,000 per hour at 1M), then:

1. select: the contacts that wrote 23-24 h ago (the `after: 23h` window), through
   the covering index the sweep uses, against the same query forced to scan the
   table (``NOT INDEXED``); median of ``--repeat`` runs each. Targets: <= 10 ms for
   10k matches, >= 10x faster than the scan.
2. start: the engine's real sweep (``engine.triggers_sweep`` through
   ``Triggers.handle``) pages through that window in chunks (up to 8 per step),
   evaluates `unless` (compiled once, one reused jinja context) and starts one run
   per contact through the bulk path (``Store.start_runs``: the run and its START
   row, which carries the data of the ``run.started`` event the dispatcher writes
   at entry; one transaction per chunk). Prints contacts started per second
   (target >= 30,000/s) and the longest the event loop went without running
   another task; then, apart, how fast the dispatcher enters those runs' first
   step (START rows), and a per-contact breakdown by phase.

Measured 2026-11-23, 2 cores, quiet machine, three runs: select of 10,000 matches
2.78-3.20 ms (index) vs 61-85 ms (scan); start rate 33,803-36,864 contacts/s
(before the bulk path: 2,050-2,264/s), target 30,000/s met; longest stall
19.4-33.8 ms. See bench/README.md.

    .venv/bin/python bench/sweep.py [--contacts 1000000] [--repeat 5] [--chunk 1000]
                                    [--synchronous FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.clock import VirtualClock
from engine.models import DueKind
from engine.runtime import Engine
from engine.settings import Settings
from engine.trigger_filter import ContactFilter
from engine.triggers_sweep import after_key, iso
from storage.base import BulkStart, StartRequest
from storage.sqlite import SQLiteStore
from storage.sqlite_codec import to_us
from storage.sqlite_triggers import window_query

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
SPREAD = timedelta(hours=100)
AFTER = timedelta(hours=23)
FLOW = """\
flow: volta
triggers:
  - after: 23h
    since: last_inbound
    unless: "contact.context.nao_reengajar | default(false)"
start: aviso
steps:
  aviso:
    send: {channel: sms, provider: sandbox, text: "Oi! Quer continuar de onde parou?"}
    next: fim
  fim: {end: completed}
"""


def build(path: Path, contacts: int) -> None:
    """Migrate, then bulk-load the contacts (the bench's own setup, not the engine's path)."""
    asyncio.run(SQLiteStore(str(path)).migrate())
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    step = SPREAD / contacts
    created = to_us(NOW - SPREAD)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO contacts (id, phone, name, context, last_inbound_at, last_interaction_at, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                f"c{n:07d}",
                f"+55119{n:08d}",
                "Cliente",
                '{"nao_reengajar":true}' if n % 50 == 0 else "{}",
                stamp := to_us(NOW - step * (n + 1)),
                stamp,
                created,
                created,
            )
            for n in range(contacts)
        ),
    )
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def timed(db: sqlite3.Connection, sql: str, params: list[object]) -> tuple[float, int]:
    started = time.perf_counter()
    rows = db.execute(sql, params).fetchall()
    return time.perf_counter() - started, len(rows)


def measure_select(path: Path, repeat: int) -> tuple[float, float, int]:
    sql, params = window_query(
        "last_inbound_at",
        above=NOW - AFTER - timedelta(hours=1),
        up_to=NOW - AFTER,
        cursor=None,
        limit=1_000_000,
    )
    scan = sql.replace("FROM contacts", "FROM contacts NOT INDEXED")
    db = sqlite3.connect(path)
    plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
    print(f"query plan: {plan}")
    timed(db, sql, params)  # warm the page cache for both
    indexed, scanned, matches = [], [], 0
    for _ in range(repeat):
        seconds, matches = timed(db, sql, params)
        indexed.append(seconds)
        seconds, scan_matches = timed(db, scan, params)
        assert scan_matches == matches
        scanned.append(seconds)
    db.close()
    return statistics.median(indexed), statistics.median(scanned), matches


async def measure_start(path: Path, folder: Path, chunk: int, synchronous: str) -> None:
    settings = Settings.model_validate(
        {
            "storage": f"sqlite:///{path}",
            "api_token": "bench-token-0123456789",
            "flows": folder,
            "providers": {"sandbox": {"type": "sandbox", "channels": ["sms"]}},
            "triggers": {"chunk_size": chunk},
        }
    )
    # The trigger exists since 24 h ago: its first sweep covers the 23-24 h window.
    clock = VirtualClock(NOW - timedelta(hours=1))
    store = SQLiteStore(str(path), synchronous=synchronous)  # type: ignore[arg-type]
    async with Engine(settings, clock=clock, store=store, run_loop=False) as engine:
        clock.set(NOW)
        stalls: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0)
                tick = time.perf_counter()
                stalls.append(tick - last)
                last = tick

        watcher = asyncio.create_task(ticker())
        steps = 0
        commits_before = store.stats.commits
        started = time.perf_counter()
        while True:
            claimed = await store.claim_due_work(
                owner=engine.owner, now=clock.now(), lease_seconds=60, limit=1
            )
            if not claimed or claimed[0].kind != DueKind.SWEEP:
                break
            await engine.dispatcher.handle(claimed[0])
            steps += 1
        elapsed = time.perf_counter() - started
        group_commits = store.stats.commits - commits_before
        done.set()
        await watcher
        swept = await store.list_events(kind_prefix="trigger.swept", limit=10)
        await measure_entry(engine, store)
        await breakdown(engine, clock.now())
    summary = dict(swept[0].data) if swept else {}
    runs = int(summary.get("started", 0))
    print(
        f"sweep: {summary.get('matched')} contacts in the window, {runs} runs started, "
        f"{summary.get('excluded')} excluded by `unless`, in {steps} steps "
        f"(chunks of <= {chunk})"
    )
    rate = summary.get("matched", 0) / elapsed
    print(
        f"start rate: {rate:,.0f} contacts/s ({runs / elapsed:,.0f} runs/s) "
        f"in {elapsed * 1000:.0f} ms [target >= 30,000 contacts/s: "
        f"{'met' if rate >= 30_000 else 'NOT met'}]"
    )
    print(
        f"group commits: {group_commits}; "
        f"longest event-loop stall: {max(stalls) * 1000:.1f} ms [limit 50 ms]"
    )


async def breakdown(engine: Engine, now: datetime, contacts: int = 2000) -> None:
    """Where a start's time goes, phase by phase, on the next hour of contacts."""
    loaded = engine.catalog.latest("volta")
    marks = [time.perf_counter()]
    page = await engine.store.window_page(
        "last_inbound_at", above=now - AFTER, up_to=None, limit=contacts, profile=True
    )
    marks.append(time.perf_counter())
    test = ContactFilter(
        "contact.context.nao_reengajar | default(false)",
        field="unless",
        flow=loaded.flow,
        now=now,
        default_timezone=engine.settings.timezone,
    )
    chosen = [(contact, stamp) for contact, stamp in page if not test.holds(contact)]
    marks.append(time.perf_counter())
    requests: list[StartRequest] = []
    for contact, stamp in chosen:
        at = iso(stamp)
        requests.append((contact.id, after_key("bench", 0, contact.id, at), {"at": at}))
    marks.append(time.perf_counter())
    await engine.store.start_runs(
        BulkStart(
            flow="volta",
            flow_version=loaded.version,
            trigger="after",
            exclusive=True,
            now=now,
            requests=requests,
        )
    )
    marks.append(time.perf_counter())
    phases = ("read+decode", "unless", "build requests", "bulk start (store)")
    said = ", ".join(
        f"{name} {(b - a) / len(page) * 1e6:.1f}"
        for name, a, b in zip(phases, marks, marks[1:], strict=False)
    )
    print(f"per contact, in microseconds: {said}")


async def measure_entry(engine: Engine, store: SQLiteStore, limit: int = 2000) -> None:
    """The dispatcher entering started runs (START rows): not part of the start rate."""
    started = time.perf_counter()
    entered = 0
    while entered < limit:
        claimed = await store.claim_due_work(
            owner=engine.owner, now=engine.clock.now(), lease_seconds=60, limit=64
        )
        starts = [work for work in claimed if work.kind == DueKind.START]
        if not starts:
            break
        await asyncio.gather(*(engine.dispatcher.handle(work) for work in starts))
        entered += len(starts)
    if entered:
        elapsed = time.perf_counter() - started
        print(
            f"entry of the first step (dispatcher, START rows): {entered} runs at "
            f"{entered / elapsed:,.0f} runs/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.db"
        folder = Path(tmp) / "flows"
        folder.mkdir()
        (folder / "volta.yaml").write_text(FLOW)
        started = time.perf_counter()
        build(path, args.contacts)
        print(f"built {args.contacts:,} contacts in {time.perf_counter() - started:.1f} s")
        indexed, scanned, matches = measure_select(path, args.repeat)
        print(
            f"select 23-24 h window: {matches:,} matches in {indexed * 1000:.2f} ms with the "
            f"index, {scanned * 1000:.1f} ms scanning ({scanned / indexed:.0f}x faster) "
            f"[targets: <= 10 ms for 10k: {'met' if indexed <= 0.010 else 'NOT met'}; "
            f">= 10x: {'met' if scanned >= 10 * indexed else 'NOT met'}]"
        )
        asyncio.run(measure_start(path, folder, args.chunk, args.synchronous))


if __name__ == "__main__":
    main()
