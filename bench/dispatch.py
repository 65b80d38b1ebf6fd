"""End-to-end dispatch throughput: disparo vs a raw aiohttp POST loop, same fake, same load.

engine: ``Engine.start_run`` (64 concurrent callers; the garbage-collector
settings of `disparo serve`) -> the dispatcher claims the due work -> rules ->
render -> the outbox row is committed ``sending`` (SQLite, synchronous=FULL,
group commit) -> POST through the ``http`` provider to a local fake gateway (its
own process) -> the answer is committed (message ``sent``, run ``completed``), at
most 64 POSTs in flight. A round's clock stops when the last run's completion is
durable.
raw: the same number of POSTs, same body shape and size, from 64 aiohttp workers
to the same kind of fake, no store.

Each round checks that the work was real: the fake counts the POSTs and distinct
message ids it received and, every ``--check-every``-th POST, reads the engine's
SQLite file from its own process and requires the message to be committed as
``sending`` already; after the round every message must be ``sent`` with a
distinct gateway id and every run ``completed``, and no warning may be logged.

Rounds alternate raw and engine, each against a fresh fake process; the script
prints every round, medians and the paired ratio (median of per-round
engine/raw). Target: >= 0.35x.

    .venv/bin/python bench/dispatch.py [--messages 10000] [--rounds 5]
                                       [--log info|off] [--check-every 10]
                                       [--store sqlite|postgres] [--postgres-dsn DSN]

``--store postgres`` runs the engine on a fresh schema of ``--postgres-dsn``
(default ``$DISPARO_TEST_POSTGRES_DSN``) per round; the fake's outbox check reads
SQLite files only, so it is off there (the store's contract tests cover the order).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
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

CONCURRENCY = 64
WARMUP = 500


@dataclass(frozen=True, slots=True)
class Round:
    rate: float  # messages per second
    cpu_us: float  # CPU of this process (raw client or engine) per message, µs
    fake_us: float  # CPU of the fake gateway per message, µs
    busy: float  # both CPUs during the timed part, 0..1
    body: float  # mean request body, bytes

    def describe(self) -> str:
        return (
            f"{self.rate:.0f}/s ({self.cpu_us:.0f} µs CPU/msg, fake {self.fake_us:.0f} µs, "
            f"machine {self.busy:.0%} busy, {self.body:.0f} B bodies)"
        )


FLOW = """
flow: bench
defaults:
  provider: gateway
  rules:
    inactivity: 10m
    window: ignore
start: aviso
steps:
  aviso:
    send:
      text: |
        Oi {{ contact.first_name }}! Seu pedido {{ context.pedido }} de {{ context.valor | brl }}
        saiu para entrega e chega {{ context.eta }}. {{ context.texto }}
    next: fim
  fim:
    end: completed
"""

FILLER = "Acompanhe pelo aplicativo ou responda esta mensagem se precisar de ajuda. " * 8


def write_config(tmp: Path, port: int, storage: str | None = None) -> Path:
    (tmp / "flows").mkdir()
    (tmp / "flows" / "bench.yaml").write_text(FLOW)
    config = {
        "storage": storage or f"sqlite:///{tmp}/bench.db",
        "api_token": "bench-token-0123456789",
        "flows": str(tmp / "flows"),
        "providers": {
            "gateway": {
                "type": "http",
                "url": f"http://127.0.0.1:{port}/send",
                "id_field": "messages.0.id",
                "max_in_flight": CONCURRENCY,
            }
        },
        "dispatcher": {"max_in_flight": CONCURRENCY, "lease_seconds": 120},
    }
    path = tmp / "disparo.yaml"
    path.write_text(json.dumps(config))
    return path


def raw_body(i: int) -> bytes:
    """A body shaped and sized like the `http` provider's (about 1 KB)."""
    text = f"Oi Maria! Seu pedido P{i} de R$ 1.670,00\nsaiu para entrega e chega hoje. {FILLER}\n"
    return json.dumps(
        {
            "idempotency_key": f"raw-{i}:aviso:1",
            "id": f"{i:08d}-0000-4000-8000-000000000000",
            "to": {"phone": f"+55119{i:08d}", "email": None},
            "channel": "whatsapp",
            "content": {"type": "text", "body": text, "preview_url": False},
            "flow": "bench",
            "step": "aviso",
            "hints": {"inactivity_minutes": 10.0},
        },
        ensure_ascii=False,
    ).encode()


async def fake_stats(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/stats") as response,
    ):
        stats: dict[str, Any] = await response.json()
        return stats


