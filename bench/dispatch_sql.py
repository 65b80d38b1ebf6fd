"""Where the SQLite time of a dispatch goes: every statement's cost per message.

Runs one engine round of ``bench/dispatch.py`` (same flow, fake provider, checks)
with the store's connection wrapped so each ``execute``/``executemany`` is timed,
then prints the statements by total time per dispatched message, with how many
run per message and what one costs. The wrapper adds a Python call per
statement, so the round's rate is lower than ``dispatch.py``'s; the split between
statements is what to read.

    .venv/bin/python bench/dispatch_sql.py [--messages 4000] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import sys
import time
import types
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dispatch

from storage import sqlite_schema

SPENT: defaultdict[str, float] = defaultdict(float)
CALLS: Counter[str] = Counter()


class TimedConnection(sqlite3.Connection):
    """A connection that adds each statement's wall time to ``SPENT``."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        started = time.perf_counter()
        try:
            return super().execute(sql, *args)
        finally:
            SPENT[sql] += time.perf_counter() - started
            CALLS[sql] += 1

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        started = time.perf_counter()
        try:
            return super().executemany(sql, *args)
        finally:
            key = "(many) " + sql
            SPENT[key] += time.perf_counter() - started
            CALLS[key] += 1


def timed_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    kwargs["factory"] = TimedConnection
    connection: sqlite3.Connection = sqlite3.connect(*args, **kwargs)
    return connection


def time_the_store_connection() -> None:
    """Give ``sqlite_schema`` (which opens the store's connection) a ``sqlite3`` whose
    ``connect`` makes timed connections; every other connection stays plain."""
    module = types.SimpleNamespace(**vars(sqlite3))
    module.connect = timed_connect
    vars(sqlite_schema)["sqlite3"] = module


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000, help="timed messages")
    parser.add_argument("--top", type=int, default=25, help="statements to print")
    args = parser.parse_args()
    time_the_store_connection()
    complaints = dispatch.setup_logs("off")
    result = await dispatch.engine_round(args.messages, 10, complaints)
    total = args.messages + dispatch.WARMUP
    print(f"round (timed statements): {result.describe()}")
    per_message = sum(SPENT.values()) / total * 1e6
    print(f"SQLite statements: {per_message:.0f} µs and {sum(CALLS.values()) / total:.1f} calls")
    print("per message (warm-up included); COMMIT includes its fsync\n")
    print(f"{'µs/msg':>8} {'calls/msg':>9} {'µs/call':>8}  statement")
    for sql, spent in sorted(SPENT.items(), key=lambda item: -item[1])[: args.top]:
        text = re.sub(r"\s+", " ", sql)
        print(
            f"{spent / total * 1e6:8.1f} {CALLS[sql] / total:9.2f} "
            f"{spent / CALLS[sql] * 1e6:8.1f}  {text[:96]}"
        )


if __name__ == "__main__":
    asyncio.run(main())
