"""Cron fire times, computed with APScheduler 3.x: the only module that imports it.

``CronSchedule`` is a pure function of an expression, a time zone and a moment: the
engine asks it for the next fire time on its own clock (a ``VirtualClock`` in tests),
stores that time in the trigger's due-work row, and the dispatcher fires the row when
it comes due. No APScheduler job or job store is ever created: the dispatcher
already sleeps until the earliest due row (``Store.next_due_at``) and wakes within
``dispatcher.poll_interval`` for rows another process added, so an APScheduler
wake-up at fire times would only repeat what the claim loop does; the truth (and
the once-per-fire-time guarantee) lives in the store.

Five-field crontab syntax (minute hour day-of-month month day-of-week), read as
cron(5) reads it, not as APScheduler 3 does:

- day of week 0 and 7 are Sunday, 1 Monday ... 6 Saturday (APScheduler 3 counts
  from Monday); names ``sun``..``sat`` work too, ranges and steps over numbers
  (``1-5``, ``*/2``) mean what they mean in crontab;
- when both day of month and day of week are restricted (neither starts with
  ``*``), a day matches when *either* matches (``0 9 1 * 1``: the 1st of the month
  and every Monday).

Times are local to the time zone (so ``0 9 * * *`` is 09:00 there, across daylight
saving changes) and come back as aware UTC datetimes. APScheduler only reads the
expression as a calendar of local (wall-clock) times, on a UTC trigger where no
clock ever changes; which instants those local times are is decided here, with two
rules for the nights the clocks change:

- An expression whose hour field names *some* hours of the day (``30 1 * * *``,
  ``0 9-18 * * 1-5``, ``0 */2 * * *``, ``0 1,2 * * *``) fires once per local time
  it names, as Vixie cron runs fixed-time jobs. A local time the clocks repeat
  (01:30 the night New York goes from 02:00 EDT back to 01:00 EST) fires at its
  first occurrence only (01:30 EDT). A local time the clocks skip (02:30 the night
  New York jumps from 02:00 EST to 03:00 EDT) fires at the instant they jump (03:00
  EDT); several skipped times (``*/15 2 * * *``), or a skipped time and the real
  time the clocks land on (``0 2,3 * * *``), are one fire time, so one firing.
  The de-duplication key of a firing is its instant: without this rule a daily
  campaign would reach everyone twice on the night the clocks go back.
- An expression whose hour field names every hour (``*``, ``0-23``, ``*/1``:
  ``0 * * * *``, ``*/15 * * * *``) repeats through the day, so it follows elapsed
  time: it fires in both 01:00 hours of the night the clocks go back (01:00 EDT and,
  an hour later, 01:00 EST), and a local time that does not exist is not caught up
  (``30 * * * *``: 01:30 EST, then 03:30 EDT, an hour apart).

A step or list in the hour field (``*/2``, ``1,2``) names some hours, so the first
rule applies: each named hour is a time of day that fires once, even when the
clocks happen to repeat it; only an expression that fires every hour has a firing
for each real hour. Only the hour field decides (Vixie cron also reruns a job whose
minute field starts with ``*``): ``*/15 1 * * *`` fires four times, not eight, in
the night that has two 1 o'clock hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from engine.clock_changes import end_of_repeat, next_offset_change, utc_offset

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MICROSECOND = timedelta(microseconds=1)


class CronSchedule:
    """The fire times of one five-field cron expression in one time zone."""

    def __init__(self, expression: str, timezone: str) -> None:
        """Raise ``ValueError`` naming the field and what is wrong when it does not parse."""
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(
                f"{len(fields)} fields; write five (minute hour day month weekday), "
                'like "0 9 * * 1-5"'
            )
        self.expression = expression
        self.zone = ZoneInfo(timezone)
        minute, hour, day, month, weekday = fields
        for name, kwarg, value in (
            ("minute", "minute", minute),
            ("hour", "hour", hour),
            ("day of month", "day", day),
            ("month", "month", month),
        ):
            try:
                CronTrigger(**{kwarg: value}, timezone=UTC)
            except ValueError as exc:
                raise ValueError(f"{name} {value!r}: {_plain(str(exc))}") from None
        aps_weekday = _weekdays(weekday)
        if day.startswith("*") or weekday.startswith("*"):
            variants = [(day, aps_weekday)]
        else:  # cron(5): either restricted day field matches
            variants = [(day, "*"), ("*", aps_weekday)]
        # Calendars of local times: a UTC trigger's "UTC" time is the wall-clock time.
        self._triggers: list[CronTrigger] = []
        for dom, dow in variants:
            try:
                trigger = CronTrigger(
                    minute=minute, hour=hour, day=dom, month=month, day_of_week=dow, timezone=UTC
                )
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            self._triggers.append(trigger)
        self.every_hour = _names_every_hour(self._triggers[0])

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment`` (aware), in UTC; None if never."""
        return self.next_from(moment + _MICROSECOND)

    def next_from(self, moment: datetime) -> datetime | None:
        """The first fire time at or after ``moment`` (aware), in UTC; None if never.

        Walks real time from ``moment`` one stretch of constant UTC offset at a time:
        within a stretch local time is UTC plus the offset, so the next local time
        the calendar names is one instant; where the offset changes, the rules of
        the module docstring decide what the skipped or repeated local times fire.
        """
        if moment.tzinfo is None:
            raise ValueError("CronSchedule needs an aware datetime")
        at = moment.astimezone(UTC)
        while True:
            offset = utc_offset(self.zone, at)
            if not self.every_hour:
                before = utc_offset(self.zone, at - _MICROSECOND)
                if before < offset and self._names_between(at + before, at + offset):
                    return at  # the clocks jumped over a local time named here
                repeat_end = end_of_repeat(self.zone, at)
                if repeat_end is not None:
                    at = repeat_end  # these local times already fired once
                    continue
            wall = self._next_wall(at + offset)
            if wall is None:
                return None
            fire = wall - offset
            change = next_offset_change(self.zone, at, fire)
            if change is None:
                return fire
            at = change

    def _next_wall(self, wall: datetime) -> datetime | None:
        """The first local time at or after ``wall`` the expression names (both as
        UTC-labelled wall-clock times)."""
        found = [t.get_next_fire_time(None, wall) for t in self._triggers]
        times: list[datetime] = [f for f in found if f is not None]
        return min(times) if times else None

    def _names_between(self, start: datetime, end: datetime) -> bool:
        """Whether the expression names a local time in [``start``, ``end``)."""
        wall = self._next_wall(start)
        return wall is not None and wall < end