async def raw_round(n: int) -> Round:
    # Bodies and headers are built before the clock starts: the raw loop is the ceiling.
    requests = [
        (raw_body(i), {"Content-Type": "application/json", "Idempotency-Key": f"raw-{i}:aviso:1"})
        for i in range(WARMUP + n)
    ]
    port = free_port()
    with child(["bench/fake_provider.py", str(port)], port) as fake:
        url = f"http://127.0.0.1:{port}/send"
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post_all(first: int, count: int) -> None:
                queue = iter(requests[first : first + count])

                async def worker() -> None:
                    for body, headers in queue:
                        async with session.post(url, data=body, headers=headers) as answer:
                            answer.raise_for_status()
                            json.loads(await answer.read())

                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

            await post_all(0, WARMUP)
            busy, fake_cpu, cpu = MachineBusy(), process_cpu(fake.pid), time.process_time()
            started = time.perf_counter()
            await post_all(WARMUP, n)
            elapsed = time.perf_counter() - started
            cpu, fake_cpu = time.process_time() - cpu, process_cpu(fake.pid) - fake_cpu
            load = busy.stop()
        stats = await fake_stats(port)
    if stats["posts"] != WARMUP + n:
        raise RuntimeError(f"raw loop: the fake saw {stats['posts']} POSTs, not {WARMUP + n}")
    body = stats["bytes"] / stats["posts"]
    return Round(n / elapsed, cpu / n * 1e6, fake_cpu / n * 1e6, load, body)


