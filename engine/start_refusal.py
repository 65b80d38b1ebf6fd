"""A start refused because the contact already has an open run of a one-at-a-time
flow: recorded for `disparo why`, and answered with the run in the way."""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

from engine.errors import Conflict
from engine.models import OPEN_RUN_STATUSES, NewEvent
from storage.base import Commit, Store


async def refuse_start(
    store: Store, flow: str, contact_id: str, trigger: str, now: datetime
) -> NoReturn:
    """Record that the contact already has an open run of ``flow``, then raise a
    ``Conflict`` naming that run and the ways out of it."""
    await store.commit(
        Commit(
            now=now,
            events=[
                NewEvent(
                    kind="run.trigger_skipped",
                    at=now,
                    contact_id=contact_id,
                    data={
                        "flow": flow,
                        "trigger": trigger,
                        "reason": "contact already has an open run of this flow",
                    },
                )
            ],
        )
    )
    open_runs = [
        run.id
        for run in await store.list_contact_runs(contact_id)
        if run.flow == flow and run.status in OPEN_RUN_STATUSES
    ]
    if not open_runs:  # it finished meanwhile: a retry starts the new one
        raise Conflict(
            f"contact {contact_id} had an open run of flow {flow!r} a moment ago; "
            "retry, or set `concurrency: many` in the flow to allow several"
        )
    raise Conflict(
        f"contact {contact_id} already has an open run ({open_runs[-1]}) of flow "
        f"{flow!r}: wait for it to finish, cancel it (POST /v1/runs/{open_runs[-1]}"
        "/cancel), or set `concurrency: many` in the flow to allow several"
    )
