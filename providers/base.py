"""The Provider protocol, capability tables, and the one place HTTP answers become errors.

A provider adapter turns an ``OutboundMessage`` into its vendor's request, sends it,
and parses the vendor's webhooks into ``StatusReport``/``ContactEvent`` values. It
imports only the kernel (``engine.models``, ``engine.errors``).
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from engine.models import (
    Channel,
    ContactEvent,
    NumbersRefuseBooleans,
    OutboundMessage,
    SendResult,
    StatusReport,
)
from engine.shared_state import CredentialRenewal, ProviderCredential, RateSlot

CONTENT_TYPES = frozenset({"text", "media", "buttons", "list", "location", "template", "email"})
# How WhatsApp writes a template's language (Interflow's document: ``pt_BR``): the
# language, then an underscore and the country, or the language alone (en, fil).
WHATSAPP_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")


def language_problem(language: str) -> str | None:
    """Why ``language`` is not written as WhatsApp's template language code, and how
    to write it (``pt-BR`` -> ``pt_BR``); None when it is."""
    if WHATSAPP_LANGUAGE.match(language):
        return None
    lang, _, country = language.strip().replace("-", "_").partition("_")
    fixed = f"{lang.lower()}_{country.upper()}" if country else lang.lower()
    how = f"write `{fixed}`" if WHATSAPP_LANGUAGE.match(fixed) else "write it like `pt_BR`"
    return (
        f"language `{language}` is not a WhatsApp language code; {how} (the language, "
        "then an underscore and the country, or the language alone, as `en`)"
    )


class Attachment(BaseModel):
    """A file or map pin the contact sent, in a reply's ``attachment`` (the API's and
    the generic webhook's): with or without ``text``, it answers as a reply does.
    disparo keeps it with the event and fetches nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["image", "video", "audio", "document", "sticker", "location"] = Field(
        description="A file's kind, or `location` for a map pin."
    )
    url: str | None = Field(default=None, min_length=1, description="Where the file is.")
    mime_type: str | None = Field(default=None, description="The file's type, `image/jpeg`.")
    filename: str | None = Field(default=None, description="The file's name.")
    caption: str | None = Field(default=None, description="What the contact wrote with it.")
    latitude: float | None = Field(
        default=None, ge=-90, le=90, description="A `location`'s (required there)."
    )
    longitude: float | None = Field(
        default=None, ge=-180, le=180, description="A `location`'s (required there)."
    )
    name: str | None = Field(default=None, description="A `location`'s place name.")
    address: str | None = Field(default=None, description="A `location`'s address.")

    @model_validator(mode="after")
    def _a_place_has_coordinates(self) -> Attachment:
        place = self.latitude is not None and self.longitude is not None
        if self.type == "location" and not place:
            raise ValueError("a location needs 'latitude' and 'longitude' (numbers)")
        if self.type != "location" and (self.latitude, self.longitude) != (None, None):
            raise ValueError("'latitude' and 'longitude' belong to an attachment of type location")
        return self

    def as_data(self) -> dict[str, Any]:
        """What is kept with the event: the fields given."""
        return self.model_dump(exclude_none=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What a provider can do; ``disparo check`` compares flows against it."""

    channels: frozenset[Channel]
    content_types: frozenset[str]
    files_per_template: int = 1
    read_receipts: bool = True
    idempotency_key: bool = False  # a resend with the same key is never delivered twice
    webhooks: bool = True
    # Robbu refuses a send that assigns an attendant while discarding attended contacts.
    attendant_conflicts_with_in_attendance: bool = False
    media_kinds: frozenset[str] = frozenset({"image", "video", "audio", "document", "sticker"})
    media_by_url_only: bool = False  # no base64 payloads
    buttons_text_header: bool = True  # a text `header:` on reply buttons
    location_url: bool = True  # a location's `url` (WhatsApp's own location has none)
    template_needs_language: bool = False  # from the step or the template catalogue
    template_params_named: bool = False  # parameters must be a mapping, not a list


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedWebhook:
    """What one webhook body said. ``errors`` names the items that were rejected;
    the good items of a batch are kept."""

    statuses: list[StatusReport] = field(default_factory=list)
    contact_events: list[ContactEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ProviderState(Protocol):
    """State the engine keeps for providers in its store: every process on the same
    store sees the same rate budgets and credentials. Times are the engine's clock."""

    def now(self) -> datetime:
        """The engine's current time (timezone-aware UTC)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the engine's clock."""

    async def take_rate_slot(self, budget: str, *, limit: int, window: float) -> RateSlot:
        """Take one slot of the sliding-window budget ``budget`` (at most ``limit``
        requests start in any ``window`` seconds, for every process), or learn when
        the next one frees; nothing is taken then."""

    async def restrict_rate_budget(
        self, budget: str, *, pause_for: float | None = None, vendor_limit: int | None = None
    ) -> None:
        """Take no slot of ``budget`` for ``pause_for`` seconds, and/or keep it under the
        limit the vendor reports (``vendor_limit``, its latest word)."""

    async def credential(self, name: str) -> ProviderCredential | None:
        """The stored credential ``name`` (a login token) and its version, if any."""

    async def claim_credential_renewal(
        self, name: str, *, stale_version: int, lease: float
    ) -> CredentialRenewal:
        """Ask to renew ``name`` after its version ``stale_version`` (0: none) was refused:
        claimed for ``lease`` seconds (log in, then store or release), a newer value
        another process stored, or the time another process's claim ends."""

    async def store_renewed_credential(
        self, name: str, value: str, *, replaces_version: int
    ) -> ProviderCredential | None:
        """Store ``value`` over version ``replaces_version`` (compare-and-set); None
        when another value was stored first."""

    async def release_credential_renewal(self, name: str) -> None:
        """Give up a claimed renewal that failed, so another process may try."""


class ProviderHost(Protocol):
    """What the engine offers a provider."""

    async def schedule_callback(self, provider: str, delay_seconds: float, body: bytes) -> None:
        """Feed ``body`` to ``POST /webhooks/{provider}`` processing after a delay, durably."""

    @property
    def provider_state(self) -> ProviderState | None:
        """The store-backed state every process on the engine's store shares; None
        where the provider keeps its state in memory (tests, one-off tools). Read it in
        ``start``, never in ``__init__`` (`disparo check` builds providers without a host)."""


class ProviderConfig(NumbersRefuseBooleans):
    """Base of every provider's config model: misspelled keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    # Plain str (the API compares it in constant time); kept out of reprs and logs.
    webhook_secret: str | None = Field(default=None, repr=False)
    timeout: float = 15.0
    max_in_flight: int = 64


class Provider(Protocol):
    """A vendor adapter. One that talks to its vendor through ``HttpTransport`` also
    offers ``slot()``: an async context that holds what one send needs before its
    request may start (``send_slot``). The engine enters it before it marks the
    message ``sending`` and calls ``send`` inside it; ``send`` alone takes it too."""

    name: str  # the instance name in config/disparo.yaml
    capabilities: Capabilities
    config_model: ClassVar[type[ProviderConfig]]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def build_request(self, message: OutboundMessage) -> Mapping[str, Any]:
        """The exact JSON body the vendor would get (used by ``disparo simulate``)."""

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; raise a ``ProviderError`` subclass on failure."""

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], received_at: datetime
    ) -> ParsedWebhook:
        """Parse a vendor webhook; raise ``ProviderRejected`` when the body is unusable."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def error_for_status(
    status: int,
    vendor_message: str | None,
    *,
    provider: str,
    retry_after: str | None = None,
    now: datetime | None = None,
) -> ProviderError:
    """Map a non-2xx HTTP answer to the typed error the engine acts on; a
    ``Retry-After`` date is measured from ``now`` (the engine's clock; default the host's)."""
    said = f": {vendor_message}" if vendor_message else ""
    if status == 429:
        return ProviderRateLimited(
            f"{provider} is rate limiting (429){said}",
            status=status,
            vendor_message=vendor_message,
            retry_after=parse_retry_after(retry_after, now),
        )
    if status in (401, 403):
        return ProviderAuthError(
            f"{provider} refused the credentials ({status}){said}",
            status=status,
            vendor_message=vendor_message,
        )
    if status >= 500 or status == 408:
        return ProviderUnavailable(
            f"{provider} answered {status}{said}",
            status=status,
            vendor_message=vendor_message,
            retry_after=parse_retry_after(retry_after, now),
        )
    return ProviderRejected(
        f"{provider} rejected the message ({status}){said}",
        status=status,
        vendor_message=vendor_message,
    )


def config_error(
    provider: str,
    problem: str,
    *,
    setting: str,
    status: int | None,
    vendor_message: str | None,
    left: bool = True,
) -> ProviderAuthError:
    """A vendor answer that says this provider instance is set up wrong (an unknown
    channel, a wrong URL, a refused account token), not that the message is.

    It is a ``ProviderAuthError``: the engine logs it as an error naming the provider's
    config, counts it toward the provider's circuit (so the backlog pauses) and retries
    the message like a 5xx instead of failing it, until ``providers.<provider>.<setting>``
    is fixed.
    """
    return ProviderAuthError(
        f"{problem}; check providers.{provider}.{setting} in the config",
        status=status,
        vendor_message=vendor_message,
        left=left,
    )


def vendor_message(body: bytes, *, limit: int = 300) -> str | None:
    """The vendor's own words from an error body, for operators.

    Understands the common shapes ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    ``{"message": ...}``, ``{"detail": ...}``, ``{"errors": [{"message": ...}]}``, and
    falls back to the body's text; ``None`` when the body is empty. Cut to ``limit``.
    """
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    found = _message_in(data)
    return one_line(found if found is not None else text, limit)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line with single spaces, cut to ``limit`` characters with "…"."""
    said = " ".join(text.split())
    return said if len(said) <= limit else said[: limit - 1] + "…"


