"""Whether a run ignores a status report, so the store may apply it as it comes in.

Most reports change nothing but the message: ``delivered`` while the run waits
for ``read``, any report once the run has finished. The dispatcher would read
the message, the run and the contact, find that the run ignores the events,
and write the status alone; asking here lets the store do that in the webhook's
own write (``Store.ingest_status_reports``'s ``run_ignores``), with no STATUS work.

The answer is the state machine's own: each run event the report implies goes
through ``runner.handle``, and the report counts as ignored only if every one
of them is; the ``run.event_ignored`` events the dispatcher would have written
are returned, to be written with the status. A route that would walk the flow
needs the run's scope (contact, context); this scope refuses, which answers
"not ignored".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine import runner
from engine.effects import Effects, collect_effects
from engine.flow.model import Flow
from engine.models import REPORTED_STATUSES, NewEvent
from engine.step_events import status_step_events
from storage.base import StatusTarget


class _WouldWalk(Exception):
    """The event moves the run: it is not ignored."""


class _NoScope:
    """The scope of a run ``run_ignores`` never walks."""

    def test(self, expression: str, *, step: str, context_patch: Mapping[str, Any]) -> bool:
        raise _WouldWalk

    def value(self, value: Any, *, step: str, context_patch: Mapping[str, Any]) -> Any:
        raise _WouldWalk


_NO_SCOPE = _NoScope()


def ignored_events(flow: Flow, target: StatusTarget, now: datetime) -> list[NewEvent] | None:
    """The run's record of ignoring ``target``'s report (``flow``: the run's), or None
    when the report moves the run."""
    if target.status not in REPORTED_STATUSES:
        return None
    run = target.run
    state = runner.RunState(step=run.step, status=run.status, step_seq=run.step_seq, vars=run.vars)
    events = status_step_events(
        target.message_id, target.message_step_seq, target.message_status, target.status
    )
    fx = Effects()
    for event in events:
        try:
            transition = runner.handle(flow, state, event, _NO_SCOPE, now)
        except _WouldWalk:
            return None
        if not transition.ignored:
            return None
        collect_effects(
            transition, flow=flow, run_id=run.id, contact_id=run.contact_id, now=now, into=fx
        )
    return fx.events
