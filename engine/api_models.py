"""Request bodies of the HTTP API, validated with pydantic (unknown fields are errors)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from engine.errors import FieldError
from engine.models import OPEN_RUN_STATUSES, ContactUpsert, RunStatus, in_utc
from engine.phones import InvalidPhone, normalise_phone
from engine.wording import json_kind
from engine.zones import is_iana_zone
from providers.base import Attachment

# The longest contact id accepted anywhere (a CRM key, a CPF, an e-mail address).
CONTACT_ID_MAX = 200
# The longest idempotency key, in the body or in the Idempotency-Key header.
IDEMPOTENCY_KEY_MAX = 200
# How many decisions and events GET /v1/contacts/{id}/decisions answers, by default
# and at most (?limit=); the same for GET /v1/messages?status=ambiguous.
DECISIONS_LIMIT, DECISIONS_MAX = 200, 10_000
MESSAGES_LIMIT, MESSAGES_MAX = 100, 1000
# ``?status=`` of GET /v1/contacts/{id}/runs: a run status, or a group of them.
RUN_FILTERS: dict[str, frozenset[RunStatus]] = {
    "open": OPEN_RUN_STATUSES,
    "finished": frozenset(RunStatus) - OPEN_RUN_STATUSES,
    **{str(status): frozenset({status}) for status in RunStatus},
}


# Something@domain.tld without spaces: a mistyped address is refused, not bounced later.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactIn(_Body):
    """A contact as ``PUT /v1/contacts/{id}`` and a run's start take it: a field left
    out or ``null`` keeps what is stored."""

    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=CONTACT_ID_MAX,
        description="Your id of the contact (a CRM key, a CPF, an e-mail address). Left "
        "out, the phone (else the e-mail) is its id. On PUT it must be the URL's or absent.",
    )
    phone: str | None = Field(
        default=None,
        description="A phone number as people write it (`+55 11 99999-8888`), stored in "
        "E.164 (`+5511999998888`; a Brazilian mobile without its ninth digit gets it). "
        "It can be replaced, not cleared.",
    )
    email: str | None = Field(default=None, description="An e-mail address, name@domain.tld.")
    name: str | None = Field(default=None, max_length=200, description="The contact's name.")
    tags: list[str] | None = Field(
        default=None, description="The contact's tags; given, they replace those stored."
    )
    timezone: str | None = Field(
        default=None,
        description="An IANA time zone (`America/Sao_Paulo`): the contact's local time, "
        "for the rules that read it, instead of the config's `timezone`.",
    )
    context: dict[str, Any] | None = Field(
        default=None,
        description="What flows' templates and `when:` tests read about the contact; "
        "merged key by key into what is stored (a key set to `null` is removed).",
    )

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalise_phone(value)
        except InvalidPhone as exc:
            raise ValueError(str(exc)) from None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an e-mail address; write it as name@domain.com")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_iana_zone(value):
            raise ValueError(f"{value!r} is not an IANA timezone, e.g. America/Sao_Paulo")
        return value

    def contact_id(self) -> str:
        ident = self.id or self.phone or self.email
        if not ident:
            raise ValueError("a contact needs an `id`, a `phone` or an `email`")
        return ident

    def upsert(self, contact_id: str) -> ContactUpsert:
        """The contact as stored under ``contact_id``; fields not given stay as stored."""
        return ContactUpsert(
            id=contact_id,
            phone=self.phone,
            email=self.email,
            name=self.name,
            tags=tuple(self.tags) if self.tags is not None else None,
            context=self.context,
            timezone=self.timezone,
        )


class RunIn(_Body):
    """A run to start: a flow for a contact."""

    flow: str = Field(
        description="A loaded flow whose `triggers:` include `- api: {}` (a flow that "
        "lists no `triggers:` has that one)."
    )
    contact: ContactIn = Field(
        description="The contact, created or updated with what this holds; it needs an "
        "`id`, a `phone` or an `email`."
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="The run's own context: its templates and `when:` tests see these "
        "keys over the contact's stored context. Also merged into the contact's context "
        "and kept in the run's `vars.context`.",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        description="One run per key, however often the request is retried; the same "
        "key with another request is a 409 `IDEMPOTENCY_KEY_REUSED`. Or send the "
        "`Idempotency-Key` header.",
    )


def _contact_ref(value: Any) -> Any:
    """An event's ``contact``: an id, or an object validated as ``ContactIn`` (its
    errors named by their field, not by the branch of a union that failed)."""
    if isinstance(value, str):
        if not 1 <= len(value) <= CONTACT_ID_MAX:
            raise ValueError(
                f"a contact id has 1 to {CONTACT_ID_MAX} characters; this one has {len(value)}"
            )
        return value
    if isinstance(value, dict):
        return ContactIn.model_validate(value)
    if value is None or isinstance(value, ContactIn):
        return value
    raise ValueError('give a contact id or an object such as {"phone": "+5511999998888"}')


class EventIn(_Body):
    """Something a contact did, or a message's status, for ``POST /v1/events``."""

    type: Literal[
        "reply",
        "button",
        "choice",
        "interaction",
        "attendance_started",
        "attendance_ended",
        "opt_out",
        "opt_in",
        "status",
    ] = Field(
        description="What happened: a `reply` (needs `text`, an `attachment` or both), a "
        "tapped `button` or list `choice` (needs `button_id`), an `interaction`, an "
        "attendance's start or end, an `opt_out` or `opt_in`, or a message's `status`."
    )
    contact: Annotated[str | ContactIn | None, BeforeValidator(_contact_ref)] = Field(
        default=None,
        description='Whose event: a contact id, or `{"phone": "+5511999998888"}` (or '
        '`{"id": ...}`); required but on a `status`.',
    )
    at: datetime | None = Field(
        default=None,
        description="When it happened, with its offset (`2026-11-23T10:00:00-03:00`) or "
        "in UTC (`…Z`), at most 5 minutes ahead of now. Left out: now.",
    )
    text: str | None = Field(default=None, description="What the contact wrote; not on a `status`.")
    button_id: str | None = Field(
        default=None, description="The tapped button's or list row's id; `button` and `choice`."
    )
    attendant: str | None = Field(
        default=None, description="Who attends; `attendance_started` and `attendance_ended`."
    )
    until: datetime | None = Field(
        default=None,
        description="When the attendance ends if no `attendance_ended` comes, after `at`; "
        "`attendance_started` only.",
    )
    channel: Literal["whatsapp", "sms", "email"] | None = Field(
        default=None,
        description="What a `reply`, `button` or `choice` came in on: only WhatsApp opens "
        "the 24 h window. Left out: whatsapp.",
    )
    attachment: Attachment | None = Field(
        default=None, description="A file or map pin a `reply` brought."
    )
    message_id: str | None = Field(
        default=None, description="The message a `status` is about (required there)."
    )
    status: Literal["sent", "delivered", "read", "failed"] | None = Field(
        default=None, description="The message's new status (required on a `status`)."
    )
    error: str | None = Field(
        default=None,
        description="Why the message failed, kept as its last error; a `status` only.",
    )
    id: str | None = Field(
        default=None,
        description="Your id of this event: an id seen before is a `duplicate` and changes "
        "nothing (a provider's redelivery).",
    )

    @field_validator("at", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2026-11-23T10:00:00-03:00 or ...Z")
        if value is not None:
            in_utc(value)  # kept as given (errors quote it), but UTC must have that date
        return value


def pydantic_details(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    out = []
    for err in exc.errors():
        # List indexes in brackets (``tags[1]``), as every other error names them.
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        path = path.removeprefix(".")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field; remove it or check its spelling"
        elif err["type"] in ("model_type", "dict_type"):
            # pydantic's words name the Python class ("instance of RunIn")
            message = f"must be a JSON object ({{...}}), not {json_kind(err['input'])}"
        out.append(
            FieldError(field=f"{prefix}{path}" if path else prefix.rstrip("."), message=message)
        )
    return out