def _message_in(data: Any) -> str | None:
    if isinstance(data, str) and data.strip():
        return data
    if isinstance(data, list) and data:
        return _message_in(data[0])
    if not isinstance(data, dict):
        return None
    for name in ("error", "message", "detail", "errors", "description", "error_description"):
        found = _message_in(data.get(name))
        if found is not None:
            return found
    return None


def mask_phone(phone: str | None) -> str:
    """``+5511999999999`` -> ``+55*******9999``: only the country code and last four
    digits survive, so a log line identifies a contact to its owner and nobody else."""
    digits = "".join(c for c in phone or "" if c.isdigit())
    if len(digits) < 8:  # too short to keep any digit without revealing most of it
        return "*" * len(digits) if digits else "<no phone>"
    return f"+{digits[:2]}{'*' * (len(digits) - 6)}{digits[-4:]}"


def mask_phone_in(text: str, phone: str | None) -> str:
    """``text`` with the contact's number masked in every form a vendor may echo it:
    as given (E.164), digits only, or national (without the country code)."""
    digits = "".join(c for c in phone or "" if c.isdigit())
    if len(digits) < 8:
        return text
    for form in (phone or "", digits, digits[2:]):
        if len(form) >= 8:
            text = text.replace(form, mask_phone(phone))
    return text


