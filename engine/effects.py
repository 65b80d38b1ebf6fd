"""Turns a runner ``Transition`` into the parts of one atomic store ``Commit``.

This is the transactional outbox: the run's new state, the messages it must send,
its timers and its audit events are written together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.flow.model import Flow
from engine.models import (
    OPEN_RUN_STATUSES,
    Attendance,
    DueKind,
    NewDueWork,
    NewEvent,
    Run,
    RunStatus,
)
from engine.runner import (
    CancelTimers,
    EnterStep,
    Finish,
    PatchContext,
    RunState,
    Send,
    StartAttendance,
    StartTimer,
    Transition,
)
from storage.base import Commit, Completion, ContactChange, MessageChange, NewMessage, RunChange


def merge_patch(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into ``base`` (nested mappings merge, other values replace)."""
    for key, value in patch.items():
        current = base.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            merge_patch(current, value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
    return base


@dataclass(kw_only=True)
class Effects:
    """The commit parts a transition asks for."""

    new_messages: list[NewMessage] = field(default_factory=list)
    new_due: list[NewDueWork] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    context_patch: dict[str, Any] = field(default_factory=dict)
    attendance: Attendance | None = None
    cancel_timers: bool = False
    cancel_all: bool = False
    finished: Finish | None = None

    def contact_change(self, contact_id: str) -> ContactChange | None:
        if not self.context_patch and self.attendance is None:
            return None
        return ContactChange(
            contact_id=contact_id,
            context_patch=self.context_patch or None,
            attendance=self.attendance,
        )


def message_key(run_id: str, step: str, step_seq: int) -> str:
    """The idempotency key of a step's message: stable across retries and restarts."""
    return f"{run_id}:{step}:{step_seq}"


def collect_effects(
    transition: Transition,
    *,
    flow: Flow,
    run_id: str,
    contact_id: str,
    now: datetime,
    into: Effects | None = None,
) -> Effects:
    """Translate the actions of ``transition`` (in order) into commit parts."""
    fx = into or Effects()
    for action in transition.actions:
        if isinstance(action, EnterStep):
            fx.events.append(
                NewEvent(
                    kind="run.step",
                    at=now,
                    contact_id=contact_id,
                    run_id=run_id,
                    data={"step": action.step, "step_seq": action.step_seq},
                )
            )
        elif isinstance(action, Send):
            message_id = str(uuid.uuid4())
            fx.new_messages.append(
                NewMessage(
                    id=message_id,
                    run_id=run_id,
                    contact_id=contact_id,
                    flow=flow.flow,
                    step=action.step,
                    step_seq=action.step_seq,
                    provider=flow.provider_for(action.step) or "",
                    channel=flow.channel_for(action.step),  # type: ignore[arg-type]
                    idempotency_key=message_key(run_id, action.step, action.step_seq),
                )
            )
            fx.new_due.append(
                NewDueWork(kind=DueKind.DISPATCH, due_at=now, run_id=run_id, message_id=message_id)
            )
        elif isinstance(action, StartTimer):
            fx.new_due.append(
                NewDueWork(
                    kind=DueKind.TIMER,
                    due_at=action.due_at,
                    run_id=run_id,
                    payload={
                        "step": action.step,
                        "step_seq": action.step_seq,
                        "reason": action.reason,
                    },
                )
            )
        elif isinstance(action, CancelTimers):
            fx.cancel_timers = True
            # A timer started earlier in this commit belongs to a step just left too.
            fx.new_due = [due for due in fx.new_due if due.kind != DueKind.TIMER]
        elif isinstance(action, PatchContext):
            merge_patch(fx.context_patch, action.patch)
        elif isinstance(action, StartAttendance):
            fx.attendance = Attendance(attendant=action.attendant, since=now, until=action.until)
        elif isinstance(action, Finish):
            fx.finished = action
            fx.cancel_all = True
            fx.events.append(
                NewEvent(
                    kind="run.finished",
                    at=now,
                    contact_id=contact_id,
                    run_id=run_id,
                    data={"status": str(action.status), "reason": action.reason},
                )
            )
    if transition.ignored:
        fx.events.append(
            NewEvent(
                kind="run.event_ignored",
                at=now,
                contact_id=contact_id,
                run_id=run_id,
                data={"reason": transition.reason},
            )
        )
    return fx


def is_open(state: RunState) -> bool:
    return state.status in OPEN_RUN_STATUSES


def state_change(run: Run, state: RunState, *, always: bool = False) -> RunChange | None:
    """``state`` as a change of ``run`` checked against the version read; None when
    nothing moved, unless ``always`` (the change then guards the commit by itself)."""
    moved = (state.step, state.status, state.step_seq, dict(state.vars)) != (
        run.step,
        run.status,
        run.step_seq,
        dict(run.vars),
    )
    if not moved and not always:
        return None
    return RunChange(
        run_id=run.id,
        expected_version=run.version,
        step=state.step,
        status=state.status,
        step_seq=state.step_seq,
        vars=state.vars,
    )


def run_commit(
    fx: Effects,
    *,
    run_id: str,
    now: datetime,
    done: Completion | None,
    run: RunChange | None,
    contact: ContactChange | None,
    messages: Sequence[MessageChange] = (),
) -> Commit:
    """The one commit of an existing run's transition: its state, what ``fx`` collected
    and the message changes that caused it, completing ``done``'s due work."""
    return Commit(
        now=now,
        done=done,
        run=run,
        contact=contact,
        messages=messages,
        new_messages=fx.new_messages,
        new_due=fx.new_due,
        cancel_timers_of_run=run_id if fx.cancel_timers else None,
        cancel_all_due_of_run=run_id if fx.cancel_all else None,
        events=fx.events,
    )


__all__ = [
    "Effects",
    "RunStatus",
    "collect_effects",
    "is_open",
    "merge_patch",
    "message_key",
    "run_commit",
    "state_change",
]
