"""The run state machine: a run's state and one event in, a new state and actions out.

Pure: no I/O and no clock reads (``now`` is an argument); expressions and values
are evaluated through the caller's ``Scope``. Transitions never raise for problems
in the flow or the event: they finish the run, or ignore the event, with a reason.

Entering a step emits ``EnterStep`` and bumps ``step_seq``. Steps that do not wait
(``branch``, ``set``, ``handoff``, ``end``) chain within one transition; a run that
walks ``MAX_STEPS_PER_TRANSITION`` steps without waiting fails (the validator
rejects such cycles; this is defence in depth). What each step does on entry:

- ``send``: ``Send``; the run waits for the message's events (``WAITING``).
- ``wait: 1h``: ``StartTimer(reason="wait")``; its ``timeout`` goes to
  ``on.timeout``, else ``next``. ``on:`` entries (e.g. ``reply``) cut the wait short.
- ``wait: {for, up_to}``: ``StartTimer(reason="timeout")`` at ``up_to`` (else at
  ``timeout.after``; none when neither is set). The awaited event (``reply``, also
  ``button.*``/``choice.*``; ``read``; ``delivered``, also ``read``; ``event``: any
  event) goes to its ``on:`` entry, else ``next``; the timer goes to ``on.timeout``,
  else ``timeout.goto``, else ``next``. ``read``/``delivered`` of an *earlier* step
  entry count too: they are about the message sent before the wait (and one that
  message already had when the wait was entered is fed by ``engine.wait_statuses``).
- ``branch``: the first case whose ``when`` is true, or the first ``else``; when
  none matches, ``next``, else the run fails (``no branch of step ... matched``).
- ``set``: ``PatchContext`` with each value rendered by ``Scope.value`` (keys must
  start with ``context.``: ``context.a.b: 1`` -> ``{"a": {"b": 1}}``; mapping values
  merge into what is stored). Later values and ``when:`` tests in the same
  transition see the patch through ``context_patch``. Then ``next``.
- ``handoff``: ``StartAttendance(attendant, until=now + until)``, then ``next``.
- ``end``: ``Finish`` with its status; ``state.step`` stays at the end step.

A ``set``, ``handoff``, ``wait`` or send fallback that needs ``next`` and has none
completes the run: falling off the end of a flow is a normal ending.

Events of a ``send`` step (``on:`` first; ``button.<id>``/``choice.<id>`` with no
exact entry fall back to ``on.reply``; a tap on another run's message never reaches
this run, ``engine.answer_owner``):

- ``sent``: ``on.sent`` moves; otherwise ``timeout:`` starts its timer *now*, when
  the message left (a send deferred by quiet hours cannot time out before it is
  sent); otherwise a step with ``next`` and no ``on:`` moves to ``next``; a step
  with none of ``on``/``timeout``/``next`` completes the run.
- ``timeout``: ``timeout.goto``, else ``on.timeout``.
- ``failed`` / ``skipped`` without an ``on:`` entry: ``next``; without ``next``
  ``failed`` fails the run and ``skipped`` completes it.
- anything else without an ``on:`` entry is ignored.

Leaving a waiting step emits ``CancelTimers`` before anything else (so a store
applying actions in order drops the old timers before the next step's). Events for
another step entry (``step_seq``), events after the run finished, timers of a
step the run has left and answers dated before the run began (``started_at``) are
ignored with a reason. A ``RenderError`` from the scope
fails the run with the error's text; actions of steps completed before it stand.
``RunState.vars[RUN_CONTEXT]`` is the context the run was started with (``POST
/v1/runs``, a CSV row): templates and expressions of the run see those keys over the
contact's stored context, so two runs of one contact each keep their own amount. A
``set`` writes the contact's context, and the run's own copy of a key it holds.
An ``OPTED_OUT`` event cancels an open run whatever its step.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from engine import step_routes
from engine.errors import RenderError
from engine.flow.model import Flow, Step, WaitFor, to_timedelta
from engine.models import OPEN_RUN_STATUSES, RunStatus

MAX_STEPS_PER_TRANSITION = 100
OPTED_OUT = "opted_out"  # the contact opted out: every open run of theirs is cancelled
RUN_CONTEXT = "context"  # RunState.vars key: the context the run was started with
_CONTEXT = "context."
_ANSWERS = ("reply", "button.", "choice.")  # the contact's answers (engine.step_events)
# A sender's clock may run this much behind ours (engine.event_times keeps as much
# ahead): an answer dated less than this before the run began still counts.
ANSWER_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunState:
    step: str | None
    status: RunStatus
    step_seq: int  # bumped on every step entry
    vars: Mapping[str, Any]
    # When the run was created: an answer dated before it answers nothing of this run.
    started_at: datetime | None = None


class Scope(Protocol):
    """Evaluates flow expressions for the run (the dispatcher renders with engine.render).

    Both methods may raise ``engine.errors.RenderError``.
    """

    def test(self, expression: str, *, step: str, context_patch: Mapping[str, Any]) -> bool: ...

    def value(self, value: Any, *, step: str, context_patch: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEvent:
    # sent, delivered, read, failed, reply, button.<id>, choice.<id>, skipped, timeout;
    # OPTED_OUT is no flow's to route: it cancels the run.
    name: str
    step_seq: int | None = None  # the step entry it belongs to; None = the current one
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterStep:
    step: str
    step_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    step: str
    step_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    step: str
    step_seq: int
    due_at: datetime
    reason: Literal["timeout", "wait"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimers:
    """The step was left: drop its pending timers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PatchContext:
    patch: Mapping[str, Any]  # nested: {"a": {"b": 1}}, deep-merged into the contact context


