"""Where an edited cron trigger's schedule starts (engine.triggers_edits)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.scheduler import CronSchedule
from engine.triggers_edits import carried_fire_time


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "pending", "last", "now", "fire", "skipped"),
    [
        # Same schedule, down over the pending fire time: it stays pending.
        ("0 9 * * *", utc(24, 9), utc(23, 9), utc(24, 9, 5), utc(24, 9), None),
        # Never fired, edited before its time: the new schedule from now.
        ("0 8 * * *", utc(24, 9), None, utc(24, 7), utc(24, 8), None),
        # Fired at 09:00, moved to 10:00 at 09:30: today's 10:00 is that firing, moved.
        ("0 10 * * *", utc(25, 9), utc(24, 9), utc(24, 9, 30), utc(25, 10), utc(24, 10)),
        # Fired at 09:00, moved to 08:00: tomorrow's 08:00 replaces tomorrow's 09:00.
        ("0 8 * * *", utc(25, 9), utc(24, 9), utc(24, 9, 30), utc(25, 8), None),
        # Moved while down over 09:00: today's firing was not made, 10:00 makes it.
        ("0 10 * * *", utc(24, 9), utc(23, 9), utc(24, 10, 30), utc(24, 10), None),
        # Daily to hourly after 09:00 fired: 10:00 counts as 09:00 moved, 11:00 fires.
        ("0 * * * *", utc(25, 9), utc(24, 9), utc(24, 9, 30), utc(24, 11), utc(24, 10)),
        # Daily to weekly (Mondays; the 30th is one): no fire time is lost.
        ("0 9 * * 1", utc(26, 9), utc(25, 9), utc(25, 12), utc(30, 9), None),
    ],
)
def test_an_edited_schedule_starts_where_the_old_one_stood(
    cron: str,
    pending: datetime,
    last: datetime | None,
    now: datetime,
    fire: datetime,
    skipped: datetime | None,
) -> None:
    schedule = CronSchedule(cron, "UTC")

    assert carried_fire_time(schedule, pending, last, now) == (fire, skipped)
