"""End-to-end dispatch throughput: disparo vs a raw aiohttp POST loop, same fake, same load.

engine: ``Engine.start_run`` (64 concurrent callers) -> the dispatcher claims the
due work -> rules -> render -> the outbox row is committed ``sending`` (SQLite,
synchronous=FULL, group commit) -> POST through the ``http`` provider to a local
fake gateway (its own process) -> the answer is committed (message ``sent``, run
``completed``), at most 64 POSTs in flight. A round's clock stops when the last
run's completion is durable.
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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import child, free_port, paired, summary

CONCURRENCY = 64
WARMUP = 500

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


def write_config(tmp: Path, port: int) -> Path:
    (tmp / "flows").mkdir()
    (tmp / "flows" / "bench.yaml").write_text(FLOW)
    config = {
        "storage": f"sqlite:///{tmp}/bench.db",
        "api_token": "bench-token",
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
    text = (
        f"Oi Maria! Seu pedido P{i} de R$ 1.670,00\nsaiu para entrega e chega hoje. {FILLER}\n"
    )
    return json.dumps(
        {
            "idempotency_key": f"raw-{i}:aviso:1",
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


async def raw_round(n: int) -> float:
    port = free_port()
    with child(["bench/fake_provider.py", str(port)], port):
        url = f"http://127.0.0.1:{port}/send"
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post_all(first: int, count: int) -> None:
                numbers = iter(range(first, first + count))

                async def worker() -> None:
                    for i in numbers:
                        headers = {
                            "Content-Type": "application/json",
                            "Idempotency-Key": f"raw-{i}:aviso:1",
                        }
                        async with session.post(url, data=raw_body(i), headers=headers) as answer:
                            answer.raise_for_status()
                            json.loads(await answer.read())

                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

            await post_all(0, WARMUP)
            started = time.perf_counter()
            await post_all(WARMUP, n)
            elapsed = time.perf_counter() - started
        stats = await fake_stats(port)
    if stats["posts"] != WARMUP + n:
        raise RuntimeError(f"raw loop: the fake saw {stats['posts']} POSTs, not {WARMUP + n}")
    return n / elapsed


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


async def engine_round(n: int, check_every: int, complaints: Complaints) -> float:
    from engine.models import ContactUpsert
    from engine.runtime import Engine, open_store
    from engine.settings import load_settings

    complaints.records.clear()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        settings = load_settings(write_config(tmp, port))
        migrator = open_store(settings.storage)
        await migrator.migrate()
        await migrator.close()
        check = ["--check-db", str(tmp / "bench.db"), "--check-every", str(check_every)]
        with child(["bench/fake_provider.py", str(port), *check], port):
            async with Engine(settings) as engine:
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
                    while completed._value.get() < total:  # noqa: ASYNC110
                        if complaints.records:
                            raise RuntimeError(f"engine complained: {complaints.records[:3]}")
                        await asyncio.sleep(0.005)

                await start_all(0, WARMUP)
                await wait_completed(WARMUP)
                started = time.perf_counter()
                await asyncio.gather(start_all(WARMUP, n), wait_completed(WARMUP + n))
                elapsed = time.perf_counter() - started
            stats = await fake_stats(port)
        verify_store(tmp / "bench.db", WARMUP + n)
    if complaints.records:
        raise RuntimeError(f"engine complained: {complaints.records[:3]}")
    if stats["posts"] != WARMUP + n or stats["message_ids"] != WARMUP + n:
        raise RuntimeError(f"the fake saw {stats}; expected {WARMUP + n} distinct POSTs")
    if not stats["checked"] or stats["not_sending"]:
        raise RuntimeError(f"outbox not durable before the POST: {stats}")
    return n / elapsed


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
    args = parser.parse_args()
    complaints = setup_logs(args.log)
    print(
        f"{args.messages} messages per round (+{WARMUP} warm-up), {CONCURRENCY} in flight, "
        f"engine logging {args.log}, {os.cpu_count()} CPUs",
        flush=True,
    )
    raw: list[float] = []
    eng: list[float] = []
    for round_no in range(1, args.rounds + 1):
        raw.append(await raw_round(args.messages))
        eng.append(await engine_round(args.messages, args.check_every, complaints))
        ratio = eng[-1] / raw[-1]
        print(
            f"round {round_no}: raw {raw[-1]:.0f}/s  engine {eng[-1]:.0f}/s  ratio {ratio:.2f}",
            flush=True,
        )
    print(summary("raw aiohttp POST loop", raw))
    print(summary("disparo (sqlite, FULL)", eng))
    medians, per_round = paired(eng, raw)
    print(f"ratio of medians {medians:.2f}x   paired ratio {per_round:.2f}x   (target >= 0.35x)")


if __name__ == "__main__":
    asyncio.run(main())
