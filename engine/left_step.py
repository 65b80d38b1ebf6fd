"""A queued message whose run has left its step is not sent.

A send step's message may wait before it goes: quiet hours, ``inactivity``,
``max_per_day`` or an attendance defer it, a provider's outage retries it. Meanwhile
the contact may answer (``on: reply``) and the run moves on, maybe to a step that
sends its own message. The held one would then arrive after the conversation left
it ("Seu boleto vence amanhã" after "Obrigado pela resposta!"), so when its turn
comes it is skipped, naming the step the run is at. Its step no longer routes
anything: the run is elsewhere. A ``sending`` message is not withdrawn: its request
may have reached the provider already, and it goes on with the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.models import OPEN_RUN_STATUSES, Message, MessageStatus, NewEvent, Run
from engine.send_content import message_event
from storage.base import MessageChange


@dataclass(frozen=True, slots=True)
class Withdrawn:
    change: MessageChange
    event: NewEvent


def withdrawn(message: Message, run: Run, now: datetime) -> Withdrawn | None:
    """The skip of ``message`` when its open ``run`` has left the step entry it was
    queued for, else None."""
    if (
        message.status != MessageStatus.QUEUED
        or run.status not in OPEN_RUN_STATUSES
        or run.step_seq == message.step_seq
    ):
        return None
    reason = (
        f"the run left step `{message.step}` before its message went out (it is at `{run.step}`)"
    )
    return skipping(message, now, reason)


def skipping(
    message: Message, now: datetime, reason: str, *, expected: MessageStatus | None = None
) -> Withdrawn:
    """``message`` skipped for ``reason``: its change (made only from ``expected``,
    when given) and its ``message.skipped`` event."""
    return Withdrawn(
        change=MessageChange(
            message_id=message.id,
            at=now,
            status=MessageStatus.SKIPPED,
            last_error=reason,
            expected_status=expected,
        ),
        event=message_event(
            message, "message.skipped", now, {"step": message.step, "reason": reason}
        ),
    )
