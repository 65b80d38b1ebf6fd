"""What ``max_per_day`` and ``recent_contact`` count for one send, and the guard that
checks it again when the send becomes ``sending``.

The store counts a send from its ``sending`` commit, so sends of one contact on
their way, in this engine or in another one sharing the store, count as sent. This
engine decides one send of a contact at a time (``Dispatcher.deciding``); across
engines the ``sending`` commit carries an ``OutboundGuard``, which the store checks
under a lock of the contact: two engines that counted at the same moment cannot
both commit, and the one refused decides again with the other's send counted.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, tzinfo

from engine.flow.model import Flow, Rules, to_timedelta
from engine.keyed_locks import KeyedLocks
from engine.models import Contact, Message, Run
from storage.base import OutboundGuard, Store


@dataclass(frozen=True, slots=True)
class OutboundCounts:
    sent_today: int
    last_outbound_at: datetime | None
    guard: OutboundGuard | None  # None when neither rule is set


async def count_outbound(
    store: Store,
    rules: Rules,
    contact: Contact,
    message: Message,
    run: Run,
    now: datetime,
    tz: tzinfo,
) -> OutboundCounts:
    if rules.max_per_day is None and rules.recent_contact is None:
        return OutboundCounts(0, None, None)
    sent_today = 0
    day_start = None
    if rules.max_per_day is not None:
        # fold=0: a first hour the clocks repeat (Havana, fall back 01:00 -> 00:00) is
        # counted from its first pass, even when ``now`` is in the second one.
        local = now.astimezone(tz)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
        sent_today = await store.count_outbound(contact.id, day_start)
    last_outbound_at = None
    recent_since = None
    if rules.recent_contact is not None:
        recent_since = now - to_timedelta(rules.recent_contact)
        stored = await store.last_outbound_at(contact.id, exclude_run=message.run_id)
        # What the contact holds from before this run began is another's outbound
        # too (the simulator's contact file writes only that).
        before = contact.last_outbound_at
        earlier = before if before is not None and before < run.created_at else None
        last_outbound_at = max((t for t in (stored, earlier) if t is not None), default=None)
    guard = OutboundGuard(
        contact_id=contact.id,
        message_id=message.id,
        run_id=message.run_id,
        day_start=day_start,
        max_per_day=rules.max_per_day,
        recent_since=recent_since,
    )
    return OutboundCounts(sent_today, last_outbound_at, guard)


def deciding(
    locks: KeyedLocks, flow: Flow, message: Message, contact: Contact
) -> AbstractAsyncContextManager[object]:
    """One send of a contact decided at a time where the step counts the contact's
    sends; other sends of the contact need not wait (this one may wait for its
    provider's slot, and they may go through another provider meanwhile)."""
    rules = flow.rules_for(message.step)
    if rules.max_per_day is None and rules.recent_contact is None:
        return contextlib.nullcontext()
    return locks.hold(contact.id)
