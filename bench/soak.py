"""Soak: `disparo serve` under steady load, provider faults and kill -9, watched for drift.

What runs: the fake in-house gateway (``tests.fakes.gateway``, deduplicating by
idempotency key) behind an ``http`` provider; ``disparo serve`` on SQLite
(synchronous=FULL) with a two-message flow (send, wait 20 s, send again) so timers
and waiting runs are part of the load; a load generator starting runs over the API
at ``--rate`` per second with unique idempotency keys, retrying a refused or
unanswered start with the same key.

Faults, on a fixed schedule so two sittings are comparable:

- every 60 s a burst of 3 requests answered 503, fewer than the circuit's
  threshold (P2: backoff and retry);
- every 150 s a 15 s outage, every request answered 503 (P7: the circuit opens,
  one probe per cooldown, closes once the gateway answers again);
- with ``--kill-every S``, ``kill -9`` of the engine about every S seconds (uniform in
  0.5 S .. 1.5 S), restarted at once (D3).

Every ``--sample`` seconds it prints the engine's RSS and open file descriptors
(from /proc), the WAL and database sizes, the due-work rows (queue depth), the
runs still active or waiting, and the messages still queued or sending. At the end
it stops the load, waits for every run to finish and checks that nothing was lost
or sent twice: each run ``completed``, each message ``sent``, the gateway got every
key and accepted each once. The drift summary compares the first and last thirds
of each engine process's samples (a kill resets RSS, so only samples of one
process are compared with each other).

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 60] [--kill-every 0]
                                   [--sample 10] [--latency 0.02]

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
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

from bench.common import ROOT, free_port, wait_for_port

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

    config: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0

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
    """Starts runs at a steady rate; a start that fails is retried with its key."""

    base: str
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
        while True:
            try:
                status, answer = request(f"{self.base}/v1/runs", body)
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


@dataclass
class Sample:
    at: float
    generation: int
    rss_mb: float
    fds: int
    wal_mb: float
    db_mb: float
    due: int
    open_runs: int
    unsent: int
    started: int


def take_sample(engine: Engine, db: Path, started: int, at: float) -> Sample:
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
    wal = db.with_name(db.name + "-wal")
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
        due = con.execute("SELECT count(*) FROM due_work").fetchone()[0]
        open_runs = con.execute(
            "SELECT count(*) FROM runs WHERE status IN ('active', 'waiting')"
        ).fetchone()[0]
        unsent = con.execute(
            "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')"
        ).fetchone()[0]
    return Sample(
        at=at,
        generation=engine.generation,
        rss_mb=rss_kb / 1024,
        fds=fds,
        wal_mb=(wal.stat().st_size if wal.exists() else 0) / 2**20,
        db_mb=db.stat().st_size / 2**20,
        due=due,
        open_runs=open_runs,
        unsent=unsent,
        started=started,
    )


def script_fault(gateway: str, **fault: Any) -> None:
    request(f"{gateway}/_faults", fault, token=None)


def drift(samples: list[Sample]) -> list[str]:
    """Per engine process: first third vs last third of its samples."""
    lines = []
    for generation in sorted({s.generation for s in samples}):
        mine = [s for s in samples if s.generation == generation]
        if len(mine) < 6:
            continue
        third = len(mine) // 3
        head, tail = mine[:third], mine[-third:]
        for name in ("rss_mb", "fds", "wal_mb", "due", "unsent"):
            a = statistics.median(getattr(s, name) for s in head)
            b = statistics.median(getattr(s, name) for s in tail)
            lines.append(
                f"process {generation}: {name:7} first third {a:8.1f}  last third {b:8.1f}"
                f"  max {max(getattr(s, name) for s in mine):8.1f}"
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
    args = parser.parse_args()
    rng = random.Random(args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="disparo-soak-"))
    (tmp / "flows").mkdir()
    (tmp / "flows" / "soak.yaml").write_text(FLOW, encoding="utf-8")
    gateway_port, port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    db = tmp / "disparo.db"
    config = {
        "storage": f"sqlite:///{db}",
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
    config_path = tmp / "disparo.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    disparo = str(Path(sys.executable).parent / "disparo")
    subprocess.run([disparo, "migrate", "--config", str(config_path)], check=True, cwd=ROOT)

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
    engine = Engine(config_path, port, tmp / "serve.log")
    engine.start()
    base = f"http://127.0.0.1:{port}"
    load = Load(base, args.rate)
    loader = threading.Thread(target=load.run, daemon=True)
    duration = args.minutes * 60
    kill_every = f"every ~{args.kill_every:g}s" if args.kill_every else "never"
    print(
        f"soak: {args.minutes:g} min, {args.rate:g} runs/s (2 messages each), gateway latency "
        f"{args.latency * 1000:.0f} ms, kill -9 {kill_every}; files in {tmp}",
        flush=True,
    )
    print(
        "     t  proc   RSS MB  fds  WAL MB  DB MB    due  open runs  unsent  started",
        flush=True,
    )
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
                engine.kill()
                engine.start()
                kills += 1
                next_kill = now + args.kill_every * rng.uniform(0.5, 1.5)
            if now >= next_sample:
                sample = take_sample(engine, db, len(load.started), now)
                samples.append(sample)
                print(
                    f"{now:6.0f}  {sample.generation:4}  {sample.rss_mb:7.1f}  {sample.fds:3}  "
                    f"{sample.wal_mb:6.1f}  {sample.db_mb:5.1f}  {sample.due:5}  "
                    f"{sample.open_runs:9}  {sample.unsent:6}  {sample.started:7}",
                    flush=True,
                )
                next_sample += args.sample
            time.sleep(0.2)
        load.stop.set()
        loader.join()
        drain_began = time.monotonic()
        run_ids = list(load.started)
        while True:
            sample = take_sample(engine, db, len(run_ids), time.monotonic() - begin)
            if sample.open_runs == 0 and sample.unsent == 0:
                break
            if time.monotonic() - drain_began > 300:
                failures.append(f"not drained after 300 s: {sample}")
                break
            time.sleep(1)
        drained = time.monotonic() - drain_began
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            runs = dict(con.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
            messages = dict(
                con.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall()
            )
            keys = {k for (k,) in con.execute("SELECT idempotency_key FROM messages")}
        status, stats = request(f"{gateway_url}/_stats", token=None)
        assert status == 200
    finally:
        load.stop.set()
        engine.stop()
        gateway.terminate()
        gateway.wait()
        gateway_log.close()

    total = len(run_ids)
    print(
        f"\nstarted {total} runs ({load.retries} start retries), {kills} kill -9, "
        f"{bursts} 503 bursts, {outages} outages; drained {drained:.1f} s after the load"
    )
    print(f"runs by status: {runs}; messages by status: {messages}")
    delivered = stats["delivered_keys"]
    print(
        f"gateway: {stats['requests']} requests, {len(delivered)} keys delivered, "
        f"{len(stats['duplicates'])} delivered twice"
    )
    if runs != {"completed": total}:
        failures.append(f"runs not all completed: {runs}")
    if messages != {"sent": 2 * total}:
        failures.append(f"messages not all sent: {messages}")
    if set(delivered) != keys:
        failures.append(f"gateway keys differ from the stored ones: {len(delivered)}, {len(keys)}")
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
