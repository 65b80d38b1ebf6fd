"""Re-engagement sweeps through the bulk start path: a sweep interrupted between
chunks starts nobody twice when it resumes, and two engines sweeping one PostgreSQL
store at once start each contact once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import RunStatus
from storage.base import BulkStart
from tests.contract.conftest import fresh_postgres_schema, postgres_dsn_or_skip
from tests.integration.engine_kit import Harness, harness, two_engines
from tests.integration.test_triggers import (
    MONDAY_10H,
    REENGAGE,
    add_contacts,
    kinds,
    reply,
    runs_of,
    settings_with,
)

CONTACTS = [f"c-{n}" for n in range(1, 8)]


class Interrupted(Exception):
    """The store fails between two chunks of one sweep step."""


async def contacts_wrote(h: Harness) -> None:
    await add_contacts(h, dict.fromkeys(CONTACTS))
    for contact in CONTACTS:
        await reply(h, contact)


async def test_a_sweep_interrupted_between_chunks_resumes_and_starts_nobody_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_with(tmp_path, REENGAGE, chunk_size=2)
    async with harness(settings, at=MONDAY_10H) as h:
        await contacts_wrote(h)
        real = h.engine.store.start_runs
        calls: list[int] = []

        async def fails_on_the_second_chunk(starts: BulkStart) -> Any:
            calls.append(len(starts.requests))
            if len(calls) == 2:
                raise Interrupted
            return await real(starts)

        monkeypatch.setattr(h.engine.store, "start_runs", fails_on_the_second_chunk)
        await h.advance(timedelta(days=2))
        runs = await runs_of(h, "volta")
        swept = await kinds(h, "trigger.swept")

    assert len(calls) > 4  # the first chunk ran again after the interruption
    assert sorted(r.contact_id for r in runs) == CONTACTS  # one run each, none twice
    assert all(r.status == RunStatus.COMPLETED for r in runs)
    # The redone chunk's runs existed: counted once as matched, not started again.
    assert [(e["matched"], e["started"]) for e in swept] == [(7, 5)]


async def test_an_entered_run_says_when_and_why_it_started(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, REENGAGE)
    async with harness(settings, at=MONDAY_10H) as h:
        await contacts_wrote(h)
        wrote_at = h.clock.now()
        await h.advance(timedelta(days=2))
        runs = await runs_of(h, "volta")
        started = await h.engine.store.list_events(kind_prefix="run.started", limit=100)

    assert len(runs) == len(started) == len(CONTACTS)  # one event per run, none twice
    for event in started:
        run = next(r for r in runs if r.id == event.run_id)
        assert event.contact_id == run.contact_id
        assert event.at == run.created_at  # when the sweep started it, not when it entered
        assert event.data["flow"] == "volta"
        assert event.data["version"] == run.flow_version
        assert event.data["trigger"] == "after"
        assert event.data["since"] == "last_inbound"
        assert event.data["at"] == wrote_at.isoformat()  # the inbound message it answers


@pytest.mark.postgres
async def test_two_engines_sweeping_one_postgres_store_start_each_contact_once(
    tmp_path: Path,
) -> None:
    async for dsn in fresh_postgres_schema(postgres_dsn_or_skip()):
        settings = settings_with(tmp_path, REENGAGE, chunk_size=2).model_copy(
            update={"storage": dsn}
        )
        async with two_engines(settings, MONDAY_10H) as (one, two, clock):
            h = Harness(one, clock)
            await contacts_wrote(h)
            clock.set(MONDAY_10H + timedelta(hours=23, minutes=1))
            # Both claim whatever is due and handle it at the same time.
            for _ in range(20):
                await asyncio.gather(one.dispatcher.process_due(), two.dispatcher.process_due())
            runs = await runs_of(h, "volta")
            swept = await kinds(h, "trigger.swept")

        assert sorted(r.contact_id for r in runs) == CONTACTS
        assert sum(e["started"] for e in swept) == len(CONTACTS)