# ---------------------------------------------------------------------- departures
#
# Whether a send may have left for the vendor, so a stopping engine can give back
# the ones that can't have.
#
# The engine calls ``Provider.send`` inside ``watch_departure()``. ``HttpTransport``
# reports on the ``Departure`` it finds there: ``waiting`` while a request queues
# for one of the provider's connection slots, ``may_have_left`` from the moment it
# takes one (a connection is opened or reused and the request may be written from
# then on). Every adapter that talks to a vendor does so through ``HttpTransport``;
# a provider that does not (the sandbox) never reports, so its sends are never
# withdrawn.
#
# The engine takes the provider's slot for a send (``send_slot``: a connection slot,
# Robbu's login, Interflow's rate slot) before it marks the message ``sending``, and
# makes the call inside it: a send that waits for any of these is still ``queued``,
# so a crash meanwhile leaves nothing that may look sent. Work a send does before its
# request (a login, a wait for a rate slot) runs under ``preparing()``: the departure
# reports ``waiting`` then, and requests made there are not the message's.
#
# On shutdown the engine marks every departure ``withdrawn``: a request that has not
# taken a slot then raises ``SendWithdrawn`` instead of starting, and one waiting for
# a slot is cancelled. Either way nothing reached the vendor, so the message can go
# back to the queue instead of being left ``sending``, where a provider without
# idempotency keys would have to call it ambiguous.
#
# Any process may erase the contact (or take the work over) while a send waits
# here, and nobody tells the process that holds it. So a send that waited, for a
# connection slot or in the adapter (a rate limit) for longer than
# ``RECHECK_AFTER_SECONDS``, asks ``still_wanted`` once it holds its slot, before
# anything is written: False withdraws it (``SendWithdrawn``).

