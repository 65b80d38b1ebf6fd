"""The messages a run leaves behind when it ends: a queued one never goes out.

A run may end while one of its messages still waits to go (held by quiet hours
or a deferral, or queued behind a provider's outage): an operator cancels it, the
contact opts out, or a reply takes the run to its end. Its send is dropped with
the run's due work, so the message would read ``queued`` for ever, as if still
on its way. Once the run has ended, each such message is ``skipped`` with the
reason and a ``message.skipped`` event. The change expects ``queued``: a message a
worker has just taken (``sending``) goes on as the dispatcher decides.
"""

from __future__ import annotations

from datetime import datetime

from engine.errors import StaleRun
from engine.left_step import skipping
from engine.models import OPEN_RUN_STATUSES, MessageStatus, Run
from storage.base import Commit, Store


async def skip_queued(store: Store, run: Run, now: datetime) -> int:
    """Skip the ``queued`` messages of the ended ``run``; how many were skipped."""
    assert run.status not in OPEN_RUN_STATUSES  # the callers pass an ended run
    reason = f"the run ended {run.status} before its message went out"
    skipped = 0
    for message in await store.list_queued_run_messages(run.id):
        try:
            skip = skipping(message, now, reason, expected=MessageStatus.QUEUED)
            await store.commit(Commit(now=now, messages=[skip.change], events=[skip.event]))
        except StaleRun:
            continue  # a worker took it meanwhile: it is no longer queued
        skipped += 1
    return skipped
