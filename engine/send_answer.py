"""Recording a provider's answer to a send: ``sent`` with its provider id, or a
refusal of the message itself. Both are known outcomes, so each is kept and its
commit retried while the store cannot take it (``engine.outcome_keeper``); the
other errors go to ``engine.send_failures`` as they come."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine import runner, send_failures
from engine.errors import Conflict, ProviderDiscarded, ProviderError, ProviderRejected, StaleRun
from engine.models import Contact, DueWork, Message, MessageStatus, NewEvent, Run, SendResult
from engine.outcome_keeper import outcome_report
from engine.send_content import message_event
from engine.validity import Validity
from storage.base import MessageChange

if TYPE_CHECKING:
    from engine.sending import Sender

log = logging.getLogger("disparo.sending")


async def record_sent(
    sender: Sender,
    work: DueWork,
    message: Message,
    run: Run,
    contact: Contact,
    result: SendResult,
    answered_at: datetime,
) -> None:
    """The provider took the message: ``sent`` (or what it said) with its id, and
    the run's ``sent`` event, kept until the store records them."""
    change = MessageChange(
        message_id=message.id,
        at=answered_at,
        status=result.status,
        expected_status=MessageStatus.SENDING,
        provider_message_id=result.provider_message_id,
        last_error=None,
    )
    tries: list[None] = []  # a retry of the commit reads the run and contact again

    def went_out() -> NewEvent:
        """What `disparo why` shows for the answer: with no status report ever coming
        (Robbu sends none), or the run cancelled while the request was out, it is the
        only trace that the message reached the provider."""
        data = {"step": message.step, "provider": message.provider}
        if change.provider_message_id is not None:
            data["provider_message_id"] = change.provider_message_id
        return message_event(message, "message.sent", answered_at, data)

    async def record() -> None:
        nonlocal change
        try:
            await apply()
        except Conflict:
            holder = await _holder_of(sender, message, change.provider_message_id)
            if holder is None:
                raise
            log.error(
                "provider %s answered message %s with provider id %s, which message %s "
                "already has: recorded `sent` without it (status reports naming that id "
                "go to %s; reports by idempotency key still reach it). A provider must "
                "answer each message with an id of its own: check providers.%s.id_field",
                message.provider,
                message.id,
                change.provider_message_id,
                holder,
                holder,
                message.provider,
            )
            change = replace(change, provider_message_id=None)
            await apply()

    async def apply() -> None:
        first = not tries
        tries.append(None)
        try:
            await sender.d.apply_events(
                work,
                [runner.StepEvent(name="sent", step_seq=message.step_seq)],
                messages=[change],
                run_id=run.id,
                extra_events=[went_out()],
                contact_last_outbound=answered_at,
                known_run=run if first else None,
                known_contact=contact if first else None,
            )
        except StaleRun:
            # A status webhook moved the message first; keep its status, add the id.
            late = MessageChange(
                message_id=message.id,
                at=answered_at,
                provider_message_id=change.provider_message_id,
            )
            await sender.complete(work, messages=[late], events=[went_out()])

    report = outcome_report(
        message, result.status, answered_at, provider_message_id=result.provider_message_id
    )
    await sender.d.keeper.record(work, message, record, report)


async def _holder_of(sender: Sender, message: Message, provider_id: str | None) -> str | None:
    """The other message that already has ``provider_id`` from this provider, if any."""
    if provider_id is None:
        return None
    found = await sender.d.store.find_message(message.provider, provider_message_id=provider_id)
    return None if found is None or found.id == message.id else found.id


async def record_error(
    sender: Sender,
    work: DueWork,
    message: Message,
    exc: ProviderError,
    attempts: int,
    *,
    idempotent: bool,
    hints: Mapping[str, Any],
    answered_at: datetime,
    valid: Validity | None = None,
) -> None:
    """What ``send_failures.provider_error`` makes of ``exc``; a refusal of the
    message itself (a final failure) is kept until the store records it."""

    async def record() -> None:
        await send_failures.provider_error(
            sender, work, message, exc, attempts, idempotent=idempotent, hints=hints, valid=valid
        )

    if not isinstance(exc, ProviderRejected) or isinstance(exc, ProviderDiscarded):
        await record()
        return
    error = exc.vendor_message or str(exc)
    report = outcome_report(message, MessageStatus.FAILED, answered_at, error=error)
    await sender.d.keeper.record(work, message, record, report)
