"""A circuit breaker per provider: stop hammering a provider that is down.

After ``threshold`` consecutive failures that say the provider is unwell (could not
connect, 5xx, timeouts, refused credentials; the adapters also raise a channel or
account error, such as Interflow's disconnected channel or a wrong Robbu private
token, as one of these), the circuit opens: sends through that
provider are not attempted and their due work is moved to when the circuit
half-opens. Half-open, one send goes as a probe while the others wait a few
seconds: its success closes the circuit, its failure opens it again for twice as
long (up to ``cooldown_cap``). So a backlog of thousands of messages costs the
provider one request per cooldown, not a burst, and only the probe spends an
attempt. A rejected message (400/422) or a rate limit says nothing about the
provider's health: it counts for nothing and lets the next send probe.

Times come from the engine's clock, so tests drive the breaker on a virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.errors import (
    ProviderAmbiguous,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
    ProviderUnreachable,
)

# While a probe is out, the other sends look again this much later (or when the
# probe is taken as lost, if that is sooner).
PROBE_RECHECK = timedelta(seconds=5)


def unwell(exc: ProviderError) -> bool:
    """Whether a failed send counts against its provider's health: it could not
    connect, answered 5xx, refused the credentials, or gave no answer at all."""
    if isinstance(exc, ProviderAmbiguous):
        return exc.status is None
    return isinstance(exc, ProviderUnreachable | ProviderUnavailable | ProviderAuthError)


@dataclass(slots=True)
class CircuitBreaker:
    provider: str
    threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    cooldown_cap: timedelta = timedelta(minutes=5)
    failures: int = 0
    open_until: datetime | None = None
    probe_since: datetime | None = None
    _current_cooldown: timedelta | None = field(default=None, repr=False)

    def admit(self, now: datetime) -> datetime | None:
        """None when a send may go now; else when to try it again.

        Half-open, the first send admitted is the probe. A probe that never reports
        (the engine stopped, the task died) is taken as lost after ``cooldown``, and
        the next send probes instead.
        """
        if self.open_until is None:
            return None
        self._after_a_step_back(now)
        if now < self.open_until:
            return self.open_until
        if self.probe_since is not None:
            lost_at = self.probe_since + self.cooldown
            if now < lost_at:
                return min(lost_at, now + PROBE_RECHECK)
        self.probe_since = now
        return None

    def _after_a_step_back(self, now: datetime) -> None:
        """Times set before the host's clock was stepped back (a VM resumed, NTP fixing
        a wrong time) lie further ahead than any cooldown: they count from ``now``, so
        the provider pauses one cooldown, not for the size of the step too."""
        longest = self._current_cooldown or self.cooldown
        if self.open_until is not None and self.open_until - now > longest:
            self.open_until = now + longest
        if self.probe_since is not None and self.probe_since - now > PROBE_RECHECK:
            self.probe_since = now

    def success(self) -> None:
        self.failures = 0
        self.open_until = None
        self.probe_since = None
        self._current_cooldown = None

    def settle(self, admitted_at: datetime) -> None:
        """The send ``admit`` let through at ``admitted_at`` is over. If it was the
        probe and neither ``success`` nor ``failure`` came of it (a 422, a rule that
        deferred it), it said nothing about the provider: the next send probes."""
        if self.probe_since == admitted_at:
            self.probe_since = None

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
            self.probe_since = None
            return True
        return False

    @property
    def is_open(self) -> bool:
        return self.open_until is not None
