"""Frozen shared types: the kernel every package may import.

Datetimes are timezone-aware UTC everywhere inside disparo; local time exists only
at the edges (quiet hours, cron, rendering with ``date``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WrapValidator,
    field_validator,
)

Channel = Literal["whatsapp", "sms", "email"]
JSON = dict[str, Any]


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    SKIPPED = "skipped"
    AMBIGUOUS = "ambiguous"


# Statuses only move forward along this rank; failed/skipped are terminal.
STATUS_RANK: Mapping[MessageStatus, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.AMBIGUOUS: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
}
# A message handed to a provider: it may have reached the contact.
HANDED_OVER_STATUSES = frozenset(s for s, rank in STATUS_RANK.items() if rank >= 1)
TERMINAL_STATUSES = frozenset({MessageStatus.FAILED, MessageStatus.SKIPPED})
# Statuses a provider may report about a message it accepted.
REPORTED_STATUSES = (
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.FAILED,
)


class RunStatus(StrEnum):
    ACTIVE = "active"  # has work to do now
    WAITING = "waiting"  # parked on a send's events, a wait or a timer
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


OPEN_RUN_STATUSES = frozenset({RunStatus.ACTIVE, RunStatus.WAITING})


class DueKind(StrEnum):
    """What a due-work row asks the dispatcher to do when it comes due."""

    START = "start"  # enter the run's current step (new run, or resume)
    DISPATCH = "dispatch"  # send (or retry/defer) one message
    TIMER = "timer"  # a step timeout or a wait elapsed
    STATUS = "status"  # a provider status report for one message
    INBOUND = "inbound"  # a contact event delivered to one open run
    CALLBACK = "callback"  # a delayed provider webhook (sandbox statuses)
    CRON = "cron"  # a cron trigger's next fire time (one row per trigger)
    FANOUT = "fanout"  # one firing walking its audience in chunks (cursor in the payload)
    SWEEP = "sweep"  # an `after` trigger's next re-engagement sweep (one row per trigger)


# ---------------------------------------------------------------- contacts


@dataclass(frozen=True, slots=True, kw_only=True)
class Attendance:
    attendant: str | None
    since: datetime
    until: datetime | None = None

    def active_at(self, now: datetime) -> bool:
        return self.since <= now and (self.until is None or now < self.until)


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    id: str
    phone: str | None = None  # E.164
    email: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)
    timezone: str | None = None
    last_inbound_at: datetime | None = None  # the user wrote
    last_interaction_at: datetime | None = None  # any exchange with the bot
    last_outbound_at: datetime | None = None
    attendance: Attendance | None = None
    opted_out_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def first_name(self) -> str:
        return (self.name or "").strip().split(" ")[0] if self.name else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactUpsert:
    """Create or update a contact. ``None`` fields are left as stored.

    ``context`` is merged key by key into the stored context unless
    ``replace_context`` is true.
    """

    id: str
    phone: str | None = None
    email: str | None = None
    name: str | None = None
    tags: tuple[str, ...] | None = None
    context: Mapping[str, Any] | None = None
    replace_context: bool = False
    timezone: str | None = None


# ---------------------------------------------------------------- config inputs


class NumbersRefuseBooleans(BaseModel):
    """Base of config models written in YAML: a number field refuses `true`/`false`.

    pydantic takes a boolean as 1 or 0 for an ``int`` or ``float`` field, so
    ``max_in_flight: true`` would quietly mean one message in flight.
    """

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        # A field with a parser of its own (delays like "2m") explains its errors itself.
        if (
            isinstance(value, bool)
            and field is not None
            and not any(
                isinstance(m, BeforeValidator | PlainValidator | WrapValidator)
                for m in field.metadata
            )
        ):
            kinds = set(get_args(field.annotation) or (field.annotation,)) - {type(None)}
            if kinds and kinds <= {int, float}:
                raise ValueError(f"{str(value).lower()} is not a number; write the number itself")
        return value


# ---------------------------------------------------------------- content
# The shapes every provider understands. Limits (WhatsApp) are checked by
# engine.content; these models only fix the structure.


class _Content(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Text(_Content):
    type: Literal["text"] = "text"
    body: str
    preview_url: bool = False


MediaKind = Literal["image", "video", "audio", "document", "sticker"]


class Media(_Content):
    type: Literal["media"] = "media"
    kind: MediaKind
    url: str | None = None
    base64: str | None = None
    filename: str | None = None
    caption: str | None = None
    mime_type: str | None = None


class Button(_Content):
    id: str
    title: str


class Buttons(_Content):
    type: Literal["buttons"] = "buttons"
    body: str
    header: str | None = None
    footer: str | None = None
    buttons: tuple[Button, ...]


class ListRow(_Content):
    id: str
    title: str
    description: str | None = None


class ListSection(_Content):
    title: str | None = None
    rows: tuple[ListRow, ...]


class ListMenu(_Content):
    type: Literal["list"] = "list"
    body: str
    button: str
    header: str | None = None
    footer: str | None = None
    sections: tuple[ListSection, ...]


class Location(_Content):
    type: Literal["location"] = "location"
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class Template(_Content):
    type: Literal["template"] = "template"
    name: str
    language: str | None = None
    # Named parameters keep their order; positional ones are a tuple.
    params: dict[str, str] | tuple[str, ...] = Field(default_factory=dict)
    header_media: Media | None = None


class Email(_Content):
    type: Literal["email"] = "email"
    subject: str
    body: str
    html: bool = False


Content = Annotated[
    Text | Media | Buttons | ListMenu | Location | Template | Email,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- runs & messages


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    flow: str
    flow_version: str  # content hash of the flow file the run is pinned to
    contact_id: str
    step: str | None
    status: RunStatus
    vars: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str
    version: int = 0  # bumped by every commit; optimistic concurrency
    step_seq: int = 0  # bumped on every step entry; stale timers compare it
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    id: str
    run_id: str
    contact_id: str
    flow: str
    step: str
    step_seq: int
    provider: str
    channel: Channel
    idempotency_key: str  # stable across retries; sent as the provider's key when it has one
    status: MessageStatus
    payload: Mapping[str, Any]  # the rendered Content (model_dump) once rendered
    provider_message_id: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    status_at: Mapping[str, datetime] = field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    """What a provider adapter gets: one rendered message to one contact."""

    message_id: str
    idempotency_key: str
    run_id: str
    flow: str
    step: str
    channel: Channel
    contact: Contact
    content: Text | Media | Buttons | ListMenu | Location | Template | Email
    # Provider hints derived from the flow (rules, handoff), e.g.
    # {"recent_contact_hours": 4, "in_attendance": "skip", "attendant": "Operador"}.
    hints: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    provider_message_id: str | None
    status: MessageStatus = MessageStatus.SENT
    raw: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- events & due work


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One entry of the append-only audit log of a contact or a run."""

    id: int
    contact_id: str | None
    run_id: str | None
    message_id: str | None
    kind: str  # e.g. inbound.reply, status.read, decision, timer, run.started
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    kind: str
    at: datetime
    contact_id: str | None = None
    run_id: str | None = None
    message_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None  # a second event with the same key is dropped


