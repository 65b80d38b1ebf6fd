"""A timer gives way to the answers that came before it.

A step's timeout and a reply (or a status report) that came a moment before the
deadline can be claimed by two processes in the same pass. Whichever commits first
moves the run, so without this the timeout could win over a reply the contact sent in
time, and they would get the "no answer" follow-up. A timer that finds such an answer
still queued for its run puts itself back for one poll; the answer moves the run
(dropping the timer) or is ignored, and then the timer fires. The deadline it was set
for travels in its payload, so an answer that came after the deadline never delays it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.models import DueWork
from storage.base import Commit, Completion, Store

DEADLINE_KEY = "deadline"


def deadline_of(work: DueWork) -> datetime:
    """When the timer was due first (before any postponement)."""
    first = work.payload.get(DEADLINE_KEY)
    return datetime.fromisoformat(first) if isinstance(first, str) else work.due_at


async def gave_way(store: Store, work: DueWork, *, now: datetime, poll: timedelta) -> bool:
    """Put ``work`` back for one ``poll`` when an answer for its run that came before
    its deadline still waits to be handled; ``True`` when it did (nothing else to do)."""
    if work.run_id is None:
        return False
    deadline = deadline_of(work)
    if not await store.answers_queued_before(work.run_id, deadline):
        return False
    payload = {**work.payload, DEADLINE_KEY: deadline.isoformat()}
    await store.commit(
        Commit(now=now, done=Completion(work=work, retry_at=now + poll, payload=payload))
    )
    return True
