"""Status webhook ingestion: `disparo serve` vs a bare aiohttp handler, same load generator.

engine: a real ``python -m engine serve`` process (API, webhooks, dispatcher; INFO
logging to a file) on a SQLite file (WAL, synchronous=FULL) that already holds
the messages the webhooks talk about: ``POST /webhooks/wa`` parses each body with
the sandbox provider (disparo's generic format), stores the report durably and
only then answers 200: a ``delivered`` (the flow routes only ``read``) is applied
in that write, a ``read`` is stored as an event plus status due work, which the
dispatcher applies in the same process (``read`` moves the run on), as in
production.
raw: ``bench/fake_provider.py``: an aiohttp handler that reads the body and
answers 200, nothing else.

Both servers run in their own process; this process is only the load generator:
one aiohttp session, ``--concurrency`` senders (default 64) posting the same
``--requests`` bodies per round after a warm-up of 500. The bodies are what a
provider sends: one status each, ``delivered`` for every message and then ``read``
for every message, naming the gateway id and the idempotency key, with a
timestamp (``providers.generic_webhook.status_body``, the function the sandbox
builds its own callbacks with).

Setup (once): runs are started through ``POST /v1/runs`` on a sandbox provider
whose ``delivered_after`` and ``read_after`` are null, so only its ``sent``
callback fires; the setup waits until every message is ``sent`` with its gateway
id, then keeps that database as a template. Every engine round starts a fresh
server on a fresh copy of it, so rounds start from the same state.

Each round checks its work: every answer must be 200; the engine must have
answered ``accepted`` for every report (none pending, none duplicate), its
database must hold one status event per request afterwards, and its log must
have no warning. Rounds alternate raw and engine; the script prints every round,
the medians and the paired ratio (median of per-round engine/raw). Target: >= 0.5x.

    .venv/bin/python bench/webhooks.py [--requests 10000] [--rounds 5] [--concurrency 64]
                                       [--dispatcher on|off] [--store sqlite|postgres]

``--store postgres`` runs the engine on a fresh schema of ``--postgres-dsn`` (default
``$DISPARO_TEST_POSTGRES_DSN``) per round; there the setup runs in every round (no
cheap copy), and the bodies name that round's messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    MachineBusy,
    add_store_options,
    check_store_options,
    child,
    free_port,
    paired,
    postgres_schema,
    process_cpu,
    summary,
)

WARMUP = 500
PROVIDER = "wa"
TOKEN = "bench-token-0123456789"
WEBHOOK_SECRET = "bench-webhook-secret"  # as a deployment would: the ?token= is checked

FLOW = """
flow: aviso
defaults:
  provider: wa
  rules:
    window: ignore
start: aviso
steps:
  aviso:
    send:
      text: |
        Oi {{ contact.first_name }}! Seu pedido {{ context.pedido }} saiu para entrega
        e chega hoje. Acompanhe pelo aplicativo.
    on:
      read: fim
    timeout: {after: 1d, goto: fim}
  fim:
    end: completed
"""


@dataclass(frozen=True, slots=True)
class Round:
    rate: float  # answered requests per second
    cpu_us: float  # server CPU per request, µs
    busy: float  # both CPUs, 0..1
    p50_ms: float  # request latency seen by the sender (send to answer read), ms
    p99_ms: float
    note: str = ""


def write_config(tmp: Path, storage: str, port: int) -> Path:
    flows = tmp / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "aviso.yaml").write_text(FLOW)
    config = {
        "storage": storage,
        "server": {"host": "127.0.0.1", "port": port},
        "api_token": TOKEN,
        "flows": str(flows),
        "providers": {
            PROVIDER: {
                "type": "sandbox",
                "delivered_after": None,
                "read_after": None,
                "fail_suffix": None,
                "webhook_secret": WEBHOOK_SECRET,
            }
        },
    }
    path = tmp / f"disparo-{port}.yaml"
    path.write_text(json.dumps(config))
    return path


def serve_args(config: Path, dispatcher: str = "on") -> list[str]:
    if dispatcher == "on":
        return ["-m", "engine", "serve", "--config", str(config)]
    return ["bench/webhooks.py", "--ingest-only-server", str(config)]


async def ingest_only_server(config: Path) -> None:
    """`disparo serve` without the dispatcher: the same app, logging and store, but
    reports the dispatcher would apply wait as due work. Isolates ingestion (with
    what the webhook's own write applies: reports the run ignores)."""
    from aiohttp import web

    from engine.api import build_app
    from engine.gc_policy import tune_for_serving
    from engine.logs import setup_logging
    from engine.runtime import Engine
    from engine.settings import load_settings

    settings = load_settings(config)
    setup_logging(settings.log_format, secrets=settings.secret_values())
    async with Engine(settings, run_loop=False) as engine:
        runner = web.AppRunner(build_app(engine), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.server.host, settings.server.port).start()
        tune_for_serving()  # as `disparo serve` does once it listens
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


async def post_all(
    session: aiohttp.ClientSession,
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    headers: dict[str, str] | None = None,
    latencies: list[float] | None = None,
) -> list[dict[str, object]]:
    """POST every body from ``concurrency`` senders; every answer must be a JSON 200.

    ``latencies`` receives each request's seconds from sending to the answer read.
    """
    answers: list[dict[str, object]] = []
    queue = iter(bodies)
    headers = {"Content-Type": "application/json", **(headers or {})}
    clock = time.perf_counter

    async def sender() -> None:
        for body in queue:
            sent = clock()
            async with session.post(url, data=body, headers=headers) as response:
                raw = await response.read()
                if latencies is not None:
                    latencies.append(clock() - sent)
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}: {raw[:300]!r}")
                answers.append(json.loads(raw))

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return answers


