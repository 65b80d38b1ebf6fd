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

Interflow counts per account, not per process: ``SharedSendWindow`` keeps the same
window in the engine's store (``ProviderHost.provider_state``), so every ``disparo
serve`` on one database takes its slots from one budget per API key, and a pause or
a lower limit one process learns holds for all. It never waits in memory: the slot
that frees is contested by every process, so a send without a slot is parked
durably (``ProviderRateLimited``, ``left=False``) and whichever process is free
takes it then. ``SendWindow`` (in memory) serves providers without a store.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from engine.errors import ProviderRateLimited
from providers.base import ProviderState, parse_retry_after

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
        # An HTTP-date is measured on our clock (the engine's), not the host's.
        retry_after=parse_retry_after(
            headers.get("Retry-After"), now=datetime.fromtimestamp(wall_now, UTC)
        ),
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

    async def pause(self, seconds: float) -> None:
        """No send starts for ``seconds`` (a longer pause already set is kept)."""
        self._paused_until = max(self._paused_until, self._monotonic() + max(0.0, seconds))

    async def heed_limit(self, limit: int) -> bool:
        """Adopt a smaller limit the vendor reports; ``True`` when it lowered ours."""
        if 1 <= limit < self.limit:
            self.limit = limit
            return True
        return False


class SendPacer(Protocol):
    """What the Interflow adapter asks of its window, in memory or shared."""

    limit: int  # the limit in force, as last known

    async def acquire(self) -> None: ...

    async def pause(self, seconds: float) -> None: ...

    async def heed_limit(self, limit: int) -> bool: ...


def budget_name(base_url: str, api_key: str) -> str:
    """The shared budget of one Interflow account: named by a fingerprint of its key
    (never the key), so instances with the same key share it and others do not."""
    fingerprint = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"interflow {base_url} key:{fingerprint}"


class SharedSendWindow:
    """``SendWindow``'s limit, pause and vendor limit for every process on one store."""

    def __init__(
        self,
        provider: str,
        limit: int,
        *,
        budget: str,
        state: ProviderState,
        window: float = WINDOW_SECONDS + JITTER_MARGIN_SECONDS,
    ) -> None:
        if limit < 1:
            raise ValueError("a rate limit allows at least one request")
        self.provider, self.budget = provider, budget
        self.configured = self.limit = limit
        self.window = window
        self._state = state

    async def acquire(self) -> None:
        """Take a slot of the shared budget now, or raise ``ProviderRateLimited``
        (nothing was sent) with ``retry_after`` until the next slot frees."""
        slot = await self._state.take_rate_slot(
            self.budget, limit=self.configured, window=self.window
        )
        self.limit = slot.limit
        if slot.taken:
            return
        wait = max(0.0, (slot.free_at - self._state.now()).total_seconds())
        raise ProviderRateLimited(
            f"{self.provider}: no slot of the {self.limit} requests per minute that every "
            "engine on this store shares is free (used up, or Interflow asked to pause); "
            f"the next send may start in {wait:.1f}s",
            retry_after=wait,
            left=False,
        )

    async def pause(self, seconds: float) -> None:
        """No process starts a send for ``seconds`` (a longer stored pause is kept)."""
        await self._state.restrict_rate_budget(self.budget, pause_for=max(0.0, seconds))

    async def heed_limit(self, limit: int) -> bool:
        """Share the limit the vendor reports; ``True`` when it lowered ours.

        Stored only when it changes what is in force, so an answer that repeats the
        configured limit costs no write; a larger one (the plan was upgraded) lifts a
        lower limit stored before, up to the configured one.
        """
        if limit < 1:
            return False
        in_force = min(limit, self.configured)
        if in_force == self.limit:
            return False
        await self._state.restrict_rate_budget(self.budget, vendor_limit=limit)
        lowered = in_force < self.limit
        self.limit = in_force
        return lowered
