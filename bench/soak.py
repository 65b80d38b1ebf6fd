"""Soak: `disparo serve` under steady load, provider faults and kill -9, watched for drift.

What runs: the fake in-house gateway (``tests.fakes.gateway``, deduplicating by
idempotency key) behind an ``http`` provider; ``disparo serve`` on SQLite
(synchronous=FULL), or ``--processes`` of them on one fresh schema of a PostgreSQL
database (``--store postgres``), with a two-message flow (send, wait 20 s, send
again) so timers and waiting runs are part of the load; a load generator starting
runs over the API at ``--rate`` per second with unique idempotency keys, spread over
the processes in turn, retrying a refused or unanswered start with the same key on
the next process (as a load balancer would).

Faults, on a fixed schedule so two sittings are comparable:

- every 60 s a burst of 3 requests answered 503, fewer than the circuit's
  threshold (P2: backoff and retry);
- every 150 s a 15 s outage, every request answered 503 (P7: the circuit opens,
  one probe per cooldown, closes once the gateway answers again);
- with ``--kill-every S``, ``kill -9`` of an engine (one drawn at random) about every
  S seconds (uniform in 0.5 S .. 1.5 S), restarted at once (D3); with PostgreSQL
  the other processes take over its leases meanwhile.

Every ``--sample`` seconds it prints each engine's RSS and open file descriptors
(from /proc), the WAL (SQLite) and database sizes, the due-work rows (queue depth),
the runs still active or waiting, and the messages still queued or sending. At the end
it stops the load, waits for every run to finish and checks that nothing was lost
or sent twice: each run ``completed``, each message ``sent``, the gateway got every
key and accepted each once. The drift summary compares the first and last thirds
of each engine process's samples (a kill resets RSS, so only samples of one
process are compared with each other).

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 60] [--kill-every 0]
                                   [--sample 10] [--latency 0.02]
                                   [--store sqlite|postgres] [--postgres-dsn DSN]
                                   [--processes 1]

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    add_store_options,
    check_store_options,
    create_schema,
    drop_schema,
    free_port,
    wait_for_port,
)
from bench.soak_store import PostgresProbe, Probe, Queue, SQLiteProbe

TOKEN = "soak-token-0123456789"
GATEWAY_AUTH = "Bearer gw-test-token-0123456789"
FLOW = """\
flow: soak
description: Two messages 20 s apart through the in-house gateway.
defaults:
  provider: gateway
  rules:
    window: ignore
start: primeiro
steps:
  primeiro:
    send:
      text: "Oi {{ contact.first_name }}! Seu pedido {{ context.n }} foi recebido."
    next: pausa
  pausa:
    wait: 20s
    next: segundo
  segundo:
    send:
      text: "Pedido {{ context.n }} saiu para entrega."
    next: fim
  fim:
    end: completed
