"""A circuit breaker per provider: stop hammering a provider that is down.

After ``threshold`` consecutive failures that say the provider is unwell (could not
connect, 5xx, timeouts), the circuit opens: sends through that provider are not
attempted and their due work is moved to when the circuit half-opens. Then sends
go again: the first success closes the circuit, the first failure opens it again
for twice as long (up to ``cooldown_cap``). A rejected message (400/422) or a rate
limit says nothing about the provider's health and does not count.

Times come from the engine's clock, so tests drive the breaker on a virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(slots=True)
class CircuitBreaker:
    provider: str
    threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    cooldown_cap: timedelta = timedelta(minutes=5)
    failures: int = 0
    open_until: datetime | None = None
    _current_cooldown: timedelta | None = field(default=None, repr=False)

    def blocked_until(self, now: datetime) -> datetime | None:
        """None when a send may go now; else when to try again."""
        if self.open_until is not None and now < self.open_until:
            return self.open_until
        return None

    def success(self) -> None:
        self.failures = 0
        self.open_until = None
        self._current_cooldown = None

    def failure(self, now: datetime) -> bool:
        """Count a failure; True when this one opened (or re-opened) the circuit."""
        self.failures += 1
        if self.open_until is not None and now < self.open_until:
            return False  # a send that left before the circuit opened
        if self.open_until is not None or self.failures >= self.threshold:
            base = self._current_cooldown
            wait = self.cooldown if base is None else min(base * 2, self.cooldown_cap)
            self._current_cooldown = wait
            self.open_until = now + wait
            return True
        return False

    @property
    def is_open(self) -> bool:
        return self.open_until is not None
