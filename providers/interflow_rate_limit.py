"""Interflow's per-minute request limit, kept on our side so 429s stay exceptional.

Interflow limits each account to N requests per minute by plan (Starter 60,
Professional 300, Enterprise 1000) and reports the state of the window in every
answer (API overview page)::

    X-RateLimit-Limit: 300
    X-RateLimit-Remaining: 298
    X-RateLimit-Reset: 1640995200      # Unix time when the window resets

``SendWindow`` is a sliding-window log: a send may start when fewer than N sends
started in the last minute (plus a one-second margin for network jitter, so the
vendor never sees N + 1 arrivals in any 60 s, whether it counts fixed minutes or a
sliding window). A send that would wait longer than ``max_wait`` does not hold a
dispatcher slot in memory: it raises ``ProviderRateLimited`` (``left=False``) with
the time the slot frees, and the engine parks the message durably until then.

After a 429, or an answer saying ``X-RateLimit-Remaining: 0``, the window is paused
until the vendor's reset; an ``X-RateLimit-Limit`` below the configured limit (a
smaller plan than configured) lowers the limit. Time comes from injected callables,
so tests drive it without sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from engine.errors import ProviderRateLimited
from providers.base import parse_retry_after

Monotonic = Callable[[], float]
WallClock = Callable[[], float]  # Unix seconds
Sleep = Callable[[float], Awaitable[None]]

WINDOW_SECONDS = 60.0
JITTER_MARGIN_SECONDS = 1.0  # an older request may reach the vendor later than a newer one


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitHeaders:
    """What one answer's headers say about the vendor's window."""

    limit: int | None = None
    remaining: int | None = None
    reset_in: float | None = None  # seconds from now until X-RateLimit-Reset
    retry_after: float | None = None  # seconds, from Retry-After

    @property
    def wait(self) -> float | None:
        """How long the vendor asks us to hold off: Retry-After, else the reset."""
        return self.retry_after if self.retry_after is not None else self.reset_in


def read_rate_limit_headers(headers: Mapping[str, str], *, wall_now: float) -> RateLimitHeaders:
    """Parse ``Retry-After`` and ``X-RateLimit-*``; malformed values count as absent.

    ``X-RateLimit-Reset`` is Unix seconds in Interflow's documentation; values that
    look like milliseconds or like a delta in seconds are read as such. A reset more
    than a window away is clock skew between us and the vendor, so it is capped.
    """
    reset_in: float | None = None
    reset = _number(headers.get("X-RateLimit-Reset"))
    if reset is not None:
        if reset > 1e12:  # Unix milliseconds
            reset /= 1000.0
        delta = reset - wall_now if reset > 1e9 else reset
        reset_in = min(max(delta, 0.0), WINDOW_SECONDS + JITTER_MARGIN_SECONDS)
    limit = _number(headers.get("X-RateLimit-Limit"))
    remaining = _number(headers.get("X-RateLimit-Remaining"))
    return RateLimitHeaders(
        limit=int(limit) if limit is not None and limit >= 1 else None,
        remaining=int(remaining) if remaining is not None and remaining >= 0 else None,
        reset_in=reset_in,
        retry_after=parse_retry_after(headers.get("Retry-After")),
    )


def _number(value: str | None) -> float | None:
    try:
        number = float(value.strip()) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


class SendWindow:
    """At most ``limit`` sends start in any window; callers ``await acquire()`` first."""

    def __init__(
        self,
        provider: str,
        limit: int,
        *,
        monotonic: Monotonic,
        sleep: Sleep,
        max_wait: float,
        window: float = WINDOW_SECONDS + JITTER_MARGIN_SECONDS,
    ) -> None:
        if limit < 1:
            raise ValueError("a rate limit allows at least one request")
        self.provider = provider
        self.limit = limit
        self.window = window
        self.max_wait = max_wait
        self._monotonic = monotonic
        self._sleep = sleep
        self._started: deque[float] = deque()  # start times inside the window, oldest first
        self._paused_until = -math.inf

    @property
    def paused_for(self) -> float:
        """Seconds left of a pause the vendor asked for (0 when not paused)."""
        return max(0.0, self._paused_until - self._monotonic())

    def next_slot(self, now: float) -> float:
        """The monotonic time at which the next send may start (``now``, if it may now)."""
        while self._started and self._started[0] <= now - self.window:
            self._started.popleft()
        slot = now
        if len(self._started) >= self.limit:
            slot = self._started[len(self._started) - self.limit] + self.window
        return max(slot, self._paused_until)

    async def acquire(self) -> None:
        """Take a slot, waiting up to ``max_wait`` in total for one.

        Raises ``ProviderRateLimited`` (nothing was sent) with ``retry_after`` when the
        next slot is further away than that.
        """
        deadline = self._monotonic() + self.max_wait
        while True:
            now = self._monotonic()
            slot = self.next_slot(now)
            if slot <= now:
                self._started.append(now)
                return
            if slot > deadline:
                wait = slot - now
                why = (
                    f"Interflow asked to pause for {self.paused_for:.1f}s more"
                    if self._paused_until >= slot
                    else f"the plan's {self.limit} requests per minute are used up"
                )
                raise ProviderRateLimited(
                    f"{self.provider}: {why}; the next send may start in {wait:.1f}s",
                    retry_after=wait,
                    left=False,
                )
            await self._sleep(slot - now)

    def pause(self, seconds: float) -> None:
        """No send starts for ``seconds`` (a longer pause already set is kept)."""
        self._paused_until = max(self._paused_until, self._monotonic() + max(0.0, seconds))

    def lower_limit(self, limit: int) -> bool:
        """Adopt a smaller limit the vendor reports; ``True`` when it changed."""
        if 1 <= limit < self.limit:
            self.limit = limit
            return True
        return False
