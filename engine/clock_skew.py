"""How far this process's clock is from the shared database's, and a warning when too far.

Processes that share a PostgreSQL database count time in their own wall clock: the
lease on a claimed send or timer (``dispatcher.lease_seconds``), when timers fall
due, Robbu's login claim and Interflow's 61 s rate window. A process whose clock
runs ahead sees the leases of the others expire early and takes over work they are
still doing (the message is sent again with its idempotency key, or made
ambiguous); one that lags keeps work past its lease. Nothing in the data shows
why, so the dispatcher compares its clock with the database server's at start and
every ``CHECK_EVERY``, sets ``disparo_clock_skew_seconds``, says once at WARNING
when the difference passes ``SKEW_LIMIT`` and once at INFO when it is back within.
A store without a clock of its own (SQLite: one process) is not compared.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from engine.clock import Clock
from engine.errors import StoreError
from engine.metrics import Metrics
from storage.base import Store

log = logging.getLogger("disparo.dispatcher")

SKEW_LIMIT = 1.0  # seconds: Interflow's window has one second of margin (61 s for 60/min)
CHECK_EVERY = timedelta(minutes=5)


class ClockWatch:
    def __init__(self, store: Store, clock: Clock, metrics: Metrics, lease_seconds: float) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.lease_seconds = lease_seconds
        self.off = False  # whether the last measure was past SKEW_LIMIT (and said so)
        self.compared = True  # False once the store turned out to have no clock

    async def run(self) -> None:
        while True:
            await self.check()
            if not self.compared:
                return
            await self.clock.sleep_until(self.clock.now() + CHECK_EVERY)

    async def check(self) -> float | None:
        """This clock minus the database's, in seconds (positive: ahead); None when
        the store has no clock of its own, does not answer, or answers too slowly for
        the difference to mean anything."""
        before = self.clock.now()
        try:
            theirs = await self.store.database_time()
        except StoreError:  # unavailable, or failing: the next check tries again
            return None
        after = self.clock.now()
        self.compared = theirs is not None
        if theirs is None or (after - before).total_seconds() > SKEW_LIMIT:
            return None
        skew = (before + (after - before) / 2 - theirs).total_seconds()
        self.metrics.clock_skew.set(skew)
        if abs(skew) > SKEW_LIMIT and not self.off:
            log.warning(
                "this process's clock is %.1f s %s the database's: processes sharing it "
                "count leases (dispatcher.lease_seconds: %g), timers and provider rate "
                "windows in their own clock, so one off by that much takes over work "
                "another is still doing (a message sent again with its idempotency key, "
                "or made ambiguous); sync this host's clock (NTP)",
                abs(skew),
                "ahead of" if skew > 0 else "behind",
                self.lease_seconds,
            )
        elif abs(skew) <= SKEW_LIMIT and self.off:
            log.info("this process's clock agrees with the database's again (%.1f s)", skew)
        self.off = abs(skew) > SKEW_LIMIT
        return skew


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