"""


def request(url: str, body: Any = None, *, token: str | None = TOKEN) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, None


@dataclass
class Engine:
    """``disparo serve`` as a child process that can be killed and restarted."""

    number: int
    config: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0

    @property
    def label(self) -> str:
        """``2.3``: the second engine, started for the third time."""
        return f"{self.number}.{self.generation}"

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "disparo"), "serve", "--config", str(self.config)],
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
        out.close()
        self.generation += 1
        wait_for_port(self.port, timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@dataclass
class Load:
    """Starts runs at a steady rate, on the engines in turn; a start that fails is
    retried with its key on the next engine."""

    bases: list[str]
    rate: float
    started: list[str] = field(default_factory=list)
    retries: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def start_one(self, n: int) -> None:
        body = {
            "flow": "soak",
            "contact": {"id": f"soak-{n}", "phone": f"+5511{960000000 + n}", "name": "Ana Lima"},
            "context": {"n": n},
            "idempotency_key": f"soak-run-{n}",
        }
        for attempt in itertools.count():
            base = self.bases[(n + attempt) % len(self.bases)]
            try:
                status, answer = request(f"{base}/v1/runs", body)
            except OSError:
                status, answer = 0, None
            if status in (200, 201):
                self.started.append(answer["run_id"])
                return
            self.retries += 1
            time.sleep(0.2)

    def run(self) -> None:
        begin = time.monotonic()
        n = 0
        with ThreadPoolExecutor(max_workers=16) as pool:
            while not self.stop.is_set():
                due = begin + n / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self.start_one, n)
                n += 1


@dataclass(frozen=True)
class Process:
    """One engine process at one sample: which one, its RSS and open descriptors."""

    label: str
    rss_mb: float
    fds: int


@dataclass
class Sample:
    at: float
    processes: list[Process]
    queue: Queue
    started: int


def process_figures(engine: Engine) -> Process:
    assert engine.proc is not None
    pid = engine.proc.pid
    rss_kb = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = -1
    return Process(engine.label, rss_kb / 1024, fds)


def take_sample(engines: list[Engine], probe: Probe, started: int, at: float) -> Sample:
    return Sample(at, [process_figures(e) for e in engines], probe.queue(), started)


def print_sample(sample: Sample) -> None:
    queue = sample.queue
    processes = "  ".join(f"{p.label:>4} {p.rss_mb:6.1f} {p.fds:3}" for p in sample.processes)
    print(
        f"{sample.at:6.0f}  {processes}  {queue.log_mb:6.1f}  {queue.db_mb:6.1f}  "
        f"{queue.due:5}  {queue.open_runs:9}  {queue.unsent:6}  {sample.started:7}",
        flush=True,
    )


def script_fault(gateway: str, **fault: Any) -> None:
    request(f"{gateway}/_faults", fault, token=None)


def drift(samples: list[Sample]) -> list[str]:
    """Per engine process (one start of one engine): first third vs last third of its
    samples; the queue figures are the whole deployment's over those samples."""
    lines = []
    labels = dict.fromkeys(p.label for s in samples for p in s.processes)
    for label in labels:
        mine = [
            (process, sample.queue)
            for sample in samples
            for process in sample.processes
            if process.label == label
        ]
        if len(mine) < 6:
            continue
        third = len(mine) // 3
        head, tail = mine[:third], mine[-third:]
        figures = [("rss_mb", 0), ("fds", 0), ("log_mb", 1), ("due", 1), ("unsent", 1)]
        for name, side in figures:
            a = statistics.median(getattr(pair[side], name) for pair in head)
            b = statistics.median(getattr(pair[side], name) for pair in tail)
            top = max(getattr(pair[side], name) for pair in mine)
            lines.append(
                f"process {label}: {name:7} first third {a:8.1f}  last third {b:8.1f}"
                f"  max {top:8.1f}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=60.0, help="runs started per second")
    parser.add_argument("--kill-every", type=float, default=0.0, help="seconds; 0: no kills")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--latency", type=float, default=0.02, help="gateway answer delay")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--processes", type=int, default=1, help="engines sharing the work (postgres only)"
    )
    add_store_options(parser, "uses a fresh schema of --postgres-dsn, dropped afterwards")
    args = parser.parse_args()
    check_store_options(parser, args)
    if args.processes < 1:
        parser.error("--processes must be 1 or more")
    if args.processes > 1 and args.store != "postgres":
        parser.error("--processes above 1 needs --store postgres: SQLite serves one process")

    tmp = Path(tempfile.mkdtemp(prefix="disparo-soak-"))
    schema = None
    if args.store == "postgres":
        schema, storage = asyncio.run(create_schema(args.postgres_dsn))
    else:
        storage = f"sqlite:///{tmp / 'disparo.db'}"
    try:
        return soak(args, tmp, storage)
    finally:
        if schema is not None:
            asyncio.run(drop_schema(args.postgres_dsn, schema))


def write_configs(tmp: Path, storage: str, gateway_url: str, processes: int) -> list[Engine]:
    (tmp / "flows").mkdir()
    (tmp / "flows" / "soak.yaml").write_text(FLOW, encoding="utf-8")
    engines = []
    for number in range(1, processes + 1):
        port = free_port()
        config = {
            "storage": storage,
            "server": {"host": "127.0.0.1", "port": port},
            "api_token": TOKEN,
            "timezone": "America/Sao_Paulo",
            "log_format": "text",
            "flows": str(tmp / "flows"),
            "templates": str(ROOT / "config" / "templates.yaml"),
            "dispatcher": {"lease_seconds": 5, "breaker_cooldown": 5, "breaker_cooldown_cap": 20},
            "providers": {
                "gateway": {
                    "type": "http",
                    "url": f"{gateway_url}/v1/messages",
                    "headers": {"Authorization": GATEWAY_AUTH},
                    "idempotency_header": "Idempotency-Key",
                    "id_field": "messages.0.id",
                    "timeout": 5,
                    "max_in_flight": 32,
                    "channels": ["whatsapp"],
                    "read_receipts": False,
                }
            },
        }
        path = tmp / f"disparo-{number}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        engines.append(Engine(number, path, port, tmp / f"serve-{number}.log"))
    return engines


