"""What one atomic ``Store.commit`` writes: the records of a run's transactional outbox.

A ``Commit`` carries a run's creation or change, the messages it queues or moves,
the contact facts it updates, the due work it completes and schedules, and the
events it logs; every backend writes all of it or none of it (``storage.base``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.models import (
    Attendance,
    Channel,
    DueWork,
    MessageStatus,
    NewDueWork,
    NewEvent,
    Run,
    RunStatus,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRun:
    id: str
    flow: str
    flow_version: str
    contact_id: str
    step: str | None
    status: RunStatus
    idempotency_key: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    step_seq: int = 1
    # Refuse (``Conflict``) a second open run of the same (contact, flow).
    exclusive: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RunChange:
    """The run's new state; applied only if the stored version is ``expected_version``."""

    run_id: str
    expected_version: int
    step: str | None
    status: RunStatus
    step_seq: int
    vars: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    id: str
    run_id: str
    contact_id: str
    flow: str
    step: str
    step_seq: int
    provider: str
    channel: Channel
    idempotency_key: str
    payload: Mapping[str, Any] = field(default_factory=dict)


_UNSET: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageChange:
    """Changes to one message. Fields left at their default are not touched.

    ``status`` moves only forward unless ``force``; ``expected_status`` makes the
    whole commit fail with ``StaleRun`` when the stored status differs (optimistic
    concurrency for the dispatcher's queued -> sending step). A status that may not
    move is dropped alone: the other fields the change sets are still written.
    """

    message_id: str
    at: datetime
    status: MessageStatus | None = None
    force: bool = False
    expected_status: MessageStatus | None = None
    payload: Mapping[str, Any] | None = None
    provider_message_id: str | None = None
    attempts: int | None = None
    next_attempt_at: datetime | None = _UNSET
    last_error: str | None = _UNSET

    def sets(self, name: str) -> bool:
        return getattr(self, name) is not _UNSET


def reported_change(
    message_id: str, *, stored: MessageStatus, new: MessageStatus, at: datetime, error: str | None
) -> MessageChange:
    """What a provider's status report changes on its message: ``new`` from ``stored``
    (checked, as the status read), and a failure's ``error`` as ``last_error``."""
    return MessageChange(
        message_id=message_id,
        at=at,
        status=new,
        expected_status=stored,
        last_error=error if new == MessageStatus.FAILED and error else _UNSET,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactChange:
    """Facts the engine writes about a contact while running a flow."""

    contact_id: str
    context_patch: Mapping[str, Any] | None = None  # merged key by key; None value deletes
    last_outbound_at: datetime | None = None  # stored as max(stored, given)
    attendance: Attendance | None = None  # starts attendance (handoff)


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """What happens to the claimed due-work row this commit finishes.

    ``retry_at`` None deletes the row; a time gives it back to the queue then
    (lease cleared, ``attempts`` + 1, ``payload`` replaced when given).
    """

    work: DueWork
    retry_at: datetime | None = None
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerFiring:
    """One fire time of one cron trigger, recorded once, ever (see ``Commit.firing``)."""

    flow: str
    trigger: int  # the trigger's index in the flow's `triggers:` list
    fire_time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundGuard:
    """What ``max_per_day`` and ``recent_contact`` counted for a send, checked again
    in the commit that makes it ``sending``, under a lock of the contact that every
    engine on the store takes: when another send to the contact left or began
    leaving since, the commit raises ``OutboundChanged`` and writes nothing.

    ``max_per_day``: the messages of ``contact_id`` that are ``sending``
    (``message_id`` aside) or left (sent or beyond) at or after ``day_start`` must
    be fewer. ``recent_since``: no message of another run than ``run_id`` may have
    left, or become ``sending``, after it. The same counts as ``Store.count_outbound``
    and ``Store.last_outbound_at``.
    """

    contact_id: str
    message_id: str
    run_id: str
    day_start: datetime | None = None
    max_per_day: int | None = None
    recent_since: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """One atomic unit of change: the transactional outbox of the run state machine."""

    now: datetime
    done: Completion | None = None
    new_run: NewRun | None = None
    run: RunChange | None = None
    contact: ContactChange | None = None
    new_messages: Sequence[NewMessage] = ()
    messages: Sequence[MessageChange] = ()
    new_due: Sequence[NewDueWork] = ()
    # "Unclaimed": no lease, or one that expired before ``now``; the row ``done``
    # completes is never dropped by these (``done`` decides its fate).
    cancel_timers_of_run: str | None = None  # drop the run's unclaimed TIMER rows
    cancel_all_due_of_run: str | None = None  # drop every unclaimed row of the run (cancel)
    events: Sequence[NewEvent] = ()
    # Record a cron firing; when (flow, trigger, fire_time) was recorded before, the
    # commit raises ``Conflict`` and writes nothing: each fire time fires once, across
    # every process and restart.
    firing: TriggerFiring | None = None
    # Checked before anything is written (``OutboundGuard``).
    guard: OutboundGuard | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitResult:
    run: Run | None = None  # the created or changed run, or the existing one for a reused key
    created: bool = False
    # Message changes whose status really moved (monotonic rule), by message id.
    status_applied: Mapping[str, MessageStatus] = field(default_factory=dict)
