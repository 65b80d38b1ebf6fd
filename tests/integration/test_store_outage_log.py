"""The API during a store outage: every request still answers 503, but the log says
once that the store is down, and once that it is back."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.errors import StoreUnavailable
from tests.integration.engine_kit import running_engine, settings_for, until

AUTH = {"Authorization": "Bearer test-token-0123456789"}


async def test_an_outage_is_one_warning_then_one_info_not_a_line_per_request(
    api: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api
    store = h.engine.store

    async def down(*_: Any, **__: Any) -> Any:
        raise StoreUnavailable("cannot reach the PostgreSQL database db:5432/disparo")

    caplog.set_level(logging.INFO, logger="disparo.api")
    with monkeypatch.context() as patched:
        patched.setattr(store, "ping", down)
        patched.setattr(store, "get_contact", down)
        for _ in range(5):
            assert (await client.get("/healthz")).status == 503
            answer = await client.get("/v1/contacts/c-1", headers=AUTH)
            assert answer.status == 503
    assert (await client.get("/metrics")).status == 200  # reads no store: says nothing
    assert (await client.get("/healthz")).status == 200

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "disparo.api"]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "cannot reach the PostgreSQL database" in lines[0][1]
    assert "store answers again" in lines[1][1]
    assert "10 requests answered 503" in lines[1][1]


async def test_the_dispatcher_logs_an_outage_once_not_at_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="disparo.dispatcher")
    async with running_engine(settings_for(tmp_path)) as (engine, clock):
        store = engine.store
        tries: list[None] = []

        async def down(*_: Any, **__: Any) -> Any:
            tries.append(None)
            raise StoreUnavailable("cannot reach the PostgreSQL database db:5432/disparo")

        with monkeypatch.context() as patched:
            patched.setattr(store, "claim_due_work", down)
            for polls in range(1, 6):
                clock.advance(timedelta(seconds=1))
                await until(lambda n=polls: len(tries) >= n, "the dispatcher polls again")
        clock.advance(timedelta(seconds=1))
        await until(
            lambda: any("answers again" in r.getMessage() for r in caplog.records),
            "the dispatcher claims again",
        )
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "store" in r.getMessage()]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "no due work is claimed" in lines[0][1]


async def test_a_store_that_reads_but_cannot_claim_is_retried_once_a_poll_not_in_a_spin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk or a read-only database: reads show overdue work, every claim (a
    write) fails. The dispatcher tried again at once, hundreds of times a second."""
    async with running_engine(settings_for(tmp_path)) as (engine, clock):
        store = engine.store
        tries: list[None] = []

        async def full(*_: Any, **__: Any) -> Any:
            tries.append(None)
            raise StoreUnavailable("the disk holding the database at d.db is full")

        async def overdue() -> Any:
            return clock.now() - timedelta(minutes=5)

        with monkeypatch.context() as patched:
            patched.setattr(store, "claim_due_work", full)
            patched.setattr(store, "next_due_at", overdue)
            clock.advance(timedelta(seconds=1))
            await until(lambda: len(tries) >= 1, "the dispatcher tries to claim")
            for _ in range(100):  # the loop runs on; the clock does not move
                await asyncio.sleep(0)
            assert len(tries) == 1
            clock.advance(timedelta(seconds=1))  # dispatcher.poll_interval
            await until(lambda: len(tries) >= 2, "the dispatcher tries again a poll later")