def soak(args: argparse.Namespace, tmp: Path, storage: str) -> int:
    rng = random.Random(args.seed)
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    engines = write_configs(tmp, storage, gateway_url, args.processes)
    disparo = str(Path(sys.executable).parent / "disparo")
    subprocess.run([disparo, "migrate", "--config", str(engines[0].config)], check=True, cwd=ROOT)
    probe: Probe = (
        PostgresProbe(storage) if args.store == "postgres" else SQLiteProbe(tmp / "disparo.db")
    )

    gateway_log = (tmp / "gateway.log").open("ab")
    fake = ["-m", "tests.fakes.gateway", "--port", str(gateway_port)]
    gateway = subprocess.Popen(
        [sys.executable, *fake, "--latency", str(args.latency)],
        cwd=ROOT,
        stdout=gateway_log,
        stderr=gateway_log,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wait_for_port(gateway_port)
    for engine in engines:
        engine.start()
    load = Load([f"http://127.0.0.1:{engine.port}" for engine in engines], args.rate)
    loader = threading.Thread(target=load.run, daemon=True)
    duration = args.minutes * 60
    kill_every = f"one every ~{args.kill_every:g}s" if args.kill_every else "never"
    where = f"{args.processes} process(es) on PostgreSQL" if args.store == "postgres" else "SQLite"
    print(
        f"soak: {args.minutes:g} min, {args.rate:g} runs/s (2 messages each), {where}, "
        f"gateway latency {args.latency * 1000:.0f} ms, kill -9 {kill_every}; files in {tmp}",
        flush=True,
    )
    heads = "  ".join("proc RSS MB fds" for _ in engines)
    print(f"     t  {heads}  WAL MB   DB MB    due  open runs  unsent  started", flush=True)
    samples: list[Sample] = []
    kills = bursts = outages = 0
    begin = time.monotonic()
    loader.start()
    next_sample, next_burst = 0.0, 60.0
    next_outage = 150.0
    next_kill = args.kill_every * rng.uniform(0.5, 1.5) if args.kill_every else float("inf")
    failures: list[str] = []
    try:
        while (now := time.monotonic() - begin) < duration:
            if now >= next_burst:
                script_fault(gateway_url, kind="error", status=503, times=3)
                bursts += 1
                next_burst += 60
            if now >= next_outage:
                script_fault(gateway_url, kind="error", status=503, seconds=15)
                outages += 1
                next_outage += 150
            if now >= next_kill:
                victim = rng.choice(engines)
                victim.kill()
                victim.start()
                kills += 1
                next_kill = now + args.kill_every * rng.uniform(0.5, 1.5)
            if now >= next_sample:
                sample = take_sample(engines, probe, len(load.started), now)
                samples.append(sample)
                print_sample(sample)
                next_sample += args.sample
            time.sleep(0.2)
        load.stop.set()
        loader.join()
        drain_began = time.monotonic()
        run_ids = list(load.started)
        while True:
            queue = probe.queue()
            if queue.open_runs == 0 and queue.unsent == 0:
                break
            if time.monotonic() - drain_began > 300:
                failures.append(f"not drained after 300 s: {queue}")
                break
            time.sleep(1)
        drained = time.monotonic() - drain_began
        tally = probe.tally()
        status, stats = request(f"{gateway_url}/_stats", token=None)
        assert status == 200
    finally:
        load.stop.set()
        for engine in engines:
            engine.stop()
        probe.close()
        gateway.terminate()
        gateway.wait()
        gateway_log.close()

    total = len(run_ids)
    print(
        f"\nstarted {total} runs ({load.retries} start retries), {kills} kill -9, "
        f"{bursts} 503 bursts, {outages} outages; drained {drained:.1f} s after the load"
    )
    print(f"runs by status: {tally.runs}; messages by status: {tally.messages}")
    delivered = stats["delivered_keys"]
    print(
        f"gateway: {stats['requests']} requests, {len(delivered)} keys delivered, "
        f"{len(stats['duplicates'])} delivered twice"
    )
    if len(set(run_ids)) != total:
        failures.append(f"a start answered another start's run: {total - len(set(run_ids))}")
    if tally.runs != {"completed": total}:
        failures.append(f"runs not all completed: {tally.runs}")
    if tally.messages != {"sent": 2 * total}:
        failures.append(f"messages not all sent: {tally.messages}")
    if set(delivered) != tally.keys:
        failures.append(
            f"gateway keys differ from the stored ones: {len(delivered)}, {len(tally.keys)}"
        )
    if stats["duplicates"]:
        failures.append(f"keys delivered twice: {len(stats['duplicates'])}")
    print("\ndrift (medians of each engine process's first and last thirds of samples):")
    for line in drift(samples):
        print("  " + line)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