@dataclass(frozen=True, slots=True, kw_only=True)
class DueWork:
    id: int
    kind: DueKind
    due_at: datetime
    run_id: str | None = None
    message_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    lease_owner: str | None = None
    lease_until: datetime | None = None
    fence: int = 0
    attempts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDueWork:
    kind: DueKind
    due_at: datetime
    run_id: str | None = None
    message_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- what comes in


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """A provider's word about one message we sent.

    Matched by ``provider_message_id`` or, for providers that echo our key, by
    ``idempotency_key``.
    """

    provider: str
    status: MessageStatus
    at: datetime
    provider_message_id: str | None = None
    idempotency_key: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    dedupe_key: str | None = None


ContactEventType = Literal[
    "reply",
    "button",
    "choice",
    "interaction",
    "attendance_started",
    "attendance_ended",
    "opt_out",
    "opt_in",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactEvent:
    """Something the contact did (or a fact about it) that may move its runs."""

    type: ContactEventType
    at: datetime
    contact_id: str | None = None  # set by the engine before the store sees it
    phone: str | None = None  # what a provider webhook knows about the contact
    text: str | None = None
    button_id: str | None = None  # button.<id> / choice.<row id>
    attendant: str | None = None
    until: datetime | None = None  # attendance expiry
    source: str = "api"  # "api" or a provider instance name
    dedupe_key: str | None = None
    channel: Channel | None = None  # came in on, when known; only whatsapp opens its window
    attachment: dict[str, Any] | None = None  # a reply's file or map pin, as the API took it


def missing_for_type(
    kind: str, *, text: str | None, button_id: str | None, attachment: object = None
) -> tuple[str, str] | None:
    """``(field, message)`` when an inbound event of ``kind`` lacks what gives it a
    meaning (the API and the webhook format share this rule), else None."""
    if kind == "reply" and not text and attachment is None:
        return "text", "a reply needs 'text' (what the contact wrote) or an 'attachment'"
    if kind in ("button", "choice") and not button_id:
        return "button_id", f"a {kind} needs 'button_id', the id of the button or row chosen"
    return None


def in_utc(when: datetime) -> datetime:
    """An aware ``when`` in UTC; ``ValueError`` when UTC has no such date."""
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{when.isoformat()} is outside the dates disparo can keep") from None


def status_can_advance(current: MessageStatus, new: MessageStatus) -> bool:
    """Whether a message in ``current`` may move to ``new`` (statuses never go back).

    queued < sending/ambiguous < sent < delivered < read; ``failed`` and ``skipped``
    are terminal; ``failed`` is accepted from any status below ``read`` (a provider
    may report failure after ``sent`` or ``delivered``), never after ``read``.
    ``ambiguous`` is resolved by any provider report.
    """
    if current in TERMINAL_STATUSES or new == current:
        return False
    if new == MessageStatus.FAILED:
        return current != MessageStatus.READ
    if new == MessageStatus.SKIPPED:
        return current in (MessageStatus.QUEUED, MessageStatus.SENDING)
    return STATUS_RANK[new] > STATUS_RANK[current]
