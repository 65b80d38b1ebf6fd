"""A send's known outcome, kept while the store cannot record it.

Once a provider has answered a send (a provider message id in hand, or a refusal
of the message itself), that answer is the only record that the request left.
If the store fails the commit at that moment (PostgreSQL restarting, a backend
terminated, a SQLite write lock held elsewhere, a full disk), dropping it would
leave the message ``sending``: the next claim would call it ``ambiguous`` (or, with
idempotency keys, send it again under the same key) although its outcome is known.

So the outcome is kept and its commit retried, never the send:

1. while the due work's lease is still ours (the heartbeat extends it whenever
   the store answers), the same fenced commit is tried again with backoff;
2. when the lease is about to run out, or another claim took the row over, the
   outcome goes through the status path instead, as a provider's report would
   (``Store.ingest_status_reports``, matched by the message's idempotency key):
   it moves a ``sending`` message to ``sent`` (with its provider id) or ``failed``,
   and settles it if another worker already marked it ``ambiguous``. That write
   needs no lease, so it is retried in the background until the store answers.

A process stopping with such an outcome still unrecorded logs the message id,
provider and provider id at WARNING: an operator settles it with a ``status``
event (``POST /v1/events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from engine.errors import StaleFence, StoreUnavailable
from engine.models import DueWork, Message, MessageStatus, StatusReport

if TYPE_CHECKING:
    from engine.dispatcher import Dispatcher

log = logging.getLogger("disparo.sending")

# Backoff between tries of a commit the store refused: doubling, capped.
FIRST_RETRY = 0.5
RETRY_CAP = 5.0


def outcome_report(
    message: Message,
    status: MessageStatus,
    at: datetime,
    *,
    provider_message_id: str | None = None,
    error: str | None = None,
) -> StatusReport:
    """The provider's answer to a send of ``message`` as a status report of its own."""
    return StatusReport(
        provider=message.provider,
        status=status,
        at=at,
        provider_message_id=provider_message_id,
        idempotency_key=message.idempotency_key,
        error_message=error,
        dedupe_key=f"kept-outcome:{message.id}:{status}:{provider_message_id or message.attempts}",
    )


def _settle_hint(report: StatusReport, message_id: str) -> str:
    return (
        f"message {message_id} via {report.provider} was {report.status} by the provider "
        f"(provider id {report.provider_message_id or '-'}"
        + (f", {report.error_message}" if report.error_message else "")
        + f") at {report.at.isoformat()}, but the store never recorded it; settle it with a "
        f"status event (POST /v1/events, status {report.status}, provider_message_id or "
        f"idempotency_key {report.idempotency_key})"
    )


class OutcomeKeeper:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        self._reporting: dict[asyncio.Task[None], tuple[str, StatusReport]] = {}

    def pending(self) -> list[asyncio.Task[None]]:
        """The outcomes handed to the status path and not yet recorded."""
        return list(self._reporting)

    def lease_deadline(self, work: DueWork) -> datetime:
        """Until when ``work`` is surely still ours: its lease's end (from the claim
        or the last heartbeat that extended it) less a tenth of a lease, for clocks."""
        end = self.d.lease_ends.get(work.id) or work.lease_until or self.d.clock.now()
        return end - timedelta(seconds=self.d.settings.lease_seconds / 10)

    def _pause(self, tries: int) -> timedelta:
        return timedelta(seconds=min(RETRY_CAP, FIRST_RETRY * 2 ** min(tries, 16)))

    async def record(
        self,
        work: DueWork,
        message: Message,
        write: Callable[[], Awaitable[None]],
        report: StatusReport,
    ) -> None:
        """Run ``write``, the fenced commit of the provider's answer to a send of
        ``message``; while the store is unavailable, retry it as long as ``work``'s
        lease is ours, then hand ``report`` (the same answer) to the status path."""
        tries = 0
        try:
            while True:
                try:
                    # A commit on its way is not cut off half-way by a cancellation.
                    await asyncio.shield(write())
                    return
                except StaleFence:
                    log.info(
                        "due work %s of message %s was taken over while its outcome waited "
                        "for the store; recording it as a status report",
                        work.id,
                        message.id,
                    )
                    break
                except StoreUnavailable as exc:
                    pause = self._pause(tries)
                    tries += 1
                    if tries == 1:
                        log.warning(
                            "store unavailable recording the outcome of message %s (%s, "
                            "provider id %s): %s; keeping it and retrying",
                            message.id,
                            report.status,
                            report.provider_message_id or "-",
                            exc,
                        )
                now = self.d.clock.now()
                if now + pause >= self.lease_deadline(work):
                    log.warning(
                        "the lease of due work %s of message %s runs out before the store "
                        "answered; recording its outcome as a status report",
                        work.id,
                        message.id,
                    )
                    break
                await self.d.clock.sleep_until(now + pause)
        except asyncio.CancelledError:
            log.warning("stopping with an outcome unrecorded: %s", _settle_hint(report, message.id))
            raise
        self.report_later(message.id, report)

    def report_later(self, message_id: str, report: StatusReport) -> None:
        """Record ``report`` through the status path in the background, retried
        until the store takes it (or the process stops: then it is logged)."""
        task = asyncio.create_task(self._report(message_id, report))
        self._reporting[task] = (message_id, report)
        task.add_done_callback(lambda done: self._reporting.pop(done, None))

    async def _report(self, message_id: str, report: StatusReport) -> None:
        tries = 0
        try:
            while True:
                try:
                    await asyncio.shield(
                        self.d.store.ingest_status_reports([report], self.d.clock.now())
                    )
                    break
                except StoreUnavailable as exc:
                    if tries == 0:
                        log.warning(
                            "store unavailable recording message %s as %s: %s; retrying",
                            message_id,
                            report.status,
                            exc,
                        )
                    pause = self._pause(tries)
                    tries += 1
                    await self.d.clock.sleep_until(self.d.clock.now() + pause)
        except asyncio.CancelledError:
            log.warning("stopping with an outcome unrecorded: %s", _settle_hint(report, message_id))
            raise
        log.info("message %s recorded %s as a status report", message_id, report.status)
        self.d.notify()

    async def stop(self, grace: float) -> None:
        """Give the reports still waiting for the store ``grace`` seconds, then
        cancel them (each is logged at WARNING for an operator to settle)."""
        tasks = self.pending()
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