RECHECK_AFTER_SECONDS = 0.05


@dataclass(slots=True)
class Departure:
    entered: bool = False  # a transport took the request: it reports from here on
    # Queued for a connection slot, or preparing (a login, a rate slot): nothing of
    # the message has been written.
    waiting: bool = False
    contended: bool = False  # it had to queue for its connection slot
    may_have_left: bool = False  # took a slot: the vendor may have the request
    withdrawn: bool = False  # stopping, or no longer wanted: start nothing new
    # Whether the send should still go, asked after a wait (None: never asked).
    still_wanted: Callable[[], Awaitable[bool]] | None = None
    started: float = field(default_factory=time.monotonic)  # when the send began

    @property
    def never_left(self) -> bool:
        """Known for sure not to have reached the vendor: the transport said so."""
        return self.entered and not self.may_have_left


class SendWithdrawn(Exception):
    """A send was not started (the engine is stopping, or its contact was erased);
    nothing was sent."""


_departure: ContextVar[Departure | None] = ContextVar("disparo_departure", default=None)


def watched_departure() -> Departure | None:
    """The departure of the send this task is making, if the engine watches one."""
    return _departure.get()


@contextmanager
def watch_departure() -> Iterator[Departure]:
    """Watch one ``Provider.send`` made inside this block."""
    departure = Departure()
    token = _departure.set(departure)
    try:
        yield departure
    finally:
        _departure.reset(token)


@contextmanager
def preparing() -> Iterator[None]:
    """Work a send does before its request (a login, a wait for a rate slot): the
    watched departure is ``waiting`` meanwhile (a stopping engine may cancel it, as
    nothing of the message can have left), and requests made here are not the
    message's, so they neither report nor are withdrawn."""
    watched = _departure.get()
    if watched is None:
        yield
        return
    token = _departure.set(None)
    watched.waiting = True
    try:
        yield
    finally:
        watched.waiting = False
        _departure.reset(token)


def send_slot(provider: object) -> AbstractAsyncContextManager[None]:
    """``provider.slot()``: what one send must hold before its request may start; a
    provider without one (the sandbox) needs nothing."""
    slot = getattr(provider, "slot", None)
    return slot() if slot is not None else nullcontext()


# Query parameters whose value is a credential (?apikey=, ?token=, ?sig=).
_SECRET_PARAM = re.compile(r"pass|secret|token|key|private|auth|sig", re.IGNORECASE)


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries, to redact: the password of ``user:password@``
    (as written and decoded), the ``Basic`` value aiohttp sends for it, and the values
    of query parameters named like credentials. A vendor that echoes the request in its
    error answer would otherwise put them in the logs and in ``last_error``."""
    try:
        parts = urlsplit(url)
        password, user = parts.password, parts.username or ""
    except ValueError:
        return []
    found: list[str] = []
    if password:
        plain = f"{unquote(user)}:{unquote(password)}"
        found += [password, unquote(password), base64.b64encode(plain.encode()).decode()]
    found += [v for k, v in parse_qsl(parts.query) if _SECRET_PARAM.search(k)]
    for pair in parts.query.split("&"):
        name, _, raw = pair.partition("=")
        if _SECRET_PARAM.search(name):
            found.append(raw)  # as written (percent-encoded), as a URL is echoed
    # Very short values would blank out ordinary words and hide nothing.
    return [s for s in dict.fromkeys(found) if len(s) >= 4]