def cron_problem(expression: str) -> str | None:
    """None when ``expression`` is a valid five-field cron expression, else why not."""
    try:
        schedule = CronSchedule(expression, "UTC")
    except ValueError as exc:
        return str(exc)
    if schedule.next_from(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        return "it never fires: no month has that day"
    return None


def _names_every_hour(trigger: CronTrigger) -> bool:
    """Whether the trigger's hour field names all 24 hours (``*``, ``0-23``, ``*/1``)."""
    field = next(f for f in trigger.fields if f.name == "hour")
    return all(field.get_next_value(datetime(2000, 1, 1, h, tzinfo=UTC)) == h for h in range(24))


def _plain(message: str) -> str:
    """APScheduler's words without the expression it repeats."""
    if message.startswith("Error validating expression"):
        message = message.split(": ", 1)[-1]
    elif message.startswith("Unrecognized expression"):
        message = "not a number, range (1-5), list (1,15), step (*/10) or *"
    elif message.startswith("Increment must be"):
        message = "the step after `/` must be a whole number above 0"
    return message


def _weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler 3 reads it (explicit day names)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        days |= _weekday_item(item.strip().lower())
    if days == set(range(7)):
        return "*"
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def _weekday_item(item: str) -> set[int]:
    what = f"day of week {item!r}"
    span, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ValueError(f"{what}: the step after `/` must be a whole number above 0")
        step = int(step_text)
    if span == "*":
        low, high = 0, 6
    elif "-" in span:
        first, _, last = span.partition("-")
        low, high = _weekday(first, what), _weekday(last, what)
        if high == 0 and last.strip() in ("7", "sun"):
            high = 7
        if low > high:
            raise ValueError(f"{what}: the range goes backwards; write it low-high, like 1-5")
    else:
        low = _weekday(span, what)
        high = 6 if step_text else low
    return {d % 7 for d in range(low, high + 1, step)}


def _weekday(text: str, what: str) -> int:
    text = text.strip()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text) % 7
    if text in _DAY_NAMES:
        return _DAY_NAMES.index(text)
    raise ValueError(f"{what}: use 0-7 (0 and 7 are Sunday) or sun, mon, tue, wed, thu, fri, sat")