@dataclass(frozen=True, slots=True, kw_only=True)
class StartAttendance:
    attendant: str | None
    until: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    status: RunStatus
    reason: str


Action = EnterStep | Send | StartTimer | CancelTimers | PatchContext | StartAttendance | Finish


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    state: RunState
    actions: tuple[Action, ...]
    ignored: bool = False  # the event had no transition (recorded, otherwise ignored)
    reason: str = ""  # why ignored / why finished, plain words


# ------------------------------------------------------------------ entering steps


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Deep-merge ``patch`` into ``base`` the way the store merges a context patch."""
    for key, value in patch.items():
        current = base.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _merge(current, value)
        else:
            base[key] = _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _nested(path: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: _plain(value)}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


class _Walk:
    """One transition's walk through the flow: entered steps, actions and patches."""

    def __init__(self, flow: Flow, scope: Scope, now: datetime, state: RunState) -> None:
        self.flow, self.scope, self.now = flow, scope, now
        self.state = state
        self.actions: list[Action] = []
        self.patch: dict[str, Any] = {}  # every `set` of this transition, for expressions

    def finish(self, status: RunStatus, reason: str) -> Transition:
        self.actions.append(Finish(status=status, reason=reason))
        self.state = replace(self.state, status=status)
        return Transition(state=self.state, actions=tuple(self.actions), reason=reason)

    def park(self) -> Transition:
        self.state = replace(self.state, status=RunStatus.WAITING)
        return Transition(state=self.state, actions=tuple(self.actions))

    def enter(self, step_id: str) -> Transition:
        """Enter ``step_id`` and chain through steps that do not wait."""
        for _ in range(MAX_STEPS_PER_TRANSITION):
            step = self.flow.steps.get(step_id)
            if step is None:
                return self.finish(
                    RunStatus.FAILED, f"step `{step_id}` does not exist in flow `{self.flow.flow}`"
                )
            seq = self.state.step_seq + 1
            self.state = replace(self.state, step=step_id, step_seq=seq)
            self.actions.append(EnterStep(step=step_id, step_seq=seq))
            try:
                target = self._run(step_id, step, seq)
            except RenderError as exc:
                return self.finish(RunStatus.FAILED, str(exc))
            if isinstance(target, Transition):
                return target
            step_id = target
        return self.finish(
            RunStatus.FAILED,
            f"flow looped through {MAX_STEPS_PER_TRANSITION} steps without waiting",
        )

    def _run(self, step_id: str, step: Step, seq: int) -> str | Transition:
        """Do what entering ``step`` does: the next step to enter, or the transition."""
        if step.send is not None:
            self.actions.append(Send(step=step_id, step_seq=seq))
            return self.park()
        if step.wait is not None:
            self._start_wait_timer(step_id, step, step.wait, seq)
            return self.park()
        if step.end is not None:
            return self.finish(RunStatus(step.end), f"reached end step `{step_id}`")
        if step.branch is not None:
            return self._branch(step_id, step)
        if step.handoff is not None:
            until = step.handoff.until
            self.actions.append(
                StartAttendance(
                    attendant=step.handoff.attendant,
                    until=self.now + to_timedelta(until) if until is not None else None,
                )
            )
        else:  # `set`, the only kind left
            problem = self._set(step_id, step.set_ or {})
            if problem is not None:
                return self.finish(RunStatus.FAILED, problem)
        return step.next or self.finish(
            RunStatus.COMPLETED, f"step `{step_id}` has no next step; the run is complete"
        )

    def _start_wait_timer(
        self, step_id: str, step: Step, wait: str | int | float | WaitFor, seq: int
    ) -> None:
        if isinstance(wait, WaitFor):
            limit = wait.up_to
            if limit is None and step.timeout is not None:
                limit = step.timeout.after
            if limit is not None:
                due = self.now + to_timedelta(limit)
                self.actions.append(
                    StartTimer(step=step_id, step_seq=seq, due_at=due, reason="timeout")
                )
        else:
            due = self.now + to_timedelta(wait)
            self.actions.append(StartTimer(step=step_id, step_seq=seq, due_at=due, reason="wait"))

    def _branch(self, step_id: str, step: Step) -> str | Transition:
        for case in step.branch or []:
            if case.else_ is not None:
                return case.else_
            if (
                case.when is not None
                and case.goto is not None
                and self.scope.test(case.when, step=step_id, context_patch=self.patch)
            ):
                return case.goto
        return step.next or self.finish(
            RunStatus.FAILED, f"no branch of step `{step_id}` matched and it has no `else`"
        )

    def _set(self, step_id: str, values: Mapping[str, Any]) -> str | None:
        """Render and apply ``set:``; a problem with a key comes back as plain words."""
        step_patch: dict[str, Any] = {}
        for key, raw in values.items():
            path = key.removeprefix(_CONTEXT).split(".")
            if not key.startswith(_CONTEXT) or not all(path):
                return (
                    f"`set` key `{key}` in step `{step_id}` must be `context.` "
                    "followed by a name, like `context.nps_pedido`"
                )
            value = self.scope.value(raw, step=step_id, context_patch=self.patch)
            nested = _nested(path, value)
            _merge(step_patch, nested)
            _merge(self.patch, nested)
        self.actions.append(PatchContext(patch=step_patch))
        own = self.state.vars.get(RUN_CONTEXT)
        if isinstance(own, Mapping) and (mine := {k: v for k, v in step_patch.items() if k in own}):
            updated = copy.deepcopy(dict(own))
            _merge(updated, mine)
            self.state = replace(self.state, vars={**self.state.vars, RUN_CONTEXT: updated})
        return None


