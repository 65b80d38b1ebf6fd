"""Cancelling a run from outside (the API, an operator): the run ends ``cancelled``
and every piece of its due work (timers, queued sends) goes with it, atomically.

The run may be moving at the same moment (a status report, a reply, a timer): the
cancel commits against the version it read, and a run that moved since is read
again and cancelled then, unless it finished meanwhile.
"""

from __future__ import annotations

from datetime import datetime

from engine.closed_runs import skip_queued
from engine.errors import Conflict, NotFound, StaleRun
from engine.models import OPEN_RUN_STATUSES, NewEvent, Run, RunStatus
from engine.wording import counted
from storage.base import Commit, RunChange, Store

# A run that moves this many times while one cancel is being written is moving far
# faster than any flow should; the caller gets the StaleRun and may retry.
MAX_TRIES = 8


async def cancel_run(store: Store, run_id: str, *, reason: str, now: datetime) -> Run:
    """Cancel ``run_id``: ``NotFound`` for an unknown run, ``Conflict`` for one that
    already finished (before or during the cancel)."""
    for attempt in range(1, MAX_TRIES + 1):
        run = await store.get_run(run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        if run.status not in OPEN_RUN_STATUSES:
            raise Conflict(f"run {run_id} is already {run.status}")
        try:
            result = await store.commit(_cancel_commit(run, reason, now))
        except StaleRun:
            if attempt == MAX_TRIES:
                raise
            continue  # it moved on between the read and the commit: read it again
        assert result.run is not None
        await skip_queued(store, result.run, now)
        return result.run
    raise AssertionError("unreachable")  # the loop returns or raises


async def cancel_contact_runs(
    store: Store, contact_id: str, *, flow: str | None, reason: str, now: datetime
) -> list[Run]:
    """Cancel every open run of the contact (of ``flow`` only, when given), each in
    its own transaction; the runs cancelled, oldest first. A run that finishes while
    this goes on is left as it finished."""
    cancelled = []
    for run in await store.list_contact_runs(contact_id):
        if run.status not in OPEN_RUN_STATUSES or (flow is not None and run.flow != flow):
            continue
        try:
            cancelled.append(await cancel_run(store, run.id, reason=reason, now=now))
        except Conflict:
            continue  # it finished on its own meanwhile
        except StaleRun as exc:
            if cancelled:  # those stay cancelled: the answer must not say nothing changed
                ids = ", ".join(r.id for r in cancelled)
                were = "was" if len(cancelled) == 1 else "were"
                exc.outcome = (
                    f"{counted(len(cancelled), 'run')} of the contact ({ids}) {were} "
                    "cancelled before it; retry to cancel the rest"
                )
            raise
    return cancelled


def _cancel_commit(run: Run, reason: str, now: datetime) -> Commit:
    return Commit(
        now=now,
        run=RunChange(
            run_id=run.id,
            expected_version=run.version,
            step=run.step,
            status=RunStatus.CANCELLED,
            step_seq=run.step_seq,
            vars=run.vars,
        ),
        cancel_all_due_of_run=run.id,
        events=[
            NewEvent(
                kind="run.finished",
                at=now,
                contact_id=run.contact_id,
                run_id=run.id,
                data={"status": "cancelled", "reason": reason},
            )
        ],
    )
