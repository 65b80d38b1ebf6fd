"""Where a time zone changes its UTC offset (daylight saving, or a zone moving), found
with ``zoneinfo`` alone: what ``CronSchedule`` needs to place local times the clocks
skip or repeat. All instants are aware datetimes; the answers are in UTC.

``zoneinfo`` does not list a zone's transitions, so they are found by probing the
offset a day apart and bisecting to the microsecond where it differs. That assumes a
zone never changes and changes back within a day: no two transitions of any zone in
the tz database are a day apart or less.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)


def utc_offset(zone: ZoneInfo, at: datetime) -> timedelta:
    """The offset of local time from UTC at the instant ``at``."""
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def next_offset_change(zone: ZoneInfo, start: datetime, end: datetime) -> datetime | None:
    """The first instant in (``start``, ``end``] whose offset is not the one at
    ``start``; None when the offset holds until ``end``."""
    offset = utc_offset(zone, start)
    low = start.astimezone(UTC)
    end = end.astimezone(UTC)
    while low < end:
        high = min(low + _DAY, end)
        if utc_offset(zone, high) != offset:
            while high - low > _MICROSECOND:  # the offset at low is `offset`, at high not
                middle = low + (high - low) / 2
                if utc_offset(zone, middle) == offset:
                    low = middle
                else:
                    high = middle
            return high
        low = high
    return None


def end_of_repeat(zone: ZoneInfo, at: datetime) -> datetime | None:
    """When ``at`` reads a local time for the second time (the clocks went back and
    repeat it), the first instant whose local time was not read before; else None.

    In New York the clocks go from 02:00 EDT back to 01:00 EST: for any instant of
    01:00-01:59 EST the answer is 02:00 EST.
    """
    local = at.astimezone(zone)
    if not local.fold:
        return None
    first, second = local.replace(fold=0).utcoffset(), local.utcoffset()
    assert first is not None
    assert second is not None
    repeated = first - second  # how far the clocks went back
    if repeated <= timedelta(0):
        return None
    went_back = next_offset_change(zone, at - repeated, at)
    assert went_back is not None  # the offset at `first` is not the one at `at`
    return went_back + repeated