# ------------------------------------------------------------------ public API


def _ignored(state: RunState, reason: str) -> Transition:
    return Transition(state=state, actions=(), ignored=True, reason=reason)


def start(
    flow: Flow, scope: Scope, now: datetime, run_vars: Mapping[str, Any] | None = None
) -> Transition:
    """Enter ``flow.start`` for a new run and walk until the run waits or finishes."""
    state = RunState(step=None, status=RunStatus.ACTIVE, step_seq=0, vars=run_vars or {})
    return _Walk(flow, scope, now, state).enter(flow.start)


def handle(
    flow: Flow, state: RunState, event: StepEvent, scope: Scope, now: datetime
) -> Transition:
    """Apply one event to a run: move it, keep it waiting, finish it, or ignore the event."""
    if state.status not in OPEN_RUN_STATUSES:
        return _ignored(state, f"the run is already {state.status}; `{event.name}` ignored")
    if event.name == OPTED_OUT:  # before any route: an opt-out is not overridable
        return cancel(state, "the contact opted out")
    if state.step is None:
        return _ignored(state, f"the run has not entered a step; `{event.name}` ignored")
    step_id = state.step
    walk = _Walk(flow, scope, now, state)
    step = flow.steps.get(step_id)
    if step is None:
        return walk.finish(
            RunStatus.FAILED, f"step `{step_id}` does not exist in flow `{flow.flow}`"
        )
    seq = state.step_seq if event.step_seq is None else event.step_seq
    earlier_ok = seq < state.step_seq and step_routes.accepts_earlier(step, event.name)
    if seq != state.step_seq and not earlier_ok:
        if event.name == "timeout":
            left = event.data.get("step") or "a step"
            return _ignored(
                state, f"timer of {left} (entry {seq}) fired after the run left it for `{step_id}`"
            )
        return _ignored(
            state,
            f"`{event.name}` belongs to step entry {seq}; the run is at entry "
            f"{state.step_seq} (`{step_id}`)",
        )
    if (late := _answer_before_run(state, event)) is not None:
        return _ignored(state, late)
    route = step_routes.route(step_id, step, event.name, event.data, now)
    if isinstance(route, step_routes.Ignore):
        return _ignored(state, route.reason)
    if isinstance(route, step_routes.StayWithTimeout):
        timer = StartTimer(
            step=step_id, step_seq=state.step_seq, due_at=route.due_at, reason="timeout"
        )
        return Transition(state=state, actions=(timer,))
    walk.actions.append(CancelTimers())
    if isinstance(route, step_routes.End):
        return walk.finish(route.status, route.reason)
    return walk.enter(route.target)


def _answer_before_run(state: RunState, event: StepEvent) -> str | None:
    """Why a reply, button or choice dated before the run began (more than a clock's
    skew before) is no answer of it (a late webhook, a backfill), or None."""
    if state.started_at is None or not event.name.startswith(_ANSWERS):
        return None
    at = event.data.get("at")
    when = datetime.fromisoformat(at) if isinstance(at, str) else None
    if when is None or when >= state.started_at - ANSWER_CLOCK_SKEW:
        return None
    return (
        f"`{event.name}` is dated {when.isoformat()}, before the run began "
        f"({state.started_at.isoformat()}): it answers nothing of this run"
    )


def cancel(state: RunState, reason: str) -> Transition:
    """Cancel an open run: drop its timers and finish it ``cancelled``."""
    if state.status not in OPEN_RUN_STATUSES:
        return _ignored(state, f"the run is already {state.status}; nothing to cancel")
    return Transition(
        state=replace(state, status=RunStatus.CANCELLED),
        actions=(CancelTimers(), Finish(status=RunStatus.CANCELLED, reason=reason)),
        reason=reason,
    )
