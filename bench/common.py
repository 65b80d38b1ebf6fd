"""Shared benchmark plumbing: child servers, free ports, medians and paired ratios."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextmanager
def child(
    args: list[str], port: int, *, log: Path | None = None, stop_timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A fresh server process for one measurement, stopped (SIGTERM) afterwards.

    ``log``: a file for its stdout and stderr (default: inherited).
    """
    with open(log, "ab") if log is not None else open(os.devnull, "rb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out if log is not None else None,
            stderr=out if log is not None else None,
        )
        try:
            wait_for_port(port)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MachineBusy:
    """How busy all CPUs were between ``start()`` and ``stop()`` (0..1, from /proc/stat)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        busy, total = self._read()
        return (busy - self._start[0]) / max(1, total - self._start[1])


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name:<28} median {statistics.median(values):>9.0f}/s  "
        f"min {min(values):>9.0f}  max {max(values):>9.0f}  (n={len(values)})"
    )


def paired(engine: list[float], raw: list[float]) -> tuple[float, float]:
    """(ratio of medians, median of per-round ratios)."""
    ratio_of_medians = statistics.median(engine) / statistics.median(raw)
    per_round = statistics.median(e / r for e, r in zip(engine, raw, strict=True))
    return ratio_of_medians, per_round


async def create_schema(dsn: str) -> tuple[str, str]:
    """A fresh schema of the PostgreSQL database ``dsn``: (its name, a DSN on it)."""
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(dsn)
    query = urlencode([*parse_qsl(parts.query), ("search_path", name)])
    return name, urlunsplit(parts._replace(query=query))


async def drop_schema(dsn: str, name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def postgres_schema(dsn: str) -> AsyncIterator[str]:
    """A DSN on a fresh schema of the PostgreSQL database ``dsn`` (dropped afterwards)."""
    name, schema_dsn = await create_schema(dsn)
    try:
        yield schema_dsn
    finally:
        await drop_schema(dsn, name)


def add_store_options(parser: argparse.ArgumentParser, per_round: str) -> None:
    """``--store`` and ``--postgres-dsn``; ``per_round``: what postgres does per round."""
    parser.add_argument(
        "--store",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help=f"the engine's store; postgres {per_round}",
    )
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get("DISPARO_TEST_POSTGRES_DSN"),
        help="PostgreSQL database for --store postgres (default: $DISPARO_TEST_POSTGRES_DSN)",
    )


def check_store_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.store == "postgres" and not args.postgres_dsn:
        parser.error("--store postgres needs --postgres-dsn or DISPARO_TEST_POSTGRES_DSN")
