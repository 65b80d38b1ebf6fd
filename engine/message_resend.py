"""An operator's resend of an ``ambiguous`` message (``POST /v1/messages/{id}/resend``).

A message is ``ambiguous`` when a request may have reached a provider that takes
no idempotency key (its answer was lost): disparo never resends it on its own,
because the contact could get it twice. Usually a status report settles it. When
none comes, the operator can look at the vendor's side and decide: a status event
(``POST /v1/events`` type ``status``) says what happened, or this resend sends it
again, accepting the risk of a duplicate.

The message goes back to ``queued`` with a DISPATCH row due now, in one commit,
and is sent like any other (rules, render, outbox, provider), with the same key.
Only while its run still waits at that message's step: a run that moved on (a
timeout took it elsewhere) or finished has nothing to resend; and only within the
step's ``valid_for``, past which the resend would fail at once as expired.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from engine import validity
from engine.errors import Conflict, NotFound, StaleRun
from engine.models import (
    OPEN_RUN_STATUSES,
    DueKind,
    Message,
    MessageStatus,
    NewDueWork,
)
from engine.send_content import message_event
from storage.base import Commit, MessageChange, Store

if TYPE_CHECKING:
    from engine.flows import FlowCatalog

REASON = "an operator asked to send it again; the contact may get it twice"


async def resend(
    store: Store,
    catalog: FlowCatalog,
    message_id: str,
    *,
    now: datetime,
    default_timezone: str,
) -> Message:
    """Queue ``message_id`` again; ``NotFound``, or ``Conflict`` saying why not."""
    message = await store.get_message(message_id)
    if message is None:
        raise NotFound(f"message {message_id} does not exist")
    if message.status != MessageStatus.AMBIGUOUS:
        raise Conflict(
            f"message {message_id} is {message.status}; only an ambiguous message is resent "
            "(disparo retries the others itself)"
        )
    run = await store.get_run(message.run_id)
    if run is None or run.status not in OPEN_RUN_STATUSES or run.step_seq != message.step_seq:
        where = "finished" if run is None or run.status not in OPEN_RUN_STATUSES else "moved on"
        raise Conflict(
            f"run {message.run_id} has {where} since step {message.step!r}; there is nothing "
            "to resend (settle the message with a status event instead)"
        )
    flow = (await catalog.pinned(run.flow, run.flow_version)).flow
    contact = await store.get_contact(message.contact_id)
    valid = validity.of(flow, message, contact, default_timezone)
    if valid is not None and valid.late(now):
        raise Conflict(
            f"message {message_id} expired at {valid.at(valid.until)} (valid_for "
            f"{valid.length} of step {message.step!r}); a resend would fail at once. Settle it "
            "with a status event instead (`failed` takes the step's `on: failed` route)"
        )
    change = MessageChange(
        message_id=message.id,
        at=now,
        status=MessageStatus.QUEUED,
        force=True,  # ambiguous -> queued is backwards, on purpose
        expected_status=MessageStatus.AMBIGUOUS,
        next_attempt_at=None,
    )
    try:
        await store.commit(
            Commit(
                now=now,
                messages=[change],
                new_due=[
                    NewDueWork(
                        kind=DueKind.DISPATCH, due_at=now, run_id=run.id, message_id=message.id
                    )
                ],
                events=[message_event(message, "message.resend", now, {"reason": REASON})],
            )
        )
    except StaleRun:  # a status report settled it meanwhile
        raise Conflict(
            f"message {message_id} was settled by a status report meanwhile; nothing to resend"
        ) from None
    queued = await store.get_message(message.id)
    assert queued is not None
    return queued
