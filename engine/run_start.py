"""The one place a run starts: the commit that creates it and enters its first step.

``Engine.start_run`` (API, CLI bulk starts) and the triggers (cron fan-outs,
re-engagement sweeps, inbound keywords) all build their runs here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine import runner
from engine.effects import Effects, collect_effects
from engine.flow.loader import LoadedFlow
from engine.flow.model import Flow
from engine.models import Contact, NewEvent
from engine.runner import RunState, Scope
from engine.scope import RunnerScope, contact_timezone
from storage.base import Commit, NewRun


def start_commit(
    loaded: LoadedFlow,
    contact: Contact,
    *,
    now: datetime,
    default_timezone: str,
    key: str | None,
    trigger: str,
    data: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> Commit:
    """The commit that creates a run of ``loaded`` for a stored contact and enters its
    first step: the run, its first messages, due work and events, atomically. Without
    an idempotency ``key`` the run gets one of its own (``auto:<run id>``)."""
    flow = loaded.flow
    run_id = str(uuid.uuid4())
    tz = contact_timezone(contact, flow, default_timezone)
    run_vars = start_vars(context)
    scope = RunnerScope(
        contact=contact, run_id=run_id, flow=flow, run_vars=run_vars, now=now, timezone=tz
    )
    started = started_event(
        run_id,
        contact.id,
        flow.flow,
        loaded.version,
        at=now,
        data={"trigger": trigger, **(data or {})},
    )
    state, fx = first_step(
        flow, scope, now, run_id=run_id, contact_id=contact.id, started=started, run_vars=run_vars
    )
    return Commit(
        now=now,
        new_run=NewRun(
            id=run_id,
            flow=flow.flow,
            flow_version=loaded.version,
            contact_id=contact.id,
            step=state.step,
            status=state.status,
            step_seq=state.step_seq,
            vars=state.vars,
            idempotency_key=key or f"auto:{run_id}",
            exclusive=flow.concurrency == "one",
        ),
        contact=fx.contact_change(contact.id),
        new_messages=fx.new_messages,
        new_due=fx.new_due,
        events=fx.events,
    )


def started_event(
    run_id: str, contact_id: str, flow: str, version: str, *, at: datetime, data: Mapping[str, Any]
) -> NewEvent:
    """A run's ``run.started`` event: its flow, the version it is pinned to, and ``data``
    (the trigger and what the trigger saw)."""
    return NewEvent(
        kind="run.started",
        at=at,
        contact_id=contact_id,
        run_id=run_id,
        data={"flow": flow, "version": version, **data},
    )


START_CONTEXT = "context"  # a bulk start's data key for the run's own context


def start_vars(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """A new run's vars: the context it is started with, its own (``runner.RUN_CONTEXT``)."""
    return {runner.RUN_CONTEXT: dict(context)} if context else {}


def first_step(
    flow: Flow,
    scope: Scope,
    now: datetime,
    *,
    run_id: str,
    contact_id: str,
    started: NewEvent,
    run_vars: Mapping[str, Any] | None = None,
) -> tuple[RunState, Effects]:
    """Walk ``flow`` from its start for a new run until it waits or ends: the run's
    state then, and what the walk writes (``started`` first)."""
    transition = runner.start(flow, scope, now, run_vars)
    fx = collect_effects(
        transition,
        flow=flow,
        run_id=run_id,
        contact_id=contact_id,
        now=now,
        into=Effects(events=[started]),
    )
    return transition.state, fx
