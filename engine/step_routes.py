"""What an event means for the step a run is waiting in (used by ``engine.runner``).

A route says: move to a step, stay and start the step's timeout, finish the run,
or ignore the event. The semantics are documented in ``engine.runner``; this module
only maps (step, event) to a route. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.flow.model import Step, WaitFor, to_timedelta
from engine.models import RunStatus

REPLY_LIKE = ("button.", "choice.")


@dataclass(frozen=True, slots=True)
class Move:
    target: str


@dataclass(frozen=True, slots=True)
class StayWithTimeout:
    """Keep waiting; the step's ``timeout:`` starts counting now (due at ``due_at``)."""

    due_at: datetime


@dataclass(frozen=True, slots=True)
class End:
    status: RunStatus
    reason: str


@dataclass(frozen=True, slots=True)
class Ignore:
    reason: str


Route = Move | StayWithTimeout | End | Ignore


def on_entry(step: Step, name: str) -> str | None:
    """The step's ``on:`` target for ``name``; ``button.*``/``choice.*`` fall back to ``reply``."""
    on = step.on or {}
    if name in on:
        return on[name]
    if name.startswith(REPLY_LIKE):
        return on.get("reply")
    return None


def _next_or_end(step_id: str, step: Step, what: str) -> Move | End:
    if step.next:
        return Move(step.next)
    return End(RunStatus.COMPLETED, f"{what}; step `{step_id}` has no next step")


def _no_transition(step_id: str, name: str) -> Ignore:
    return Ignore(f"step `{step_id}` has no transition for `{name}`")


def route_send(
    step_id: str, step: Step, name: str, data: Mapping[str, Any], now: datetime
) -> Route:
    """Route an event of a ``send`` step."""
    if name == "timeout":
        target = step.timeout.goto if step.timeout else (step.on or {}).get("timeout")
        return Move(target) if target else Ignore(f"step `{step_id}` has no timeout")
    if (target := on_entry(step, name)) is not None:
        return Move(target)
    if name == "sent":
        if step.timeout:
            return StayWithTimeout(now + to_timedelta(step.timeout.after))
        if not step.on:
            return _next_or_end(step_id, step, "message sent")
    elif name == "failed":
        if step.next:
            return Move(step.next)
        error = data.get("error") or data.get("reason")
        detail = f": {error}" if error else ""
        return End(RunStatus.FAILED, f"message of step `{step_id}` failed{detail}")
    elif name == "skipped":
        if step.next:
            return Move(step.next)
        why = data.get("reason")
        detail = f" ({why})" if why else ""
        return End(RunStatus.COMPLETED, f"send skipped{detail}; nothing else to do")
    return _no_transition(step_id, name)


def awaits(wait: WaitFor, name: str) -> bool:
    """Whether ``name`` is what ``wait: {for: ...}`` waits for."""
    if wait.for_ == "reply":
        return name == "reply" or name.startswith(REPLY_LIKE)
    if wait.for_ == "delivered":
        return name in ("delivered", "read")
    if wait.for_ == "read":
        return name == "read"
    return name != "timeout"


def route_wait(step_id: str, step: Step, name: str) -> Route:
    """Route an event of a ``wait`` step."""
    if name == "timeout":
        target = (step.on or {}).get("timeout")
        if target is None and isinstance(step.wait, WaitFor) and step.timeout:
            target = step.timeout.goto
        return Move(target) if target else _next_or_end(step_id, step, "the wait is over")
    if (target := on_entry(step, name)) is not None:
        return Move(target)
    if isinstance(step.wait, WaitFor) and awaits(step.wait, name):
        return _next_or_end(step_id, step, f"`{name}` arrived")
    return _no_transition(step_id, name)


def accepts_earlier(step: Step, name: str) -> bool:
    """A ``wait: {for: read|delivered}`` step waits on the message sent before it, so
    that message's status events (of an earlier step entry) count."""
    wait = step.wait
    return isinstance(wait, WaitFor) and wait.for_ in ("read", "delivered") and awaits(wait, name)


def route(step_id: str, step: Step, name: str, data: Mapping[str, Any], now: datetime) -> Route:
    """Route ``name`` for the step the run waits in; steps that never wait ignore events."""
    if step.send is not None:
        return route_send(step_id, step, name, data, now)
    if step.wait is not None:
        return route_wait(step_id, step, name)
    return Ignore(f"step `{step_id}` ({step.kind}) does not wait for events")