class Complaints(logging.Handler):
    """Counts warnings and errors of the engine: a clean round has none."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


def setup_logs(mode: str) -> Complaints:
    """``info``: what `disparo serve` does (INFO lines through the redacting handler),
    written to /dev/null so the terminal is not the bottleneck; ``off``: no handler."""
    root = logging.getLogger()
    if mode == "info":
        from engine.logs import setup_logging

        setup_logging("text")
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    else:
        root.setLevel(logging.WARNING)
    complaints = Complaints()
    root.addHandler(complaints)
    return complaints


def verify_store(db_path: Path, total: int) -> None:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        statuses = dict(db.execute("SELECT status, count(*) FROM messages GROUP BY status"))
        distinct = db.execute(
            "SELECT count(DISTINCT provider_message_id) FROM messages WHERE status = 'sent'"
        ).fetchone()[0]
        runs = dict(db.execute("SELECT status, count(*) FROM runs GROUP BY status"))
    finally:
        db.close()
    if statuses != {"sent": total} or distinct != total or runs != {"completed": total}:
        raise RuntimeError(
            f"store after the round: messages {statuses}, distinct gateway ids {distinct}, "
            f"runs {runs}; expected {total} sent messages and completed runs"
        )


async def verify_postgres(dsn: str, total: int) -> None:
    """``verify_store`` for the PostgreSQL store."""
    import asyncpg

    db = await asyncpg.connect(dsn)
    try:
        rows = await db.fetch("SELECT status, count(*) FROM messages GROUP BY status")
        statuses = {row[0]: row[1] for row in rows}
        distinct = await db.fetchval(
            "SELECT count(DISTINCT provider_message_id) FROM messages WHERE status = 'sent'"
        )
        rows = await db.fetch("SELECT status, count(*) FROM runs GROUP BY status")
        runs = {row[0]: row[1] for row in rows}
    finally:
        await db.close()
    if statuses != {"sent": total} or distinct != total or runs != {"completed": total}:
        raise RuntimeError(
            f"store after the round: messages {statuses}, distinct gateway ids {distinct}, "
            f"runs {runs}; expected {total} sent messages and completed runs"
        )


async def engine_round(
    n: int, check_every: int, complaints: Complaints, postgres: str | None = None
) -> Round:
    """``postgres``: a DSN whose schema this round owns (else SQLite under a temp dir)."""
    from engine.gc_policy import tune_for_serving
    from engine.models import ContactUpsert
    from engine.runtime import Engine, open_store
    from engine.settings import load_settings

    complaints.records.clear()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        settings = load_settings(write_config(tmp, port, postgres))
        migrator = open_store(settings.storage)
        await migrator.migrate()
        await migrator.close()
        check = ["--check-db", str(tmp / "bench.db"), "--check-every", str(check_every)]
        if postgres is not None:
            check = []  # the fake reads SQLite files only: no outbox check on PostgreSQL
        with child(["bench/fake_provider.py", str(port), *check], port) as fake:
            async with Engine(settings) as engine:
                tune_for_serving()  # as `disparo serve` does once it listens
                # Incremented after the commit that records the message `sent` and the
                # run `completed` is durable.
                completed = engine.metrics.runs.labels("bench", "completed")

                async def start(i: int) -> None:
                    await engine.start_run(
                        "bench",
                        ContactUpsert(id=f"c{i}", phone=f"+55119{i:08d}", name="Maria Souza"),
                        context={
                            "pedido": f"P{i}",
                            "valor": 1670 + i,
                            "eta": "hoje",
                            "texto": FILLER,
                        },
                        idempotency_key=f"bench-{i}",
                    )

                async def start_all(first: int, count: int) -> None:
                    queue = iter(range(first, first + count))

                    async def starter() -> None:
                        for i in queue:
                            await start(i)

                    await asyncio.gather(*(starter() for _ in range(CONCURRENCY)))

                async def wait_completed(total: int) -> None:
                    # Poll the counter's own value (no scrape); 5 ms is far below a round.
                    while completed._value.get() < total:
                        if complaints.records:
                            raise RuntimeError(f"engine complained: {complaints.records[:3]}")
                        await asyncio.sleep(0.005)

                await start_all(0, WARMUP)
                await wait_completed(WARMUP)
                busy, fake_cpu, cpu = MachineBusy(), process_cpu(fake.pid), time.process_time()
                started = time.perf_counter()
                await asyncio.gather(start_all(WARMUP, n), wait_completed(WARMUP + n))
                elapsed = time.perf_counter() - started
                cpu, fake_cpu = time.process_time() - cpu, process_cpu(fake.pid) - fake_cpu
                load = busy.stop()
            stats = await fake_stats(port)
        if postgres is None:
            verify_store(tmp / "bench.db", WARMUP + n)
        else:
            await verify_postgres(postgres, WARMUP + n)
    if complaints.records:
        raise RuntimeError(f"engine complained: {complaints.records[:3]}")
    if stats["posts"] != WARMUP + n or stats["message_ids"] != WARMUP + n:
        raise RuntimeError(f"the fake saw {stats}; expected {WARMUP + n} distinct POSTs")
    if (postgres is None and not stats["checked"]) or stats["not_sending"]:
        raise RuntimeError(f"outbox not durable before the POST: {stats}")
    body = stats["bytes"] / stats["posts"]
    return Round(n / elapsed, cpu / n * 1e6, fake_cpu / n * 1e6, load, body)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000, help="timed messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--log",
        choices=["info", "off"],
        default="info",
        help="engine logging: info (as `disparo serve`, to /dev/null) or off",
    )
    parser.add_argument(
        "--check-every",
        type=int,
        default=10,
        help="the fake checks the outbox row of every N-th POST in the engine's database",
    )
    add_store_options(parser, "uses a fresh schema of --postgres-dsn per round")
    args = parser.parse_args()
    check_store_options(parser, args)
    complaints = setup_logs(args.log)
    print(
        f"{args.messages} messages per round (+{WARMUP} warm-up), {CONCURRENCY} in flight, "
        f"engine logging {args.log}, {os.cpu_count()} CPUs",
        flush=True,
    )
    raw: list[Round] = []
    eng: list[Round] = []
    for round_no in range(1, args.rounds + 1):
        raw.append(await raw_round(args.messages))
        if args.store == "postgres":
            async with postgres_schema(args.postgres_dsn) as dsn:
                eng.append(await engine_round(args.messages, args.check_every, complaints, dsn))
        else:
            eng.append(await engine_round(args.messages, args.check_every, complaints))
        print(
            f"round {round_no}: raw {raw[-1].describe()}\n"
            f"         engine {eng[-1].describe()}  ratio {eng[-1].rate / raw[-1].rate:.2f}",
            flush=True,
        )
    raw_rates, eng_rates = [r.rate for r in raw], [r.rate for r in eng]
    print(summary("raw aiohttp POST loop", raw_rates))
    print(
        summary(
            "disparo (sqlite, FULL)" if args.store == "sqlite" else "disparo (postgres)", eng_rates
        )
    )
    medians, per_round = paired(eng_rates, raw_rates)
    print(f"ratio of medians {medians:.2f}x   paired ratio {per_round:.2f}x   (target >= 0.35x)")
    cpu = statistics.median(e.cpu_us / r.cpu_us for e, r in zip(eng, raw, strict=True))
    print(f"engine CPU per message / raw client CPU per message: median {cpu:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
