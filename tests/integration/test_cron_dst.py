"""Cron campaigns across daylight-saving changes, in a running engine on a virtual clock.

The rules (engine/scheduler.py): an expression that names some hours of the day fires
once per local time it names: a time the clocks repeat fires at its first occurrence,
a time they skip fires once at the instant they jump (03:00 EDT for 02:30 in New York).
An expression for every hour (``0 * * * *``) follows elapsed time: it fires at both
01:00 EDT and 01:00 EST, and not at a local time that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.models import ContactUpsert
from tests.integration.engine_kit import harness, settings_with_flows
from tests.integration.test_triggers import kinds, runs_of

NEW_YORK = "America/New_York"
LISBON = "Europe/Lisbon"


def cron_flow(cron: str, tz: str) -> str:
    return f"""\
flow: camp
timezone: {tz}
triggers:
  - cron: "{cron}"
start: aviso
steps:
  aviso:
    send: {{channel: sms, provider: sandbox_sms, text: "Bom dia"}}
    next: fim
  fim: {{end: completed}}
"""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def campaign(
    tmp_path: Path, cron: str, tz: str, start: datetime, end: datetime
) -> tuple[list[str], list[dict[str, object]]]:
    """The local start times (ISO) of the campaign's runs for one contact from
    ``start`` to ``end``, and the trigger.misfired events."""
    async with harness(settings_with_flows(tmp_path, cron_flow(cron, tz)), at=start) as h:
        await h.engine.upsert_contact(ContactUpsert(id="c-1", phone="+5511999991234"))
        await h.engine.run_until(end)
        runs = await runs_of(h, "camp")
        misfired = await kinds(h, "trigger.misfired")
    return [r.created_at.astimezone(ZoneInfo(tz)).isoformat() for r in runs], misfired


@pytest.mark.parametrize(
    ("tz", "start", "end", "expected"),
    [
        (
            NEW_YORK,
            utc(2026, 10, 31, 12),
            utc(2026, 11, 2, 12),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
        (
            LISBON,
            utc(2026, 10, 24, 12),
            utc(2026, 10, 26, 12),
            ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"],
        ),
    ],
)
async def test_a_daily_campaign_reaches_a_contact_once_on_the_night_the_clocks_go_back(
    tmp_path: Path, tz: str, start: datetime, end: datetime, expected: list[str]
) -> None:
    local, misfired = await campaign(tmp_path, "30 1 * * *", tz, start, end)

    # 01:30 happens twice that night; only the first one sends.
    assert local == expected
    assert misfired == []


async def test_an_hourly_campaign_fires_in_both_one_oclock_hours_the_night_the_clocks_go_back(
    tmp_path: Path,
) -> None:
    # From 00:30 EDT to 03:30 EST: four real hours, four firings.
    local, _ = await campaign(
        tmp_path, "0 * * * *", NEW_YORK, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 8, 30)
    )

    assert local == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]


@pytest.mark.parametrize(
    ("cron", "tz", "start", "end", "expected"),
    [
        (  # 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day
            "30 2 * * *",
            NEW_YORK,
            utc(2026, 3, 7, 12),
            utc(2026, 3, 9, 12),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        (  # 01:00 WET jumps to 02:00 WEST: 01:30 does not exist that day
            "30 1 * * *",
            LISBON,
            utc(2026, 3, 28, 12),
            utc(2026, 3, 30, 12),
            ["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"],
        ),
        (  # once a year, on the very hour that is skipped: not next year
            "0 2 8 3 *",
            NEW_YORK,
            utc(2026, 3, 1, 12),
            utc(2026, 3, 9, 12),
            ["2026-03-08T03:00:00-04:00"],
        ),
    ],
)
async def test_a_campaign_at_a_skipped_local_time_fires_once_when_the_clocks_jump(
    tmp_path: Path, cron: str, tz: str, start: datetime, end: datetime, expected: list[str]
) -> None:
    local, misfired = await campaign(tmp_path, cron, tz, start, end)

    assert local == expected
    assert misfired == []


async def test_an_engine_down_past_the_grace_on_the_spring_forward_night_records_how_late(
    tmp_path: Path,
) -> None:
    settings = settings_with_flows(tmp_path, cron_flow("30 2 * * *", NEW_YORK))
    async with harness(settings, at=utc(2026, 3, 7, 12)) as h:
        await h.engine.upsert_contact(ContactUpsert(id="c-1", phone="+5511999991234"))
        await h.engine.settle()
        h.clock.set(utc(2026, 3, 8, 9))  # 05:00 EDT: two hours after the 03:00 EDT fire time
        await h.engine.settle()
        missed_day = await runs_of(h, "camp")
        misfired = await kinds(h, "trigger.misfired")
        await h.engine.run_until(utc(2026, 3, 9, 12))
        runs = await runs_of(h, "camp")

    assert missed_day == []
    assert [(e["fire_time"], e["reason"]) for e in misfired] == [
        ("2026-03-08T07:00:00+00:00", "7200s late, over the misfire grace of 3600s")
    ]
    assert [r.created_at.astimezone(ZoneInfo(NEW_YORK)).isoformat() for r in runs] == [
        "2026-03-09T02:30:00-04:00"
    ]
