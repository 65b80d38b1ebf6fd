"""Quiet hours: local-time ranges in which no message may be sent.

A range is written ``"HH:MM-HH:MM"`` (``"20:00-08:00"``) or ``{range, days}``.
Promises, all in the contact's timezone and decided by its wall clock:

- The range is half-open: ``"20:00-08:00"`` is quiet from 20:00 up to, but not
  including, 08:00. ``24:00`` is allowed as an end (``"00:00-24:00"`` is the
  whole day). Equal start and end (``"08:00-08:00"``) is an empty range.
- A range that crosses midnight belongs to the day it starts on: with
  ``days: [fri]``, ``"20:00-08:00"`` is quiet from Friday 20:00 to Saturday
  08:00, and Friday 02:00 is not quiet (that night began on Thursday).
- ``quiet_until`` is the first instant after ``now`` that is not quiet. It is
  DST-safe: an end time that does not exist that day (spring forward) resolves
  to the transition instant, when the clock jumps past it; an end time that
  happens twice (fall back) resolves to its first occurrence after ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from engine.flow.model import QuietHoursRule
from engine.flow.time_range import DAY as _DAY
from engine.flow.time_range import parse_time_range

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Contiguous quiet days ("00:00-24:00" on several days) are walked one range at a
# time; a schedule still quiet after a week and a day is quiet every day, all day.
_MAX_HOPS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class QuietHours:
    """One parsed quiet-hours range; ``start``/``end`` are seconds after local midnight."""

    start: int
    end: int
    days: frozenset[int]  # date.weekday() numbers; all seven when the flow names none
    text: str

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    @property
    def is_empty(self) -> bool:
        return self.start == self.end

    def contains(self, at: datetime, tz: ZoneInfo) -> bool:
        """Whether the aware instant ``at`` falls inside quiet hours in ``tz``."""
        if self.is_empty:
            return False
        local = at.astimezone(tz)
        clock = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        today = local.weekday()
        if not self.crosses_midnight:
            return today in self.days and self.start <= clock < self.end
        if clock >= self.start:
            return today in self.days
        return clock < self.end and (today - 1) % 7 in self.days

    def quiet_until(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """The first instant (aware UTC) at or after ``now`` outside quiet hours.

        ``now`` itself when it is not quiet; ``None`` when quiet hours never end.
        The answer is never before ``now`` and never inside quiet hours.
        """
        if not self.contains(now, tz):
            return now.astimezone(UTC)
        at = now
        for _ in range(_MAX_HOPS):
            at = self._end_of_range_around(at, tz)
            if not self.contains(at, tz):
                return at
        return None

    def _end_of_range_around(self, at: datetime, tz: ZoneInfo) -> datetime:
        """Where the range holding the quiet instant ``at`` ends; always after ``at``."""
        local = at.astimezone(tz)
        day = local.date()
        started_today = local.hour * 3600 + local.minute * 60 + local.second >= self.start
        if self.end == _DAY or (self.crosses_midnight and started_today):
            day += timedelta(days=1)
        return first_local_after(day, self.end % _DAY, after=at, tz=tz)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def first_local_after(day: date, seconds: int, *, after: datetime, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) after ``after`` when ``tz``'s wall clock reaches ``day`` at
    ``seconds``.

    A wall time that happens twice (fall back) gives its first occurrence after
    ``after``. A wall time skipped by DST (spring forward) gives the transition
    instant, when the clock jumps past it. ``ValueError`` when that wall time is
    already behind ``after``. Instants are compared in UTC: aware datetimes sharing
    a tzinfo compare by wall time, ignoring fold.
    """
    wall = datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60, seconds % 60))
    after_utc = after.astimezone(UTC)
    readings = sorted(wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1))
    if _wall(readings[0], tz) != wall:
        readings = [_transition_into(wall, readings[0], readings[1], tz)]
    for candidate in readings:
        if candidate > after_utc:
            return candidate
    raise ValueError(f"{wall.isoformat()} in {tz.key} is not after {after_utc.isoformat()}")


def _transition_into(wall: datetime, before: datetime, past: datetime, tz: ZoneInfo) -> datetime:
    """The DST transition instant between ``before`` (the clock shows less than ``wall``)
    and ``past`` (the clock shows more): offsets change on whole seconds."""
    low, high = int(before.timestamp()), int(past.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), tz) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def parse_quiet_hours(spec: str | QuietHoursRule) -> QuietHours:
    """Parse ``"20:00-08:00"`` or ``{range, days}``; ``ValueError`` names what is wrong."""
    text = spec if isinstance(spec, str) else spec.range
    names = None if isinstance(spec, str) else spec.days
    start, end = parse_time_range(text)
    days = frozenset(range(7)) if not names else frozenset(WEEKDAYS.index(d) for d in names)
    return QuietHours(start=start, end=end, days=days, text=text)
