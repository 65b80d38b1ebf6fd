"""The provider's slot for one send, taken before the message is marked ``sending``.

A message is ``sending`` in the store only once its request can start: the send
first holds what its provider needs before a request (``providers.base.send_slot``:
a connection slot of ``max_in_flight``, Robbu's login, Interflow's rate slot), then
writes the outbox row, then calls the provider inside that same slot. A worker that
dies while a send waits for any of these leaves the message ``queued``: its due work
is taken over after the lease and sent once, where a ``sending`` message of a
provider without idempotency keys would have become ``ambiguous``.

What goes wrong before the outbox write (a rate limit parks the send, a login
fails) is handled here: nothing left, so the message stays ``queued``. So is the call
in that slot (``call_provider``), and the question a send that waited asks before it
goes (``still_wanted``): is its message still there, and still ours to send?
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from engine import send_failures, validity
from engine.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    ProviderUnreachable,
    StaleRun,
    StoreUnavailable,
)
from engine.flow.model import to_timedelta
from engine.models import DueWork, Message, MessageStatus, OutboundMessage, SendResult
from providers.base import Departure, Provider, SendWithdrawn, send_slot, watch_departure
from storage.base import Commit, Completion, MessageChange

if TYPE_CHECKING:
    from engine.sending import Sender

log = logging.getLogger("disparo.sending")


class SendSlot:
    """The slot of one send: taken once (``take``), held until the send is over."""

    def __init__(self, stack: AsyncExitStack, provider: Provider, watched: Departure) -> None:
        self._stack = stack
        self.provider = provider
        self.watched = watched
        self.held = False

    async def take(self) -> None:
        """Wait for the provider's slot; raises ``SendWithdrawn`` (the engine stops) or
        a ``ProviderError`` (nothing was sent) instead."""
        if not self.held:
            await self._stack.enter_async_context(send_slot(self.provider))
            self.held = True


@asynccontextmanager
async def watched_send(
    sender: Sender, work: DueWork, provider: Provider
) -> AsyncIterator[SendSlot]:
    """Watch the departure of ``work``'s send (``Sender.withdraw_waiting``) and release
    its provider slot, if it took one, when the send is over."""
    with watch_departure() as watched:
        watched.withdrawn = sender.d.stopping  # a send claimed while stopping starts nothing
        sender.watching[id(watched)] = (work.id, watched)
        try:
            async with AsyncExitStack() as stack:
                yield SendSlot(stack, provider, watched)
        finally:
            del sender.watching[id(watched)]


async def not_ready(
    sender: Sender,
    work: DueWork,
    message: Message,
    exc: ProviderError,
    attempts: int,
    valid: validity.Validity | None = None,
) -> None:
    """The provider could not get ready for the request (a rate limit parked it, a
    login failed) before the message was marked ``sending``: nothing left, so it stays
    ``queued``, retried like a send that could not connect. A park or a refused
    connection is not an attempt; a failed login is, so refused credentials still
    give up after ``max_attempts``."""
    now = sender.now
    send_failures.count_failure(sender, message.provider, exc)
    parked = isinstance(exc, ProviderRateLimited)
    # As engine.send_failures.retry: a park or a refused connection sent nothing and
    # spends no attempt (its backoff grows with the work's retries); a failed login
    # does, so refused credentials still give up after `max_attempts`.
    unspent = isinstance(exc, ProviderRateLimited | ProviderUnreachable)
    backoff_step = work.attempts + 1 if unspent else attempts
    if unspent:
        attempts = message.attempts
    error = str(exc)  # it names what failed: a login, the provider's own rate limit
    retried = ProviderUnreachable | ProviderRateLimited | ProviderUnavailable | ProviderAuthError
    budgeted = ProviderUnavailable | ProviderAuthError
    if not isinstance(exc, retried) or (
        isinstance(exc, budgeted) and attempts >= sender.d.settings.max_attempts
    ):
        if isinstance(exc, budgeted):
            error = f"gave up after {attempts} attempts: {exc}"
        await sender.fail(work, message, error)
        return
    delay = sender.d.backoff(backoff_step)
    if exc.retry_after is not None:
        cap = sender.d.settings.max_retry_after
        delay = max(delay, to_timedelta(min(exc.retry_after, cap)))
    retry_at = now + delay
    if await validity.too_late_to_retry(
        sender, work, message, valid, retry_at, f"{exc.code}: {error}"
    ):
        return
    change = MessageChange(
        message_id=message.id,
        at=now,
        expected_status=MessageStatus.QUEUED,  # another worker's or a report's change wins
        attempts=attempts,
        last_error=error,
        next_attempt_at=retry_at,
    )
    try:
        await sender.d.store.commit(
            Commit(now=now, done=Completion(work=work, retry_at=retry_at), messages=[change])
        )
    except StaleRun:
        log.info("message %s changed while its send got ready; leaving it", message.id)
        return
    log.log(
        logging.INFO if parked else logging.WARNING,
        "message %s not sent (%s: %s); nothing left, retrying at %s",
        message.id,
        exc.code,
        error,
        retry_at.isoformat(),
    )


async def call_provider(
    sender: Sender, work: DueWork, message: Message, slot: SendSlot, outbound: OutboundMessage
) -> SendResult | None:
    """``provider.send`` under a departure watch; ``None`` when the engine is
    stopping and the send was given back to the queue before it left."""
    if sender.d.stopping:
        await send_failures.give_back(sender, work, message)
        return None
    provider, watched = slot.provider, slot.watched
    watched.still_wanted = lambda: still_wanted(sender, message.id)
    watched.started = time.monotonic()
    try:
        return await provider.send(outbound)
    except SendWithdrawn:
        pass
    except asyncio.CancelledError:
        if watched.never_left:  # cancelled before its request started
            await asyncio.shield(send_failures.give_back(sender, work, message))
        elif sender.d.stopping:
            send_failures.log_cut_off(message, provider.capabilities.idempotency_key)
        raise
    await send_failures.give_back(sender, work, message)
    return None


async def still_wanted(
    sender: Sender, message_id: str, status: MessageStatus = MessageStatus.SENDING
) -> bool:
    """After a wait: False when the message is gone (its contact was erased,
    here or by another process) or no longer ``status`` (taken over). A store
    that does not answer does not stop the send: its outcome is recorded later."""
    try:
        message = await sender.d.store.get_message(message_id)
    except StoreUnavailable:
        return True
    if message is None or message.status != status:
        log.info(
            "message %s is %s since its send began; not sending it",
            message_id,
            "gone" if message is None else message.status,
        )
        return False
    return True
