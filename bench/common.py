"""Shared benchmark plumbing: child servers, free ports, medians and paired ratios."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
def child(args: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A fresh server process for one measurement, stopped afterwards."""
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        wait_for_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
