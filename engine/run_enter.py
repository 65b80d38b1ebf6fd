"""Entering a run's first step when the dispatcher claims its START row.

Bulk starts (``Store.start_runs``: sweeps, cron fan-outs, inbound keywords) write
a run that has not entered a step yet (status ``active``, no step) and a START
due-work row whose payload is the data of the run's ``run.started`` event (flow,
version, trigger and what the trigger saw). Claiming that row writes that event,
dated when the run was created, and runs
``runner.start`` for the run, exactly what ``engine.run_start.start_commit`` does
for a single start, and commits the entry (the run's new state, its first
messages, due work and events) in one commit that
completes the START row under its fence: a stale worker writes nothing, a crash
before the commit leaves the row to be claimed again, and the run's version
guards against a concurrent change (a cancel): the entry is then re-decided.

A run that already entered a step, finished or was cancelled before its START
row came due has nothing to enter: the row is completed and nothing else written.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.effects import run_commit, state_change
from engine.errors import StaleRun
from engine.models import OPEN_RUN_STATUSES, DueWork, Run
from engine.run_start import START_CONTEXT, first_step, start_vars, started_event
from engine.scope import RunnerScope, contact_timezone
from storage.base import Commit, Completion

if TYPE_CHECKING:
    from engine.dispatcher import Dispatcher

log = logging.getLogger("disparo.dispatcher")

MAX_TRIES = 8


def needs_entry(run: Run | None) -> bool:
    """Whether a START row has a step to enter: its run is open and in no step yet."""
    return run is not None and run.step is None and run.status in OPEN_RUN_STATUSES


async def enter_run(dispatcher: Dispatcher, work: DueWork) -> None:
    """Handle a claimed START row: enter its run's first step, or just complete it."""
    store, clock = dispatcher.store, dispatcher.clock
    if work.run_id is None:
        raise ValueError(f"START due work {work.id} names no run")
    async with dispatcher.locks.hold(work.run_id):
        for _ in range(MAX_TRIES):
            run = await store.get_run(work.run_id)
            if run is None or not needs_entry(run):
                await store.commit(Commit(now=clock.now(), done=Completion(work=work)))
                return
            commit = await _entry_commit(dispatcher, run, work)
            try:
                result = await store.commit(commit)
            except StaleRun:
                continue  # the run changed (e.g. cancelled) between reading and committing
            if commit.new_due:
                dispatcher.notify()
            status = result.run.status if result.run is not None else None
            if status is not None and status not in OPEN_RUN_STATUSES:
                dispatcher.metrics.child(dispatcher.metrics.runs, run.flow, str(status)).inc()
                log.info("run %s of %s finished %s on entry", run.id, run.flow, status)
            return
    raise StaleRun(f"run {work.run_id} kept changing while entering its first step; will retry")


async def _entry_commit(dispatcher: Dispatcher, run: Run, work: DueWork) -> Commit:
    now = dispatcher.clock.now()
    contact = await dispatcher.store.get_contact(run.contact_id)
    if contact is None:
        raise ValueError(f"run {run.id} belongs to contact {run.contact_id}, which is not stored")
    loaded = await dispatcher.catalog.pinned(run.flow, run.flow_version)
    flow = loaded.flow
    zone = contact_timezone(contact, flow, dispatcher.settings.default_timezone)
    # A CSV row's context is the run's own (``runner.RUN_CONTEXT``), as a POST /v1/runs
    # context is: the START row carries it with the rest of the event's data.
    run_vars = {**run.vars, **start_vars(work.payload.get(START_CONTEXT))}
    scope = RunnerScope(
        contact=contact, run_id=run.id, flow=flow, run_vars=run_vars, now=now, timezone=zone
    )
    # The START row carries the event's data; the event is dated at the run's creation.
    started = started_event(
        run.id, run.contact_id, run.flow, run.flow_version, at=run.created_at, data=work.payload
    )
    state, fx = first_step(
        flow, scope, now, run_id=run.id, contact_id=contact.id, started=started, run_vars=run_vars
    )
    return run_commit(
        fx,
        run_id=run.id,
        now=now,
        done=Completion(work=work),
        run=state_change(run, state, always=True),
        contact=fx.contact_change(contact.id),
    )
