"""Recording a provider's answer to a send: ``sent`` with its provider id, or a
refusal of the message itself. Both are known outcomes, so each is kept and its
commit retried while the store cannot take it (``engine.outcome_keeper``); the
other errors go to ``engine.send_failures`` as they come."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine import runner, send_failures
from engine.errors import ProviderDiscarded, ProviderError, ProviderRejected, StaleRun
from engine.models import Contact, DueWork, Message, MessageStatus, Run, SendResult
from engine.outcome_keeper import outcome_report
from engine.validity import Validity
from storage.base import MessageChange

if TYPE_CHECKING:
    from engine.sending import Sender


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

    async def record() -> None:
        first = not tries
        tries.append(None)
        try:
            await sender.d.apply_events(
                work,
                [runner.StepEvent(name="sent", step_seq=message.step_seq)],
                messages=[change],
                run_id=run.id,
                contact_last_outbound=answered_at,
                known_run=run if first else None,
                known_contact=contact if first else None,
            )
        except StaleRun:
            # A status webhook moved the message first; keep its status, add the id.
            late = MessageChange(
                message_id=message.id,
                at=answered_at,
                provider_message_id=result.provider_message_id,
            )
            await sender.complete(work, messages=[late])

    report = outcome_report(
        message, result.status, answered_at, provider_message_id=result.provider_message_id
    )
    await sender.d.keeper.record(work, message, record, report)


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
