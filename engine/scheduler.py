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
saving changes) and come back as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

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
                CronTrigger(**{kwarg: value}, timezone=self.zone)
            except ValueError as exc:
                raise ValueError(f"{name} {value!r}: {_plain(str(exc))}") from None
        aps_weekday = _weekdays(weekday)
        if day.startswith("*") or weekday.startswith("*"):
            variants = [(day, aps_weekday)]
        else:  # cron(5): either restricted day field matches
            variants = [(day, "*"), ("*", aps_weekday)]
        self._triggers: list[CronTrigger] = []
        for dom, dow in variants:
            try:
                trigger = CronTrigger(
                    minute=minute,
                    hour=hour,
                    day=dom,
                    month=month,
                    day_of_week=dow,
                    timezone=self.zone,
                )
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            self._triggers.append(trigger)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment`` (aware), in UTC; None if never."""
        return self.next_from(moment + _MICROSECOND)

    def next_from(self, moment: datetime) -> datetime | None:
        """The first fire time at or after ``moment`` (aware), in UTC; None if never."""
        if moment.tzinfo is None:
            raise ValueError("CronSchedule needs an aware datetime")
        found = [t.get_next_fire_time(None, moment.astimezone(self.zone)) for t in self._triggers]
        times = [f.astimezone(UTC) for f in found if f is not None]
        return min(times) if times else None


def cron_problem(expression: str) -> str | None:
    """None when ``expression`` is a valid five-field cron expression, else why not."""
    try:
        schedule = CronSchedule(expression, "UTC")
    except ValueError as exc:
        return str(exc)
    if schedule.next_from(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        return "it never fires: no month has that day"
    return None


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
