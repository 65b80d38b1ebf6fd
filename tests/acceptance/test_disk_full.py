"""A full disk under a running `disparo serve`: refused, never half-written, never lost.

The SQLite database lives on a small tmpfs of its own. While runs are being sent,
a filler file takes every free byte. From then on every commit fails with
SQLITE_FULL (until SQLite has reused the room its WAL file already had): new runs
are refused with 503, so callers retry; a send the gateway answered whose outcome
could not be recorded keeps that answer and records it once there is room (never
sent again for it); the process stays up and says why in its log. Deleting the
filler is all an operator does: the refused requests retried with their keys
start their runs as new (they left nothing behind), every run finishes, and the
gateway accepted each key once.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import (
    Api,
    DisparoServer,
    Gateway,
    finished_runs,
    free_port,
    gateway_flows,
    gateway_provider,
    run_cli,
    start_gateway_runs,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.acceptance

DISK_BYTES = 24 * 1024 * 1024
BEFORE = 40  # runs started (and mostly in flight) when the disk fills
REFUSED_TRIES = 12  # runs tried while the disk is full


@contextlib.contextmanager
def small_disk(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path``: a disk that really fills up."""
    path.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command: the disk-full test needs a small tmpfs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "mounting a small tmpfs needs root (or CAP_SYS_ADMIN); the disk-full test "
            f"needs a filesystem that can fill up: {mounted.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the filesystem refuses another byte."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65536, 4096, 512, 1):  # down to the last partial block
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def truncate_wal(database: Path) -> None:
    """Checkpoint the WAL into the database file and truncate it to zero bytes.

    The WAL reuses its file from the start after a checkpoint, so its old size is
    room SQLite can still write into; truncated, the next commit must grow it.
    """
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0, "the engine kept the WAL busy; the checkpoint could not truncate it"


def start_run(api: Api, key: str, n: int) -> Any:
    contact = {"id": f"full-{n}", "phone": f"+5511977{n:06d}", "name": f"Pessoa {n}"}
    # A bulky context: each start needs many new pages, more than the WAL can reuse.
    context = {"n": n, "nota": "x" * 60_000}
    body = {"flow": "aviso_gateway", "contact": contact, "context": context}
    return api.post("/v1/runs", {**body, "idempotency_key": key})


def test_a_full_disk_refuses_new_work_and_everything_finishes_once_space_is_freed(
    tmp_path: Path,
) -> None:
    gateway = Gateway(free_port(), tmp_path / "gateway.log", latency=0.2)
    port = free_port()
    with small_disk(tmp_path / "disk", DISK_BYTES) as disk:
        config = write_config(
            disk,
            port=port,
            providers={"gateway": gateway_provider(gateway, timeout=5, max_in_flight=2)},
            flows=gateway_flows(tmp_path),
            dispatcher={"lease_seconds": 2, "poll_interval": 0.2, "backoff_cap": 1},
        )
        run_cli(config, "migrate")
        server = DisparoServer(config, port, tmp_path / "serve.log")
        gateway.start()
        try:
            api = server.start()
            run_ids = start_gateway_runs(api, BEFORE, "before")
            truncate_wal(disk / "disparo.db")
            filler = fill(disk)
            at_fill = gateway.stats()["delivered"]

            # While the disk is full: starts that cannot be stored are refused.
            answers = [start_run(api, f"full-{n}", n) for n in range(REFUSED_TRIES)]
            refused = [n for n, a in enumerate(answers) if a.status == 503]
            # A send answered by the gateway whose outcome cannot be recorded.
            wait_for(
                server.log,
                lambda text: "store unavailable recording the outcome of message" in text,
                what="a send that could not be recorded",
            )
            alive = server.exited() is None
            still_reads = api.get(f"/v1/runs/{run_ids[0]}").status

            filler.unlink()  # the operator frees space; nothing else

            retried = [start_run(api, f"full-{n}", n) for n in refused]
            run_ids += [a.body["run_id"] for a in answers if a.status == 201]
            run_ids += [r.body["run_id"] for r in retried if r.status == 201]
            runs = finished_runs(api, run_ids, what="every run finished after space was freed")
            total = BEFORE + REFUSED_TRIES
            stats = wait_for(
                gateway.stats,
                lambda s: s["delivered"] >= total,
                what="every message at the gateway",
            )
            messages = [api.message(m["id"]) for r in runs for m in r["messages"]]
            log = server.log()
        finally:
            server.stop()
            gateway.stop()
        with contextlib.closing(sqlite3.connect(disk / "disparo.db")) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchall()

    # While full: a start that could not be stored was answered 503 (retry later);
    # one that SQLite could still fit in space the WAL already had was stored.
    assert at_fill < BEFORE, "every run was sent before the disk filled: nothing tested"
    assert refused, answers
    assert {a.status for a in answers} <= {201, 503}, answers
    for n in refused:
        assert answers[n].body["error"] == {
            "code": "STORE_UNAVAILABLE",
            "message": "the store is unavailable; retry later",
            "details": [],
        }
    assert alive, log
    assert still_reads == 200
    assert "is full" in log

    # Freed: each refused key starts its run as new (nothing was half-written)...
    assert [r.status for r in retried] == [201] * len(refused), retried
    # ...and every run finished, its one message accepted by the gateway once.
    assert [r["status"] for r in runs] == ["completed"] * total, log
    keys = {m["idempotency_key"] for m in messages}
    assert len(messages) == len(keys) == total
    assert [m["status"] for m in messages] == ["sent"] * total
    assert set(stats["delivered_keys"]) == keys
    assert stats["duplicates"] == {}
    # Answers the full disk could not take were kept, not lost.
    assert "keeping it and retrying" in log
    assert integrity == [("ok",)]
    assert "Traceback" not in log, log
