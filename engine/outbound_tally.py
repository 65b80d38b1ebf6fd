"""The sends of each contact that are on their way, in this process.

``max_per_day`` and ``recent_contact`` count what the store says has left. A send
between its ``sending`` commit and its outcome has not left yet, so two sends to one
contact that come due together (everything quiet hours deferred to 08:00, a 09:00
campaign, the cap's own midnight) used to count each other as nothing, and both
went. The sender now decides one send of a contact at a time (``deciding``) and
counts the sends of that contact on their way as sent.

Processes do not see each other's sends on their way: several engines on one
PostgreSQL database can still let two such sends of one contact through together.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from engine.keyed_locks import KeyedLocks


class OutboundTally:
    def __init__(self) -> None:
        self._locks = KeyedLocks()
        self._on_the_way: dict[str, dict[str, str]] = {}  # contact -> message -> run

    def deciding(self, contact_id: str) -> AbstractAsyncContextManager[None]:
        """Held from the rules' counts to the ``sending`` commit of one send."""
        return self._locks.hold(contact_id)

    def leaving(self, contact_id: str, message_id: str, run_id: str) -> None:
        self._on_the_way.setdefault(contact_id, {})[message_id] = run_id

    def left(self, contact_id: str, message_id: str) -> None:
        """The send has an outcome (sent, failed, given back): the store counts it now."""
        sends = self._on_the_way.get(contact_id)
        if sends is not None:
            sends.pop(message_id, None)
            if not sends:
                del self._on_the_way[contact_id]

    def count(self, contact_id: str) -> int:
        return len(self._on_the_way.get(contact_id, ()))

    def from_other_runs(self, contact_id: str, run_id: str) -> bool:
        return any(run != run_id for run in self._on_the_way.get(contact_id, {}).values())
