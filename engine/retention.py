"""Retention: what has finished is deleted once it is older than ``retention.keep``.

Without it the store grows for ever (about 4 KB per run of a two-message flow on
SQLite). Every ``retention.every`` a serving engine purges, batch after batch
(``Store.purge``, one transaction of at most ``retention.batch`` runs and rows of
each other kind), until nothing older is left:

- finished runs (completed, failed, cancelled) with their messages and events;
- events of no run (replies, opt-outs, attendance); the contact keeps the facts;
- status reports kept for a provider id that never arrived;
- cron firings (each fire time is long past: it cannot fire again).

Contacts, open runs and due work are never deleted. The cutoff is never later than
any rule can look back: ``recent_contact`` of a flow reads the contact's messages of
that long ago, so ``keep`` is stretched to the longest one (with a warning), and the
settings refuse less than two days (``max_per_day`` reads the local day).

With several engines on PostgreSQL each one purges; their batches lock what they
take (SKIP LOCKED), so they share the work instead of repeating it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.clock import Clock
from engine.errors import StoreError
from engine.flow.durations import format_duration
from engine.flow.model import Flow, to_timedelta
from engine.metrics import Metrics
from engine.settings import RetentionSettings
from engine.wording import counted
from storage.base import Purged, Store

log = logging.getLogger("disparo.retention")

# The first purge of a serving engine waits this long: start-up (recovery of the
# work a crash left, trigger schedules) goes first.
FIRST_PURGE_AFTER = timedelta(minutes=1)
# The longest pause between two batches of one purge (see ``purge_all``).
MAX_PAUSE = 1.0
KINDS = ("runs", "messages", "events", "pending_statuses", "trigger_firings")


@dataclass(frozen=True, slots=True)
class Lookback:
    """The longest stretch of past messages a rule reads, and which rule asks for it."""

    span: timedelta
    where: str | None = None  # "flow `x`, step `y`: rules.recent_contact"


def rule_lookback(flows: Iterable[Flow]) -> Lookback:
    """The longest ``recent_contact`` of any step of ``flows`` (defaults included)."""
    longest = Lookback(timedelta(0))
    for flow in flows:
        for step_id in flow.steps:
            recent = flow.rules_for(step_id).recent_contact
            if recent is None:
                continue
            span = to_timedelta(recent)
            if span > longest.span:
                where = f"flow `{flow.flow}`, step `{step_id}`: rules.recent_contact"
                longest = Lookback(span, where)
    return longest


@dataclass(slots=True)
class PurgeTally:
    """What one purge (all its batches) deleted."""

    before: datetime
    batches: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    def add(self, purged: Purged) -> None:
        self.batches += 1
        for kind in KINDS:
            self.counts[kind] += getattr(purged, kind)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, verb: str = "deleted") -> str:
        c = self.counts
        text = (
            f"{verb} {counted(c['runs'], 'finished run')}, {counted(c['messages'], 'message')}, "
            f"{counted(c['events'], 'event')}, "
            f"{counted(c['pending_statuses'], 'unmatched status report')} "
            f"and {counted(c['trigger_firings'], 'cron firing')} from before "
            f"{self.before.isoformat().replace('+00:00', 'Z')}"
        )
        if self.batches:
            text += f" ({self.batches} batch{'es' if self.batches != 1 else ''})"
        return text


async def purge_all(store: Store, before: datetime, *, batch: int, pace: bool = True) -> PurgeTally:
    """Purge batch after batch until nothing from before ``before`` is left.

    ``pace``: after each batch, wait as long as it took (at most ``MAX_PAUSE``), so
    a long purge (the first one on a database that grew for months) takes at most
    half of the process's time: on SQLite a batch's deletes run on the event loop's
    thread, and sends and webhooks wait while they do.
    """
    tally = PurgeTally(before)
    while True:
        started = time.monotonic()
        purged = await store.purge(before, limit=batch)
        tally.add(purged)
        if not purged.more:
            return tally
        await asyncio.sleep(min(time.monotonic() - started, MAX_PAUSE) if pace else 0)


class Retention:
    """The purge of one engine: a cutoff that respects the flows' rules, and a loop."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        settings: RetentionSettings,
        flows: Callable[[], Iterable[Flow]],
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.flows = flows
        self.metrics = metrics
        self.completed = 0  # purges done (all their batches) since the engine started
        self._task: asyncio.Task[None] | None = None
        self._stretched_for: str | None = None

    def keep(self) -> timedelta | None:
        """How long finished things are kept now (None: for ever)."""
        keep = self.settings.keep
        if keep is None:
            return None
        lookback = rule_lookback(self.flows())
        if lookback.span <= keep:
            return keep
        if self._stretched_for != lookback.where:
            self._stretched_for = lookback.where
            log.warning(
                "retention.keep is %s but %s reads %s of messages: keeping %s",
                format_duration(keep),
                lookback.where,
                format_duration(lookback.span),
                format_duration(lookback.span),
            )
        return lookback.span

    async def purge_once(self, *, pace: bool = True) -> PurgeTally | None:
        """Purge everything older than the cutoff now; None when retention is off.

        ``pace``: see ``purge_all`` (a one-off ``disparo purge`` runs alone)."""
        keep = self.keep()
        if keep is None:
            return None
        now = self.clock.now()
        tally = await purge_all(self.store, now - keep, batch=self.settings.batch, pace=pace)
        for kind, count in tally.counts.items():
            if count:
                self.metrics.child(self.metrics.purged, kind).inc(count)
        self.metrics.last_purge.set(now.timestamp())
        self.completed += 1
        if tally.total:
            log.info("retention: %s", tally.summary())
        else:
            log.debug("retention: nothing older than %s to delete", format_duration(keep))
        return tally

    async def preview(self) -> PurgeTally | None:
        """What ``purge_once`` would delete now (nothing is deleted); None when off."""
        keep = self.keep()
        if keep is None:
            return None
        before = self.clock.now() - keep
        counted = await self.store.count_purgeable(before)
        tally = PurgeTally(before)
        for kind in KINDS:
            tally.counts[kind] = getattr(counted, kind)
        return tally

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        """Purge every ``retention.every``, the first time a minute from now."""
        keep = self.settings.keep
        if keep is None or self._task is not None:
            return
        log.info(
            "retention: what finished more than %s ago is deleted every %s "
            "(retention.keep; null keeps everything)",
            format_duration(keep),
            format_duration(self.settings.every),
        )
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        await self.clock.sleep_until(self.clock.now() + FIRST_PURGE_AFTER)
        while True:
            try:
                await self.purge_once()
            except StoreError as exc:
                log.warning(
                    "retention: the purge stopped (%s); it resumes in %s",
                    exc,
                    format_duration(self.settings.every),
                )
            except Exception:
                log.exception("retention: the purge failed; it resumes next time")
            await self.clock.sleep_until(self.clock.now() + self.settings.every)


__all__ = ["FIRST_PURGE_AFTER", "Lookback", "PurgeTally", "Retention", "purge_all", "rule_lookback"]
