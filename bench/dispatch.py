"""End-to-end dispatch throughput: disparo vs a raw aiohttp POST loop, same fake, same run.

engine: run creation -> rules -> render -> outbox row durable -> POST through the
`http` provider to a local fake (own process) -> result recorded, 64 in flight.
raw: the same number of 1 KB JSON POSTs from 64 aiohttp workers to the same fake.

Rounds alternate raw and engine; the script prints medians and the paired ratio
(median of per-round engine/raw). Target: >= 0.35x on SQLite.

    .venv/bin/python bench/dispatch.py [--messages 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import child, free_port, paired, summary

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


def write_config(tmp: Path, port: int, store: str) -> Path:
    (tmp / "flows").mkdir()
    (tmp / "flows" / "bench.yaml").write_text(FLOW)
    storage = f"sqlite:///{tmp}/bench.db" if store == "sqlite" else store
    config = {
        "storage": storage,
        "api_token": "bench-token",
        "flows": str(tmp / "flows"),
        "providers": {
            "gateway": {
                "type": "http",
                "url": f"http://127.0.0.1:{port}/send",
                "id_field": "messages.0.id",
                "max_in_flight": 64,
            }
        },
        "dispatcher": {"max_in_flight": 64, "lease_seconds": 120},
    }
    path = tmp / "disparo.yaml"
    path.write_text(json.dumps(config))
    return path


async def raw_round(port: int, n: int) -> float:
    body = json.dumps({"to": "+5511999998888", "text": "x" * 960}).encode()
    url = f"http://127.0.0.1:{port}/send"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def post_all(count: int) -> None:
            numbers = iter(range(count))

            async def worker() -> None:
                for _ in numbers:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()

            await asyncio.gather(*(worker() for _ in range(64)))

        await post_all(500)
        started = time.perf_counter()
        await post_all(n)
        return n / (time.perf_counter() - started)


async def engine_round(port: int, n: int, store: str) -> float:
    from engine.models import ContactUpsert
    from engine.runtime import Engine
    from engine.settings import load_settings

    with tempfile.TemporaryDirectory() as tmpdir:
        settings = load_settings(write_config(Path(tmpdir), port, store))
        from engine.runtime import open_store

        migrator = open_store(settings.storage)
        await migrator.migrate()
        await migrator.close()
        async with Engine(settings) as engine:
            sent = engine.metrics.messages.labels("gateway", "sent")

            async def start(i: int) -> None:
                await engine.start_run(
                    "bench",
                    ContactUpsert(id=f"c{i}", phone=f"+55119{i:08d}", name="Maria Souza"),
                    context={"pedido": f"P{i}", "valor": 1670 + i, "eta": "hoje", "texto": FILLER},
                    idempotency_key=f"bench-{i}",
                )

            async def start_all(first: int, count: int) -> None:
                queue = iter(range(first, first + count))

                async def starter() -> None:
                    for i in queue:
                        await start(i)

                await asyncio.gather(*(starter() for _ in range(64)))

            async def wait_sent(total: int) -> None:
                # Poll the counter's own value (no scrape); 5 ms is far below a round.
                while sent._value.get() < total:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)

            await start_all(0, 500)
            await wait_sent(500)
            started = time.perf_counter()
            await asyncio.gather(start_all(500, n), wait_sent(500 + n))
            elapsed = time.perf_counter() - started
            failed = engine.metrics.messages.labels("gateway", "failed")._value.get()
            if failed:
                raise RuntimeError(f"{failed} messages failed during the benchmark")
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// DSN")
    args = parser.parse_args()
    raw: list[float] = []
    eng: list[float] = []
    for round_no in range(1, args.rounds + 1):
        port = free_port()
        with child(["bench/fake_provider.py", str(port)], port):
            raw.append(await raw_round(port, args.messages))
        port = free_port()
        with child(["bench/fake_provider.py", str(port)], port):
            eng.append(await engine_round(port, args.messages, args.store))
        ratio = eng[-1] / raw[-1]
        print(f"round {round_no}: raw {raw[-1]:.0f}/s  engine {eng[-1]:.0f}/s  ratio {ratio:.2f}")
    print(summary("raw aiohttp POST loop", raw))
    print(summary(f"disparo ({args.store})", eng))
    medians, per_round = paired(eng, raw)
    print(f"ratio of medians {medians:.2f}x   paired ratio {per_round:.2f}x   (target >= 0.35x)")


if __name__ == "__main__":
    asyncio.run(main())
