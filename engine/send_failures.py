"""What a send that did not go through leaves behind: a retry, an ambiguous message,
a failure, a skip or deferral the provider's own guard decided, or (when the engine
stops before the request left) the message given back.

Every write that moves a message off ``sending`` expects it still to be
``sending``: a provider report that landed meanwhile is the truth and wins.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine import validity
from engine.circuit import unwell
from engine.errors import (
    ProviderAmbiguous,
    ProviderAuthError,
    ProviderDiscarded,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    ProviderUnreachable,
    StaleFence,
    StaleRun,
)
from engine.flow.model import to_timedelta
from engine.models import DueWork, Message, MessageStatus, NewEvent
from engine.rules import ATTENDANCE_RECHECK, Decision
from engine.send_content import decision_event, message_event
from engine.validity import Validity
from storage.base import Commit, Completion, MessageChange

if TYPE_CHECKING:
    from engine.sending import Sender

log = logging.getLogger("disparo.sending")


async def give_back(sender: Sender, work: DueWork, message: Message) -> None:
    """Release a send that never left, for whichever process claims it next.

    A fresh message goes back to ``queued`` with its attempt uncounted; a resend of
    one found ``sending`` (an earlier attempt may have left) stays ``sending``.
    """
    released = await _release(
        sender,
        work,
        message,
        retry_at=sender.now,
        keep_sending=message.status == MessageStatus.SENDING,
        why="the engine stopped before sending",
        attempts=message.attempts,
        next_attempt_at=None,
    )
    if released:
        log.info("message %s goes back to the queue unsent: the engine is stopping", message.id)


def log_cut_off(message: Message, idempotent: bool) -> None:
    """The stop's grace ran out while the request was on the wire: say which message
    is left ``sending`` and what the next process does with it."""
    then = (
        "the next process resends it with the same idempotency key"
        if idempotent
        else "the next process marks it ambiguous (settle it with a `status` event)"
    )
    log.warning(
        "stopping: message %s via %s was cut off with its request on the wire after "
        "dispatcher.shutdown_grace; it stays `sending` and %s",
        message.id,
        message.provider,
        then,
    )


async def cut_off_unsent(sender: Sender, work: DueWork, message: Message) -> None:
    """A send cancelled before it reached the provider (in its rules, render or
    outbox write): the message back to ``queued`` with the attempt uncounted if the
    ``sending`` write landed, and its due work free to claim at once either way."""
    now = sender.now
    back = MessageChange(
        message_id=message.id,
        at=now,
        status=MessageStatus.QUEUED,
        force=True,
        expected_status=MessageStatus.SENDING,  # only undo our own outbox write
        attempts=message.attempts,
        next_attempt_at=None,
    )
    store = sender.d.store
    try:
        try:
            await store.commit(
                Commit(now=now, done=Completion(work=work, retry_at=now), messages=[back])
            )
        except StaleRun:  # the outbox write never landed: the message is still queued
            await store.commit(Commit(now=now, done=Completion(work=work, retry_at=now)))
    except StaleFence:
        return  # the write it was cut off in finished the work (a skip, a failure)
    log.info("message %s goes back to the queue unsent: cut off before it left", message.id)


async def ambiguous(sender: Sender, work: DueWork, message: Message, why: str) -> None:
    change = MessageChange(
        message_id=message.id,
        at=sender.now,
        status=MessageStatus.AMBIGUOUS,
        force=True,  # sending -> ambiguous is sideways, not forward
        expected_status=MessageStatus.SENDING,
        last_error=why,
    )
    event = message_event(message, "message.ambiguous", sender.now, {"reason": why})
    try:
        await sender.complete(work, messages=[change], events=[event])
    except StaleRun:
        await reported_meanwhile(sender, work, message, why)
        return
    log.warning("message %s is ambiguous (%s); not resending blindly", message.id, why)
    sender.d.metrics.child(sender.d.metrics.messages, message.provider, "ambiguous").inc()


async def reported_meanwhile(sender: Sender, work: DueWork, message: Message, error: str) -> None:
    """The send failed, but a provider report moved the message off ``sending``
    while it was out: the report is the truth. Neither retry nor mark it."""
    now = await sender.d.store.get_message(message.id)
    log.info(
        "message %s failed to send (%s) but the provider already reported it %s; "
        "keeping that, not retrying",
        message.id,
        error,
        now.status if now is not None else "gone",
    )
    await sender.complete(work)


async def provider_error(
    sender: Sender,
    work: DueWork,
    message: Message,
    exc: ProviderError,
    attempts: int,
    *,
    idempotent: bool,
    hints: Mapping[str, Any],
    valid: Validity | None = None,
) -> None:
    error = exc.vendor_message or str(exc)
    if isinstance(exc, ProviderAmbiguous):
        if not idempotent:
            await ambiguous(sender, work, message, str(exc))
            return
        if attempts >= sender.d.settings.max_attempts:
            # Resending with the same key is safe, but not for ever: a provider that
            # never answers usably is the operator's to look at.
            await ambiguous(
                sender, work, message, f"no usable answer after {attempts} attempts: {exc}"
            )
            return
        # Same key again is safe: the provider dedupes it. Stay `sending`.
        await retry(sender, work, message, exc, keep_sending=True, attempts=attempts)
        return
    if isinstance(exc, ProviderUnreachable | ProviderRateLimited):
        await retry(sender, work, message, exc, attempts=attempts, valid=valid)
        return
    # Refused credentials are the account's fault, not the message's: retried like a
    # provider that is down (the circuit pauses the provider meanwhile), so fixing
    # them in time sends the backlog instead of failing every message at once.
    budgeted = ProviderUnavailable | ProviderAuthError
    if isinstance(exc, budgeted) and attempts < sender.d.settings.max_attempts:
        await retry(sender, work, message, exc, attempts=attempts, valid=valid)
        return
    if isinstance(exc, ProviderDiscarded):
        await discarded(sender, work, message, exc, hints)
        return
    if isinstance(exc, ProviderAuthError):
        error = f"gave up after {attempts} attempts: {exc}"
    elif isinstance(exc, ProviderUnavailable):
        error = f"gave up after {attempts} attempts: {error}"
    await sender.fail(work, message, error)


async def discarded(
    sender: Sender,
    work: DueWork,
    message: Message,
    exc: ProviderDiscarded,
    hints: Mapping[str, Any],
) -> None:
    """The provider's guard held the message back for the flow's ``exc.rule``: the
    rule's own action follows, recorded as its decision, as if disparo had seen it."""
    action = hints.get(exc.rule)
    facts = {"provider": message.provider, "said": exc.vendor_message}
    if action == "defer":
        until = sender.now + ATTENDANCE_RECHECK
        decision = Decision(
            rule=exc.rule, outcome="defer", reason="provider_discarded", facts=facts, until=until
        )
        event = decision_event(decision, message, sender.now)
        if await _release(
            sender,
            work,
            message,
            retry_at=until,
            keep_sending=False,
            why=str(exc),
            events=[event],
            last_error=str(exc),
            next_attempt_at=until,
        ):
            log.info("deferred message %s until %s: %s", message.id, until.isoformat(), exc)
        return
    decision = Decision(rule=exc.rule, outcome="skip", reason="provider_discarded", facts=facts)
    await sender.skip(
        work,
        message,
        "provider_discarded",
        [decision_event(decision, message, sender.now)],
        expected_status=MessageStatus.SENDING,
    )


