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
from engine.models import ContactUpsert, in_utc
from engine.phones import InvalidPhone, normalise_phone
from engine.wording import json_kind
from engine.zones import is_iana_zone
from providers.base import Attachment

# The longest contact id accepted anywhere (a CRM key, a CPF, an e-mail address).
CONTACT_ID_MAX = 200
# The longest idempotency key, in the body or in the Idempotency-Key header.
IDEMPOTENCY_KEY_MAX = 200
# Something@domain.tld without spaces: a mistyped address is refused, not bounced later.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactIn(_Body):
    id: str | None = Field(default=None, min_length=1, max_length=CONTACT_ID_MAX)
    phone: str | None = None
    email: str | None = None
    name: str | None = Field(default=None, max_length=200)
    tags: list[str] | None = None
    timezone: str | None = None
    context: dict[str, Any] | None = None

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
    flow: str
    contact: ContactIn
    context: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=IDEMPOTENCY_KEY_MAX)


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
    ]
    contact: Annotated[str | ContactIn | None, BeforeValidator(_contact_ref)] = None
    at: datetime | None = None
    text: str | None = None
    button_id: str | None = None
    attendant: str | None = None
    until: datetime | None = None
    channel: Literal["whatsapp", "sms", "email"] | None = None  # what a reply came in on
    attachment: Attachment | None = None  # a file or map pin a reply brought
    message_id: str | None = None  # for type=status
    status: Literal["sent", "delivered", "read", "failed"] | None = None
    error: str | None = None
    id: str | None = Field(default=None, description="Your id of this event; repeats are ignored")

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
