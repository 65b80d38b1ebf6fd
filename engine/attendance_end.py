"""When an agent ends an attendance, the sends it held back are decided again now.

``in_attendance: defer`` holds a message until the end the attendance planned
(a handoff's ``until``, an ``attendance_started`` with ``until``), which may be days
away, while agents usually close a conversation much sooner. The
``attendance_ended`` event reaches each open run of the contact (INBOUND work);
the run's sends due later are then made due now (``Store.bring_sends_forward``:
the same rows, so a message never has two sends). Their rules decide again: a
message still held by another rule (quiet hours) is deferred to that rule's time.
"""

from __future__ import annotations

from datetime import datetime

from storage.base import Store


async def wake_held_sends(store: Store, run_id: str, now: datetime) -> int:
    """Make the held sends of ``run_id`` due ``now``; how many."""
    return await store.bring_sends_forward(run_id, now)
