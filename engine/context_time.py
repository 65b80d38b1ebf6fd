"""Reading a time from a value of a contact's context, one way for everything that
does: `after:` triggers with `since: context.<key>` (engine.sweep_context) and the
`date` template filter (engine.pt_br). A value one of them takes is a value the other
takes, and read as the same moment.

A time is

- ISO-8601 text: a date (``2026-11-30``, its midnight) or a date and time
  (``2026-11-30T10:00:00-03:00``, ``2026-11-30T13:00:00Z``); without an offset it is
  the contact's local time;
- a Unix time as a number: seconds, or milliseconds (what JavaScript's ``Date.now()``
  gives) when it is above ``MILLISECONDS_ABOVE``, 1e11: as seconds that would be the
  year 5138, which nobody means. Numbers below ``SECONDS_FROM`` (1e9, 2001-09-09)
  are not times: ``20261130`` is a date written as a number, not 23 August 1970;
- a ``date`` or ``datetime`` (``now`` in a template).

Anything else raises ``NotATime``, whose message says why and what to write instead,
naming the kind of value but never quoting it (it is a contact's data, and the
message reaches logs and stored events):
booleans, other numbers, NaN, text that is not ISO-8601, and a time that leaves the
years 1 to 9999 when moved to another zone (``9999-12-31T23:59:59-03:00`` in UTC).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any

from engine.wording import json_kind

MILLISECONDS_ABOVE = 1e11  # epoch numbers above this are milliseconds
SECONDS_FROM = 1e9  # 2001-09-09T01:46:40Z: no smaller number is taken for a time
ISO_EXAMPLES = "2026-11-30 or 2026-11-30T10:00:00-03:00"


class NotATime(ValueError):
    """A value that cannot be read as a time; the message says what kind of value it
    is and why, without the value itself."""


def read_time(value: Any) -> date | datetime:
    """``value`` as a ``date`` (ISO date text, a date) or a ``datetime``: aware for Unix
    times and text with an offset, naive (local) for text without one."""
    if isinstance(value, bool):
        raise NotATime(f"a boolean is not a time; write one like {ISO_EXAMPLES}")
    if isinstance(value, date):  # a datetime too
        return value
    if isinstance(value, int | float):
        return unix_time(value)
    if isinstance(value, str):
        return _iso(value)
    raise NotATime(f"{json_kind(value)} is not a time; write one like {ISO_EXAMPLES}")


def unix_time(number: float) -> datetime:
    """A Unix time in seconds, or in milliseconds above ``MILLISECONDS_ABOVE``, in UTC."""
    if not math.isfinite(number):
        raise NotATime("a number that is not finite (NaN, infinity) is not a time")
    if number < SECONDS_FROM:
        raise NotATime(
            f"the number is too small for a Unix time (seconds from {SECONDS_FROM:.0f}, "
            f"2001-09-09, on); write a date as text, like {ISO_EXAMPLES}"
        )
    seconds = number / 1000 if number > MILLISECONDS_ABOVE else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise NotATime(
            f"the number is past the year 9999 even as Unix milliseconds; "
            f"write a time like {ISO_EXAMPLES}"
        ) from None


def utc_time(value: Any, zone: tzinfo) -> datetime:
    """``value`` as an aware UTC datetime: a date is its midnight in ``zone``, a naive
    time is a time in ``zone``."""
    moment = read_time(value)
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(), tzinfo=zone)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return in_zone(moment, UTC)


def in_zone(moment: datetime, zone: tzinfo) -> datetime:
    """The aware ``moment`` in ``zone``; ``NotATime`` when that is outside the years 1
    to 9999."""
    try:
        return moment.astimezone(zone)
    except (OverflowError, ValueError):
        raise NotATime(
            "the time is out of the range of times (the years 1 to 9999 in every time zone)"
        ) from None


def _iso(value: str) -> date | datetime:
    text = value.strip()
    try:
        # 2026-11-30 is a date; anything longer a date and time (no exception raised
        # and caught per contact of a sweep for the usual case)
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise NotATime(
            f"the string is not an ISO-8601 time; write it like {ISO_EXAMPLES}"
        ) from None