async def retry(
    sender: Sender,
    work: DueWork,
    message: Message,
    exc: ProviderError,
    *,
    attempts: int,
    keep_sending: bool = False,
    valid: Validity | None = None,
) -> None:
    """Try ``message`` again later; fail it now when that is past its ``valid``
    deadline (not a resend with the same key: that one may have reached the contact)."""
    # A request that never left (refused connection, a pause for the plan's rate) or
    # that the provider refused for its rate (429) sent nothing: it does not use up
    # `max_attempts`, which counts tries that may have reached the provider. Its
    # backoff grows with the work's own retries instead.
    spent = exc.left and not isinstance(exc, ProviderRateLimited)
    counted = attempts if spent else attempts - 1
    delay = sender.d.backoff(attempts if spent else work.attempts + 1)
    if exc.retry_after is not None:
        # Honour Retry-After, up to a cap: a wrong header must not park a message for years.
        cap = sender.d.settings.max_retry_after
        delay = max(delay, to_timedelta(min(exc.retry_after, cap)))
    retry_at = sender.now + delay
    error = exc.vendor_message or str(exc)
    # Not a resend with the same key: that one may have reached the contact.
    if not keep_sending and await validity.too_late_to_retry(
        sender, work, message, valid, retry_at, f"{exc.code}: {error}"
    ):
        return
    released = await _release(
        sender,
        work,
        message,
        retry_at=retry_at,
        keep_sending=keep_sending,
        why=error,
        last_error=error,
        next_attempt_at=retry_at,
        attempts=counted,
    )
    if released:
        log.info(
            "message %s attempt %d: %s; retrying at %s",
            message.id,
            attempts,
            exc.code,
            retry_at.isoformat(),
        )


async def _release(
    sender: Sender,
    work: DueWork,
    message: Message,
    *,
    retry_at: datetime,
    keep_sending: bool,
    why: str,
    events: Sequence[NewEvent] = (),
    **fields: Any,
) -> bool:
    """Hand a send that did not go through back to the queue, due again at
    ``retry_at``: the message back to ``queued``, or left ``sending`` when a resend
    must carry the same key. ``fields``: what else the ``MessageChange`` sets.

    False when a provider report moved the message meanwhile (it is kept; ``why``
    is logged with it).
    """
    change = MessageChange(
        message_id=message.id,
        at=sender.now,
        status=None if keep_sending else MessageStatus.QUEUED,
        force=not keep_sending,
        # Back to queued only from sending: a report that came in meanwhile
        # (the provider took it after all) must not be undone into a resend.
        expected_status=MessageStatus.SENDING,
        **fields,
    )
    try:
        await sender.d.store.commit(
            Commit(
                now=sender.now,
                done=Completion(work=work, retry_at=retry_at),
                messages=[change],
                events=events,
            )
        )
    except StaleRun:
        await reported_meanwhile(sender, work, message, why)
        return False
    return True


def count_failure(sender: Sender, provider: str, exc: ProviderError) -> None:
    """Every failure is counted in /metrics; one that says the provider is unwell
    counts toward its circuit, and the one that opens it pauses the provider's
    sends, said once."""
    metrics = sender.d.metrics
    metrics.child(metrics.provider_errors, provider, exc.code).inc()
    breaker = sender.d.breaker(provider)
    if unwell(exc) and breaker.failure(sender.now):
        sender.d.metrics.circuit_open.labels(provider).set(1)
        log.warning(
            "provider %s failed %d times in a row (%s); pausing its sends until %s",
            provider,
            breaker.failures,
            exc.code,
            breaker.open_until.isoformat() if breaker.open_until else "?",
        )
