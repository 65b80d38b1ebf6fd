"""When inbound facts happened: never later than when they reached us.

Contact facts only move forward (``last_inbound_at`` and the others keep the
newest time ever seen, so a late event cannot undo a newer one). That makes one
timestamp from the future permanent: a reply dated three hours ahead (a UTC time
sent with the local offset, ``13:00-03:00`` for ``13:00Z``, or a sender whose clock
is wrong) would hold the 24 h window open three hours past its real end, and
disparo would send free text WhatsApp refuses. So:

- ``POST /v1/events`` refuses an ``at`` more than ``FUTURE_TOLERANCE`` ahead of
  now, naming the field: the caller can fix its clock or its time zone;
- a provider's webhook cannot be made to change, so its times are clamped to the
  moment they arrived, with a warning (at most one per source every
  ``WARN_EVERY``) that names the source and the skew.

Clocks that drift by seconds stay within the tolerance and are kept as given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from engine.models import ContactEvent, StatusReport
from engine.warn_throttle import WarnThrottle

log = logging.getLogger("disparo.events")

FUTURE_TOLERANCE = timedelta(minutes=5)
WARN_EVERY = timedelta(minutes=10)

E = TypeVar("E", ContactEvent, StatusReport)


def too_far_ahead(at: datetime, now: datetime) -> timedelta | None:
    """How far ``at`` is ahead of ``now``, when that is more than the tolerance."""
    ahead = at - now
    return ahead if ahead > FUTURE_TOLERANCE else None


def never_on(starts: datetime, until: datetime | None) -> str | None:
    """Why an attendance from ``starts`` to ``until`` is never on (stored, the bot would
    talk over the agent while the rules saw nobody attending), or None."""
    if until is None or until > starts:
        return None
    return f"{until.isoformat()} is not after the attendance starts ({starts.isoformat()})"


def describe(ahead: timedelta) -> str:
    """``12 min`` / ``3 h 00 min`` / ``1120 days``: a skew as a person reads it."""
    minutes = int(ahead.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours // 24} days"
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


class ArrivalClamp:
    """Clamps the times of what providers report to when it arrived, warning
    (per source, at most every ``WARN_EVERY``) when it had to."""

    def __init__(self, on_clamp: Callable[[str], None] | None = None) -> None:
        self._throttle = WarnThrottle(WARN_EVERY)
        self._on_clamp = on_clamp  # told the source of every time it clamps

    def clamp(self, items: list[E], now: datetime) -> list[E]:
        out: list[E] = []
        for item in items:
            ahead = too_far_ahead(item.at, now)
            if ahead is not None:
                self._warn(_source(item), item, ahead, now)
                if self._on_clamp is not None:
                    self._on_clamp(_source(item))
                item = replace(item, at=now)
            out.append(item)
        return out

    def _warn(
        self, source: str, item: ContactEvent | StatusReport, ahead: timedelta, now: datetime
    ) -> None:
        quiet = self._throttle.due(source, now)
        if quiet is None:
            return
        what = f"a {item.type}" if isinstance(item, ContactEvent) else f"a {item.status} report"
        log.warning(
            "%s from %s is dated %s ahead of now (%s); using the time it arrived. Check "
            "the sender's clock and time zone: a UTC time sent with a local offset "
            "(13:00-03:00 for 13:00Z) looks like this%s",
            what,
            source,
            describe(ahead),
            item.at.isoformat(),
            f" ({quiet:,} more clamped since the last warning)" if quiet else "",
        )


def _source(item: ContactEvent | StatusReport) -> str:
    return item.source if isinstance(item, ContactEvent) else item.provider
