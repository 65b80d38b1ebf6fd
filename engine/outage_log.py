"""How a store outage shows in the log: one WARNING when it starts, a summary at
most once a minute while it lasts, and one INFO line when the store answers again.

Without it each request answered 503 during an outage logged its own WARNING: a
load balancer's health checks and the callers' retries buried the lines an on-call
person needs (a send outcome kept for the store, a provider's error) under
thousands of identical ones, and nothing said when the store came back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

SUMMARY_EVERY = 60.0  # seconds between two "still unavailable" lines


class OutageLog:
    """Counts what failed for the store being down, and logs the outage's start,
    its progress and its end. ``meanwhile`` says what happens while it lasts
    ("requests answer 503"), ``what`` names what is counted ("requests answered 503")."""

    def __init__(
        self,
        log: logging.Logger,
        meanwhile: str,
        what: str,
        *,
        every: float = SUMMARY_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._meanwhile = meanwhile
        self._what = what
        self._every = every
        self._clock = clock
        self._since: float | None = None
        self._summed_at = 0.0
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: object) -> None:
        now = self._clock()
        self._failures += 1
        if self._since is None:
            self._since = self._summed_at = now
            self._log.warning(
                "store unavailable: %s; %s until it is back (summed up here once a minute)",
                error,
                self._meanwhile,
            )
        elif now - self._summed_at >= self._every:
            self._summed_at = now
            self._log.warning(
                "store still unavailable after %.0fs (%d %s so far): %s",
                now - self._since,
                self._failures,
                self._what,
                error,
            )

    def succeeded(self) -> None:
        if self._since is None:
            return
        self._log.info(
            "store answers again after %.0fs unavailable (%d %s meanwhile)",
            self._clock() - self._since,
            self._failures,
            self._what,
        )
        self._since = None
        self._failures = 0
