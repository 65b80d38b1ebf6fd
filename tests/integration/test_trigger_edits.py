"""Editing a trigger between firings, while the engine is down, or in the middle of a
fan-out: the new definition takes over where the old one stood (engine.triggers_edits;
README, "what happens when you edit a trigger")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import DueKind
from engine.runtime import Engine
from tests.integration.engine_kit import Harness, harness
from tests.integration.test_triggers import (
    CAMPAIGN,
    MONDAY_10H,
    REENGAGE,
    SMS_STEP,
    add_contacts,
    claim_one,
    kinds,
    reply,
    runs_of,
    settings_with,
    sp,
)

DAILY = (
    """\
flow: diaria
timezone: America/Sao_Paulo
concurrency: many
triggers:
  - cron: "0 9 * * *"
"""
    + SMS_STEP
)


def edit(tmp_path: Path, flow: str, text: str) -> None:
    (tmp_path / "flows" / f"{flow}.yaml").write_text(text)


# ------------------------------------------------------------------ cron


async def test_an_audience_edited_while_down_keeps_the_fire_time_missed(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, CAMPAIGN)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": "ouro", "c-2": "prata"})
        await h.engine.settle()  # Tuesday 09:00 is the pending fire time
        clock = h.clock
    edit(tmp_path, "campanha", CAMPAIGN.replace("== 'ouro'", "== 'prata'"))
    clock.set(sp(24, 9, 5))  # down over 09:00; back within the 10 min of grace
    async with Engine(settings, clock=clock, run_loop=False) as engine:
        await engine.settle()
        again = Harness(engine, clock)
        runs = await runs_of(again, "campanha")
        fired = await kinds(again, "trigger.")

    assert [(r.contact_id, r.created_at) for r in runs] == [("c-2", sp(24, 9, 5))]
    assert [(e["kind"], e["fire_time"]) for e in fired[:1]] == [
        ("trigger.fired", sp(24, 9).isoformat())
    ]


async def test_a_misfire_grace_raised_to_survive_an_outage_saves_the_campaign(
    tmp_path: Path,
) -> None:
    flow = CAMPAIGN.replace("    misfire_grace: 10m\n", "")
    settings = settings_with(tmp_path, flow, misfire_grace=600)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": "ouro"})
        await h.engine.settle()
        clock = h.clock
    clock.set(sp(24, 9, 40))  # 40 min late: over 10 min, within the hour now allowed
    raised = settings_with(tmp_path, flow, misfire_grace=3600)
    async with Engine(raised, clock=clock, run_loop=False) as engine:
        await engine.settle()
        again = Harness(engine, clock)
        runs = await runs_of(again, "campanha")
        events = await kinds(again, "trigger.")

    assert [(r.contact_id, r.created_at) for r in runs] == [("c-1", sp(24, 9, 40))]
    assert [e["kind"] for e in events] == ["trigger.fired", "trigger.fanout_done"]
    assert events[0]["fire_time"] == sp(24, 9).isoformat()


@pytest.mark.parametrize(
    ("moved_to", "fires"),
    [
        # Later the same day: today's campaign already went at 09:00.
        ("0 10 * * *", [sp(24, 9), sp(25, 10), sp(26, 10)]),
        # Earlier: tomorrow's goes at 08:00, nothing is lost.
        ("0 8 * * *", [sp(24, 9), sp(25, 8), sp(26, 8)]),
    ],
)
async def test_moving_a_daily_campaign_after_it_fired_fires_it_once_that_day(
    tmp_path: Path, moved_to: str, fires: list[Any]
) -> None:
    settings = settings_with(tmp_path, DAILY)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None})
        await h.engine.run_until(sp(24, 9, 30))
        edit(tmp_path, "diaria", DAILY.replace("0 9 * * *", moved_to))
        await h.engine.reload_flows()
        await h.engine.run_until(sp(26, 12))
        runs = await runs_of(h, "diaria")
        fired = await kinds(h, "trigger.fired")
        misfired = await kinds(h, "trigger.misfired")

    assert [e["fire_time"] for e in fired] == [f.isoformat() for f in fires]
    assert [r.created_at for r in runs] == fires
    if moved_to == "0 10 * * *":
        assert [e["fire_time"] for e in misfired] == [sp(24, 10).isoformat()]
        assert misfired[0]["reason"].startswith("trigger edited after it fired for")
    else:
        assert misfired == []


# ------------------------------------------------------------------ fan-out


async def fan_out_first_chunk(h: Harness) -> None:
    """Fire Tuesday 09:00 and start the first chunk of its fan-out."""
    h.clock.set(sp(24, 9))
    cron = await claim_one(h.engine)
    assert cron.kind == DueKind.CRON
    await h.engine.dispatcher.handle(cron)
    chunk = await claim_one(h.engine)
    assert chunk.kind == DueKind.FANOUT
    await h.engine.dispatcher.handle(chunk)


NO_CRON = CAMPAIGN.replace(
    """  - cron: "0 9 * * 1-5"
    audience: "contact.context.plano | default('') == 'ouro'"
    misfire_grace: 10m