def percentiles(latencies: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


class RoundDb:
    """The database one round's engine runs on, read from this process."""

    def __init__(self, storage: str) -> None:
        self.storage = storage  # the engine config's `storage:`

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.storage.startswith("sqlite:///"):
            path = self.storage.removeprefix("sqlite:///")
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                return [tuple(row) for row in db.execute(sql)]
            finally:
                db.close()
        import asyncpg

        conn = await asyncpg.connect(self.storage)
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    async def count(self, sql: str) -> int:
        return int((await self.rows(sql))[0][0])


def copy_sqlite(template: RoundDb, into: RoundDb) -> None:
    """A round's own copy of the set-up SQLite database."""
    source = sqlite3.connect(template.storage.removeprefix("sqlite:///"))
    copy = sqlite3.connect(into.storage.removeprefix("sqlite:///"))
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


async def wait_until(
    db: RoundDb, sql: str, expected: int, give_up_after: float, what: str
) -> float:
    """Poll until ``sql`` gives ``expected``; seconds it took."""
    started = time.monotonic()
    while True:
        got = await db.count(sql)
        if os.environ.get("BENCH_DEBUG"):
            print(f"{time.monotonic() - started:.2f} {got}", file=sys.stderr)
        if got == expected:
            return time.monotonic() - started
        if time.monotonic() - started > give_up_after:
            raise RuntimeError(f"{what}: {got} after {give_up_after:.0f}s, expected {expected}")
        await asyncio.sleep(0.05)


async def prepare(tmp: Path, db: RoundDb, messages: int, concurrency: int) -> None:
    """Migrate ``db`` and fill it with ``messages`` runs whose message is ``sent``."""
    from engine.runtime import open_store

    store = open_store(db.storage)
    await store.migrate()
    await store.close()
    port = free_port()
    config = write_config(tmp, db.storage, port)
    started = time.monotonic()
    with child(serve_args(config), port, log=tmp / "setup.log"):
        bodies = [
            json.dumps(
                {
                    "flow": "aviso",
                    "contact": {"id": f"c{i}", "phone": f"+55119{i:08d}", "name": "Maria Souza"},
                    "context": {"pedido": f"P{i}"},
                    "idempotency_key": f"wh-{i}",
                }
            ).encode()
            for i in range(messages)
        ]
        url = f"http://127.0.0.1:{port}/v1/runs"
        async with aiohttp.ClientSession() as session:
            queue = iter(bodies)

            async def starter() -> None:
                for body in queue:
                    async with session.post(
                        url,
                        data=body,
                        headers={
                            "Authorization": f"Bearer {TOKEN}",
                            "Content-Type": "application/json",
                        },
                    ) as response:
                        if response.status not in (200, 201):
                            raise RuntimeError(f"POST /v1/runs: {response.status}")
                        await response.read()

            await asyncio.gather(*(starter() for _ in range(concurrency)))
        await wait_until(
            db,
            "SELECT count(*) FROM messages WHERE status = 'sent' "
            "AND provider_message_id IS NOT NULL",
            messages,
            give_up_after=600,
            what="setup: messages sent",
        )
        # The sandbox's own `sent` callbacks must be applied too, or a round would
        # inherit their leases and work.
        await wait_until(
            db,
            "SELECT count(*) FROM due_work WHERE kind != 'timer'",
            0,
            give_up_after=600,
            what="setup: work left",
        )
    print(f"setup: {messages} runs started and sent in {time.monotonic() - started:.1f}s")


async def status_bodies(db: RoundDb) -> tuple[list[bytes], list[bytes]]:
    """(warm-up bodies, timed bodies): ``delivered`` then ``read`` per message."""
    from engine.models import MessageStatus
    from providers.generic_webhook import status_body
    from providers.sandbox import SandboxConfig, SandboxProvider

    rows = await db.rows(
        "SELECT provider_message_id, idempotency_key FROM messages "
        "ORDER BY CAST(substr(contact_id, 2) AS INTEGER)"
    )
    # The ids the setup stored are the ones the sandbox derives from the keys, and
    # the sandbox parses these bodies as its own: they are its webhooks.
    sandbox = SandboxProvider(
        PROVIDER,
        SandboxConfig(delivered_after=None, read_after=None),
        host=None,  # type: ignore[arg-type]
    )
    wrong = [row for row in rows if sandbox.provider_id_for(row[1]) != row[0]]
    if wrong:
        raise RuntimeError(f"{len(wrong)} stored ids are not the sandbox's, e.g. {wrong[0]}")
    sent_at = datetime.now(UTC)

    def body(row: tuple[str, str], status: MessageStatus, after: float) -> bytes:
        return status_body(
            provider_message_id=row[0],
            idempotency_key=row[1],
            status=status,
            at=sent_at + timedelta(seconds=after),
        )

    parsed = sandbox.parse_webhook(body(rows[0], MessageStatus.READ, 30), {}, sent_at)
    if len(parsed.statuses) != 1 or parsed.errors:
        raise RuntimeError(f"the sandbox does not parse the bodies: {parsed}")
    warm, timed = rows[:WARMUP], rows[WARMUP:]
    warmup = [body(r, MessageStatus.DELIVERED, 2) for r in warm]
    bodies = [body(r, MessageStatus.DELIVERED, 2) for r in timed]
    bodies += [body(r, MessageStatus.READ, 30) for r in timed]
    return warmup, bodies


async def raw_round(warmup: Sequence[bytes], bodies: Sequence[bytes], concurrency: int) -> Round:
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/{PROVIDER}"
    with child(["bench/fake_provider.py", str(port)], port) as proc:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await post_all(session, url, warmup, concurrency)
            busy, cpu = MachineBusy(), process_cpu(proc.pid)
            latencies: list[float] = []
            started = time.perf_counter()
            await post_all(session, url, bodies, concurrency, latencies=latencies)
            elapsed = time.perf_counter() - started
            cpu, load = process_cpu(proc.pid) - cpu, busy.stop()
            async with session.get(f"http://127.0.0.1:{port}/stats") as response:
                stats = await response.json()
    if stats["posts"] != len(warmup) + len(bodies):
        raise RuntimeError(f"the bare server saw {stats['posts']} webhooks")
    return Round(len(bodies) / elapsed, cpu / len(bodies) * 1e6, load, *percentiles(latencies))


async def engine_round(
    tmp: Path,
    db: RoundDb,
    warmup: Sequence[bytes],
    bodies: Sequence[bytes],
    concurrency: int,
    dispatcher: str,
) -> Round:
    port = free_port()
    config = write_config(tmp, db.storage, port)
    applied_at_once = db.storage.startswith("sqlite:")  # reports the run ignores
    log = tmp / f"round-{port}.log"
    url = f"http://127.0.0.1:{port}/webhooks/{PROVIDER}?token={WEBHOOK_SECRET}"
    with child(serve_args(config, dispatcher), port, log=log) as proc:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await post_all(session, url, warmup, concurrency)
            busy, cpu = MachineBusy(), process_cpu(proc.pid)
            latencies: list[float] = []
            started = time.perf_counter()
            answers = await post_all(session, url, bodies, concurrency, latencies=latencies)
            elapsed = time.perf_counter() - started
            cpu, load = process_cpu(proc.pid) - cpu, busy.stop()
        if dispatcher == "on":
            # The dispatcher applies the stored reports after the answers; how long it lags.
            drained = await wait_until(
                db,
                "SELECT count(*) FROM due_work WHERE kind = 'status'",
                0,
                give_up_after=600,
                what="status work left",
            )
            note = f"applied {drained:.1f}s after the last answer"
        else:
            # The flow routes `read`: those wait for the dispatcher. On SQLite every
            # `delivered` (the run ignores it) was applied by the webhook's own write;
            # PostgreSQL queues every report.
            queued = len(bodies) // 2 if applied_at_once else len(warmup) + len(bodies)
            await wait_until(
                db,
                "SELECT count(*) FROM due_work WHERE kind = 'status'",
                queued,
                give_up_after=5,
                what="reports queued for the dispatcher",
            )
            note = f"{queued} reports queued, no dispatcher"
    accepted = sum(int(a["accepted"]) for a in answers)  # type: ignore[call-overload]
    odd = sum(int(a["pending"]) + int(a["duplicates"]) for a in answers)  # type: ignore[call-overload]
    if accepted != len(bodies) or odd:
        raise RuntimeError(f"engine accepted {accepted} of {len(bodies)} reports ({odd} odd)")
    events = await db.count(
        "SELECT count(*) FROM events WHERE kind IN ('status.delivered', 'status.read')"
    )
    read = await db.count("SELECT count(*) FROM messages WHERE status = 'read'")
    delivered = await db.count("SELECT count(*) FROM messages WHERE status = 'delivered'")
    expect_read = len(bodies) // 2 if dispatcher == "on" else 0
    if dispatcher == "on":
        expect_delivered = len(warmup)  # the warm-up messages got no `read`
    elif applied_at_once:
        expect_delivered = len(warmup) + len(bodies) // 2  # their `read` waits
    else:
        expect_delivered = 0  # every report waits
    if events != len(warmup) + len(bodies) or (read, delivered) != (expect_read, expect_delivered):
        raise RuntimeError(
            f"stored {events} status events, {read} read and {delivered} delivered messages"
        )
    complaints = [
        line for line in log.read_text().splitlines() if " WARNING " in line or " ERROR " in line
    ]
    if complaints:
        raise RuntimeError(f"the server complained: {complaints[:3]}")
    p50, p99 = percentiles(latencies)
    return Round(len(bodies) / elapsed, cpu / len(bodies) * 1e6, load, p50, p99, note)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=10000, help="timed webhooks per round (even)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent senders")
    parser.add_argument(
        "--dispatcher",
        choices=["on", "off"],
        default="on",
        help="on: `disparo serve` as is (reports are applied as they arrive); "
        "off: the same app without the dispatcher, to isolate ingestion",
    )
    add_store_options(parser, "sets up a fresh schema of --postgres-dsn per round")
    parser.add_argument("--ingest-only-server", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_store_options(parser, args)
    if args.ingest_only_server:
        await ingest_only_server(Path(args.ingest_only_server))
        return
    if args.requests % 2:
        parser.error("--requests must be even: a delivered and a read per message")
    print(
        f"{args.requests} webhooks per round (+{WARMUP} warm-up), {args.concurrency} senders, "
        f"dispatcher {args.dispatcher}, store {args.store}, {os.cpu_count()} CPUs",
        flush=True,
    )
    raw: list[float] = []
    eng: list[float] = []
    cpu_ratios: list[float] = []
    raw_p99: list[float] = []
    eng_p99: list[float] = []
    messages = WARMUP + args.requests // 2
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        template = RoundDb(f"sqlite:///{tmp / 'template.db'}")
        if args.store == "sqlite":  # set up once, copied for every round
            await prepare(tmp, template, messages, args.concurrency)
            warmup, bodies = await status_bodies(template)
            print(f"bodies: {len(bodies[0])} to {max(map(len, bodies))} bytes, e.g. {bodies[0]!r}")
        for round_no in range(1, args.rounds + 1):
            async with contextlib.AsyncExitStack() as stack:
                if args.store == "sqlite":
                    db = RoundDb(f"sqlite:///{tmp / f'round-{round_no}.db'}")
                    copy_sqlite(template, db)
                else:  # PostgreSQL has no cheap copy: each round sets up its own schema
                    dsn = await stack.enter_async_context(postgres_schema(args.postgres_dsn))
                    db = RoundDb(dsn)
                    await prepare(tmp, db, messages, args.concurrency)
                    warmup, bodies = await status_bodies(db)
                r = await raw_round(warmup, bodies, args.concurrency)
                e = await engine_round(tmp, db, warmup, bodies, args.concurrency, args.dispatcher)
            raw.append(r.rate)
            eng.append(e.rate)
            cpu_ratios.append(r.cpu_us / e.cpu_us)
            raw_p99.append(r.p99_ms)
            eng_p99.append(e.p99_ms)
            print(
                f"round {round_no}: raw {r.rate:.0f}/s ({r.cpu_us:.0f} µs server CPU/req, "
                f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, machine {r.busy:.0%} busy)\n"
                f"         engine {e.rate:.0f}/s ({e.cpu_us:.0f} µs/req, p50 {e.p50_ms:.1f} ms, "
                f"p99 {e.p99_ms:.1f} ms, machine {e.busy:.0%} busy; {e.note})  "
                f"ratio {e.rate / r.rate:.2f}",
                flush=True,
            )
    print(summary("raw aiohttp handler", raw))
    print(summary(f"disparo ({args.store}, dispatcher {args.dispatcher})", eng))
    medians, per_round = paired(eng, raw)
    print(f"ratio of medians {medians:.2f}x   paired ratio {per_round:.2f}x   (target >= 0.5x)")
    # The load generator, not the bare server, limits the raw rate; server CPU per
    # request says what each server could take with a faster client.
    print(
        "server CPU per request, raw/engine: median "
        f"{statistics.median(cpu_ratios):.2f}x (capacity ratio, independent of the client)"
    )
    print(
        f"p99 latency at {args.concurrency} senders: raw median "
        f"{statistics.median(raw_p99):.1f} ms, engine median "
        f"{statistics.median(eng_p99):.1f} ms (G6: target <= 30 ms, must <= 50 ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
