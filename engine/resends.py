"""A resend of a message found ``sending`` (a worker died or was cut off with its
request out) to a provider that honours idempotency keys: the same key again, counted.

The attempt is written before the request leaves, as a fresh send's is with its
``sending`` commit: a resend cut off again (another crash, a shutdown) still counts,
so ``max_attempts`` caps resends however they end. At the cap the message is
``ambiguous``, for an operator, instead of being resent for ever.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine import send_failures
from engine.errors import StaleRun
from engine.models import DueWork, Message, MessageStatus
from storage.base import Commit, MessageChange

if TYPE_CHECKING:
    from engine.sending import Sender

log = logging.getLogger("disparo.sending")


async def count_resend(sender: Sender, work: DueWork, message: Message) -> int | None:
    """The attempt number of this resend, written; None when it must not go (the cap
    is reached: the message is now ambiguous; or a report moved it meanwhile)."""
    if message.attempts >= sender.d.settings.max_attempts:
        await send_failures.ambiguous(
            sender,
            work,
            message,
            f"no usable answer after {message.attempts} attempts; not resending again",
        )
        return None
    attempts = message.attempts + 1
    try:
        change = MessageChange(
            message_id=message.id,
            at=sender.now,
            attempts=attempts,
            expected_status=MessageStatus.SENDING,
        )
        await sender.d.store.commit(Commit(now=sender.now, messages=[change]))
    except StaleRun:  # a provider report settled it meanwhile: nothing to resend
        await sender.complete(work)
        return None
    log.info(
        "resending message %s via %s with its idempotency key (attempt %d of %d): an "
        "earlier attempt may have reached the provider (its process stopped, or the "
        "answer was lost)",
        message.id,
        message.provider,
        attempts,
        sender.d.settings.max_attempts,
    )
    return attempts