""",
    "  - api: {}\n",
)


@pytest.mark.parametrize(
    ("edited", "reason", "started"),
    [
        (NO_CRON, "trigger removed", 2),
        (CAMPAIGN.replace("== 'ouro'", "!= 'nenhum'"), "trigger edited", 2),
        # A new time or grace changes later firings only: this one goes on.
        (CAMPAIGN.replace("0 9 * * 1-5", "30 9 * * 1-5"), None, 6),
    ],
)
async def test_a_fan_out_stops_when_its_trigger_is_removed_or_its_audience_edited(
    tmp_path: Path, edited: str, reason: str | None, started: int
) -> None:
    settings = settings_with(tmp_path, CAMPAIGN, chunk_size=2)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {f"c-{n}": "ouro" for n in range(1, 7)})
        await fan_out_first_chunk(h)
        edit(tmp_path, "campanha", edited)
        await h.engine.reload_flows()
        await h.engine.run_until(sp(24, 9, 5))
        runs = await runs_of(h, "campanha")
        ended = await kinds(h, "trigger.abandoned")
        done = await kinds(h, "trigger.fanout_done")

    assert len(runs) == started
    if reason is None:
        assert (ended, len(done)) == ([], 1)
    else:
        assert done == []
        assert [(e["fire_time"], e["started"]) for e in ended] == [(sp(24, 9).isoformat(), 2)]
        assert ended[0]["reason"].startswith(reason)


# ------------------------------------------------------------------ re-engagement


async def test_a_shortened_after_re_engages_the_contacts_already_due(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, REENGAGE)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None})
        await reply(h, "c-1")
        await h.engine.run_until(MONDAY_10H + timedelta(hours=22, minutes=30))
        edit(tmp_path, "volta", REENGAGE.replace("after: 23h", "after: 22h"))
        await h.engine.reload_flows()
        await h.engine.run_until(MONDAY_10H + timedelta(days=2))
        runs = await runs_of(h, "volta")

    assert [(r.contact_id, r.created_at) for r in runs] == [
        ("c-1", MONDAY_10H + timedelta(hours=22, minutes=30))
    ]


async def test_an_unless_edited_while_down_sweeps_the_contacts_that_came_due(
    tmp_path: Path,
) -> None:
    settings = settings_with(tmp_path, REENGAGE)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None, "c-2": None})
        await reply(h, "c-1")
        await h.advance(timedelta(hours=1))
        await reply(h, "c-2")
        clock = h.clock
    edit(tmp_path, "volta", REENGAGE.replace("nao_reengajar", "nunca_reengajar"))
    back = MONDAY_10H + timedelta(hours=30)  # down while both came due
    clock.set(back)
    async with Engine(settings, clock=clock, run_loop=False) as engine:
        await engine.run_until(back + timedelta(days=1))
        runs = await runs_of(Harness(engine, clock), "volta")

    assert sorted((r.contact_id, r.created_at) for r in runs) == [("c-1", back), ("c-2", back)]


async def test_a_lengthened_after_sweeps_each_contact_once(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, REENGAGE)
    async with harness(settings, at=MONDAY_10H) as h:
        await add_contacts(h, {"c-1": None, "c-2": None})
        await reply(h, "c-1")
        await h.engine.run_until(MONDAY_10H + timedelta(hours=23, minutes=30))
        edit(tmp_path, "volta", REENGAGE.replace("after: 23h", "after: 25h"))
        await h.engine.reload_flows()
        await reply(h, "c-2")
        await h.engine.run_until(MONDAY_10H + timedelta(days=3))
        runs = await runs_of(h, "volta")
        swept = await kinds(h, "trigger.swept")

    assert [(r.contact_id, r.created_at) for r in runs] == [
        ("c-1", MONDAY_10H + timedelta(hours=23)),
        ("c-2", MONDAY_10H + timedelta(hours=23 + 25, minutes=30)),
    ]
    assert [(e["matched"], e["started"]) for e in swept] == [(1, 1), (1, 1)]
