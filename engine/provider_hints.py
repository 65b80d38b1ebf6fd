"""Flow facts a vendor can enforce as a second guard behind disparo's rules.

Robbu's ``discardSettings`` and Altu's ``inactivityTime`` repeat a step's rules on
the vendor's side, where the contact's messages from outside disparo (an agent's,
another system's) are seen too. Each message gets its own copy of its step's hints.

A vendor's recent-contact guard counts every message to the contact, the run's own
included; disparo's ``recent_contact`` leaves the run's own follow-ups out
(``Store.last_outbound_at(exclude_run=...)``). So a follow-up of a run that has
already reached the contact (the SMS sent when the WhatsApp message was not read in
2 h) goes without the vendor's guard: with it, Robbu would discard the follow-up the
flow asked for because of the run's own first message.
"""

from __future__ import annotations

from typing import Any

from engine.flow.model import Flow, InactivityRule, Rules, to_timedelta
from engine.models import HANDED_OVER_STATUSES, Message
from storage.base import Store

_CACHE_SIZE = 1024


def provider_hints(rules: Rules, flow: Flow, step: str) -> dict[str, Any]:
    """The step's hints: ``recent_contact_hours``, ``in_attendance``,
    ``inactivity_minutes`` and the ``attendant`` of a handoff that follows."""
    hints: dict[str, Any] = {}
    if rules.recent_contact is not None:
        hints["recent_contact_hours"] = to_timedelta(rules.recent_contact).total_seconds() / 3600
    if rules.in_attendance is not None:
        hints["in_attendance"] = rules.in_attendance
    if rules.inactivity is not None:
        value = (
            rules.inactivity.for_
            if isinstance(rules.inactivity, InactivityRule)
            else rules.inactivity
        )
        hints["inactivity_minutes"] = to_timedelta(value).total_seconds() / 60
    following = flow.steps[step].next
    handoff = flow.steps[following].handoff if following in flow.steps else None
    if handoff is not None and handoff.attendant:
        hints["attendant"] = handoff.attendant  # Robbu assigns the contact on send
    return hints


class ProviderHints:
    """``provider_hints`` by (flow, pinned version, step), adjusted per message."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], dict[str, Any]] = {}

    def of_step(self, flow: Flow, version: str, step: str) -> dict[str, Any]:
        key = (flow.flow, version, step)  # a pinned flow version never changes
        hints = self._cache.get(key)
        if hints is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            hints = self._cache[key] = provider_hints(flow.rules_for(step), flow, step)
        return dict(hints)  # each message gets its own copy

    async def of_message(
        self, store: Store, flow: Flow, version: str, message: Message
    ) -> dict[str, Any]:
        """The step's hints, without the recent-contact guard for a run's follow-up."""
        hints = self.of_step(flow, version, message.step)
        if "recent_contact_hours" in hints and await reached_before(store, message):
            del hints["recent_contact_hours"]
        return hints


async def reached_before(store: Store, message: Message) -> bool:
    """Whether another message of ``message``'s run reached (or may have reached) the contact."""
    return await store.run_has_message_in(message.run_id, HANDED_OVER_STATUSES, besides=message.id)
