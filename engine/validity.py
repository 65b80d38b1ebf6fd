"""How long a message stays worth sending: the ``valid_for`` rule.

A boleto reminder due this morning is worthless tomorrow. Without ``valid_for`` a
message waits as long as it must: a provider down for a day, a quiet-hours
deferral, a rate limit backlog; it then goes out late. With ``valid_for: 2h`` (in
``defaults.rules`` or a step's ``rules``) a message not sent within 2 h of its step
beginning fails with the reason ``expired``, and its step routes ``failed`` (an SMS
fallback, say) at once, not at the end of the wait.

It fails as soon as the engine knows it will be late: when it is claimed past its
deadline, and when a deferral, a retry or a paused provider would next try it at or
after the deadline. A message that may already have reached a provider (a resend
with the same idempotency key) is never failed by it: the contact may have it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from engine.flow.durations import format_duration
from engine.flow.model import Flow, to_timedelta
from engine.models import Contact, DueWork, Message, NewEvent
from engine.scope import contact_timezone

if TYPE_CHECKING:
    from engine.sending import Sender

REASON = "expired"


@dataclass(frozen=True, slots=True)
class Validity:
    """A message's deadline: ``until`` is ``valid_for`` after it was created."""

    until: datetime
    length: str  # valid_for as written back, e.g. "2h"
    tz: tzinfo = UTC  # the contact's: the times it names read as the rest of its story

    def at(self, when: datetime) -> str:
        """``when`` as the error writes it: local to the contact, to the second."""
        return when.astimezone(self.tz).isoformat(timespec="seconds")

    def late(self, at: datetime) -> bool:
        """Whether a try at ``at`` would come too late."""
        return at >= self.until

    def error(self, why: str) -> str:
        """The message's ``last_error`` (and ``disparo why``'s line) when it expires."""
        return (
            f"{REASON}: not sent within valid_for {self.length} "
            f"(until {self.at(self.until)}); {why}"
        )


def of(
    flow: Flow, message: Message, contact: Contact | None, default_timezone: str
) -> Validity | None:
    """``message``'s validity under its pinned ``flow``, its times told in the
    ``contact``'s zone; ``None`` without ``valid_for`` (the zone is not looked up)."""
    valid_for = flow.rules_for(message.step).valid_for
    if valid_for is None:
        return None
    tz = UTC if contact is None else contact_timezone(contact, flow, default_timezone)
    length = to_timedelta(valid_for)
    return Validity(until=message.created_at + length, length=format_duration(length), tz=tz)


def waited(message: Message) -> str:
    """Why a message claimed past its deadline is still unsent, as far as it says."""
    if message.last_error:
        return f"it waited in the queue (last: {message.last_error})"
    return "it waited in the queue"


async def too_late_to_retry(
    sender: Sender,
    work: DueWork,
    message: Message,
    valid: Validity | None,
    retry_at: datetime,
    what: str,
) -> bool:
    """Expire ``message`` now, and say so, when its next try at ``retry_at`` would come
    too late; ``what``: why it is to be tried again."""
    if valid is None or not valid.late(retry_at):
        return False
    why = f"{what}; the next try would be at {valid.at(retry_at)}"
    await expire(sender, work, message, valid, why)
    return True


async def expire(
    sender: Sender,
    work: DueWork,
    message: Message,
    valid: Validity,
    why: str,
    extra_events: Sequence[NewEvent] = (),
) -> None:
    """Fail ``message`` as expired (its step routes ``failed``), counted per provider."""
    sender.d.metrics.child(sender.d.metrics.expired, message.provider).inc()
    await sender.fail(work, message, valid.error(why), extra_events=list(extra_events))
