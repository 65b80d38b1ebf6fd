"""Applying a provider's status report (a STATUS due-work row) to its message and run.

Reports are monotonic: one that does not move the message forward (a ``delivered``
after ``read``, a repeat) completes its work and changes nothing. One matched by the
message's idempotency key brings the provider id the store did not have yet
(``engine.outcome_keeper``). A run that changed meanwhile is read again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from engine.errors import MAX_STALE_RETRIES, StaleRun
from engine.models import (
    REPORTED_STATUSES,
    DueWork,
    Message,
    MessageStatus,
    NewEvent,
    status_can_advance,
)
from engine.send_content import message_event
from engine.step_events import status_step_events
from storage.base import Commit, Completion, reported_change

if TYPE_CHECKING:
    from engine.dispatcher import Dispatcher


async def apply_status_report(d: Dispatcher, work: DueWork) -> None:
    """Apply the status report ``work`` carries to its message and run; a report that
    does not move the message forward only completes the work."""
    assert work.message_id is not None
    for _ in range(MAX_STALE_RETRIES):
        message = await d.store.get_message(work.message_id)
        if message is None:
            await d.store.commit(Commit(now=d.clock.now(), done=Completion(work=work)))
            return
        new = MessageStatus(str(work.payload["status"]))
        at = datetime.fromisoformat(str(work.payload.get("at") or d.clock.now().isoformat()))
        if new not in REPORTED_STATUSES or not status_can_advance(message.status, new):
            unapplied: list[NewEvent] = []
            if (new == MessageStatus.FAILED) != (message.status == MessageStatus.FAILED):
                # Its `status.<new>` line reads as the outcome: say that it is not.
                unapplied.append(_unapplied(message, new, d.clock.now()))
            await d.store.commit(
                Commit(now=d.clock.now(), done=Completion(work=work), events=unapplied)
            )
            return
        error = work.payload.get("error_message") or work.payload.get("error_code")
        change = reported_change(
            message.id,
            stored=message.status,
            new=new,
            at=at,
            error=None if error is None else str(error),
        )
        reported_id = work.payload.get("provider_message_id")
        if reported_id and message.provider_message_id is None:
            # Matched by its idempotency key: the id arrives with the report (a
            # send whose answer the store could not take at once, engine.outcome_keeper).
            change = replace(change, provider_message_id=str(reported_id))
        events = status_step_events(message.id, message.step_seq, message.status, new)
        try:
            await d.apply_events(work, events, messages=[change], run_id=message.run_id)
        except StaleRun:
            continue
        d.status_moved(message.provider, message.id, message.run_id, new)
        return
    raise StaleRun(f"message {work.message_id} kept changing while applying a status")


def _unapplied(message: Message, new: MessageStatus, now: datetime) -> NewEvent:
    """A ``failed`` report for a message already ``read`` (or skipped), or a ``sent``,
    ``delivered`` or ``read`` one for a message already ``failed``: kept in the log as
    ``status.<new>``, it changes nothing, and `disparo why` says so."""
    failed = message.status == MessageStatus.FAILED
    final = "a failure is final" if failed else "statuses never go back"
    reason = (
        f"message is already {message.status}: a `{new}` report after it changes nothing ({final})"
    )
    return message_event(
        message, "message.report_ignored", now, {"step": message.step, "reason": reason}
    )
