"""A provider for in-house gateways: one JSON POST per message to a configured URL.

The request body (also what ``build_request`` returns and ``disparo simulate`` shows)::

    {"message_id": "…", "idempotency_key": "…",
     "to": {"phone": "+5511999999999", "email": null},
     "channel": "whatsapp",
     "content": {"type": "text", "body": "Olá", "preview_url": false},
     "flow": "cobranca", "step": "lembrete",
     "hints": {"recent_contact_hours": 4}}

``content`` is the rendered content model dumped as JSON (``engine.models``). The
request carries the configured ``headers`` (their values are secrets: never logged,
scrubbed from every error) and, unless ``idempotency_header`` is null, the message's
idempotency key in that header; the gateway is expected to answer a repeated key
with the first answer, which lets the engine resend safely after an ambiguous try.

A 2xx answer must be JSON with the gateway's message id at ``id_field`` (dotted,
list indices as numbers: ``messages.0.id``); with ``id_field: null`` any 2xx is
accepted without an id and statuses are matched by the key. Status and inbound
webhooks use disparo's generic format (``providers.generic_webhook``).

How failures map (the engine's retry policy keys on these types):

- could not connect (refused, DNS, TLS) -> ``ProviderUnreachable`` (never left);
- timed out before the request was written -> ``ProviderUnavailable`` (never left);
- timed out, reset or disconnected after it was written -> ``ProviderAmbiguous``;
- a 2xx that is not JSON or has no id -> ``ProviderAmbiguous``;
- 429 / 5xx / 401 / other 4xx -> ``error_for_status`` with the vendor's message.

Config (``config/disparo.yaml``)::

    gateway:
      type: http
      url: https://gateway.internal/v1/messages
      headers: {Authorization: "Bearer ${GATEWAY_TOKEN}"}
      idempotency_header: Idempotency-Key
      id_field: messages.0.id
      timeout: 15
      max_in_flight: 64
      channels: [whatsapp, sms, email]
      content_types: [text, media, buttons, list, location, template, email]
      read_receipts: true
      webhook_secret: ${GATEWAY_WEBHOOK_SECRET}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from engine.errors import (
    ProviderAmbiguous,
    ProviderError,
    ProviderRejected,
)
from engine.models import Channel, OutboundMessage, SendResult
from providers.base import (
    CONTENT_TYPES,
    Capabilities,
    ParsedWebhook,
    ProviderConfig,
    ProviderHost,
    mask_phone,
    url_secrets,
    vendor_message,
)
from providers.generic_webhook import parse_generic_webhook
from providers.transport import HttpTransport, Redactor

log = logging.getLogger("disparo.providers.http")

ALL_CHANNELS: tuple[Channel, ...] = ("whatsapp", "sms", "email")


class HttpConfig(ProviderConfig):
    """``type: http`` settings. Header values are ``SecretStr`` so a printed config hides them."""

    type: Literal["http"] = "http"
    url: str
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    idempotency_header: str | None = Field(default="Idempotency-Key", min_length=1)
    id_field: str | None = "messages.0.id"
    timeout: float = Field(default=15.0, gt=0)
    max_in_flight: int = Field(default=64, ge=1)
    channels: tuple[Channel, ...] = ALL_CHANNELS
    content_types: tuple[str, ...] = tuple(sorted(CONTENT_TYPES))
    read_receipts: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http:// or https:// address")
        return url

    @field_validator("id_field")
    @classmethod
    def _dotted_path(cls, path: str | None) -> str | None:
        if path is not None and not all(path.split(".")):
            raise ValueError(f"{path!r} is not a dotted path like messages.0.id")
        return path

    @field_validator("channels")
    @classmethod
    def _some_channel(cls, channels: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if not channels:
            raise ValueError("list at least one channel (whatsapp, sms, email)")
        return tuple(dict.fromkeys(channels))

    @field_validator("content_types")
    @classmethod
    def _known_content(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(types) - CONTENT_TYPES)
        if unknown or not types:
            known = ", ".join(sorted(CONTENT_TYPES))
            raise ValueError(f"unknown content type(s) {unknown}; use some of: {known}")
        return tuple(dict.fromkeys(types))

    @model_validator(mode="after")
    def _one_authorization(self) -> HttpConfig:
        # aiohttp refuses to send both: every send crashed, retried until it gave up.
        if urlsplit(self.url).username is not None and any(
            h.lower() == "authorization" for h in self.headers
        ):
            raise ValueError(
                "url holds user:password@ and headers sets Authorization; keep one of them"
            )
        return self

    @model_validator(mode="after")
    def _key_header_not_doubled(self) -> HttpConfig:
        name = (self.idempotency_header or "").lower()
        if name and name in (h.lower() for h in self.headers):
            raise ValueError(
                f"headers sets {self.idempotency_header!r}, which carries the idempotency key"
            )
        return self


class HttpProvider:
    """Provider protocol implementation for a gateway that speaks the body above."""

    config_model: ClassVar[type[ProviderConfig]] = HttpConfig

    def __init__(self, name: str, config: HttpConfig, host: ProviderHost) -> None:
        self.name = name
        self.config = config
        self.host = host
        self.capabilities = Capabilities(
            channels=frozenset(config.channels),
            content_types=frozenset(config.content_types),
            read_receipts=config.read_receipts,
            idempotency_key=config.idempotency_header is not None,
        )
        self._headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        self._redact = Redactor(
            [*_secret_fragments(self._headers.values()), *url_secrets(config.url)]
        )
        self._path = config.id_field.split(".") if config.id_field else None
        self._http = HttpTransport(
            name, timeout=config.timeout, max_in_flight=config.max_in_flight, redact=self._redact
        )

    async def start(self) -> None:
        """Open the one connection pool, sized to ``max_in_flight``."""
        await self._http.start(self.host.provider_state)

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        await self._http.close()

    def slot(self) -> AbstractAsyncContextManager[None]:
        """One of the ``max_in_flight`` connection slots, for one send."""
        return self._http.slot()

    def build_request(self, message: OutboundMessage) -> Mapping[str, Any]:
        """The JSON body posted to ``url`` (documented in the module docstring)."""
        return {
            "message_id": message.message_id,
            "idempotency_key": message.idempotency_key,
            "to": {"phone": message.contact.phone, "email": message.contact.email},
            "channel": message.channel,
            "content": message.content.model_dump(mode="json"),
            "flow": message.flow,
            "step": message.step,
            "hints": dict(message.hints),
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        """POST the message; return the gateway's id or raise a typed ``ProviderError``.

        At most ``max_in_flight`` requests are open at once; the rest wait here.
        """
        try:
            self._check_route(message)
            body = json.dumps(self.build_request(message), ensure_ascii=False, default=str)
            headers = {**self._headers, "Content-Type": "application/json"}
            if self.config.idempotency_header:
                headers[self.config.idempotency_header] = message.idempotency_key
            answer = await self._http.request(
                "POST", self.config.url, body=body.encode(), headers=headers
            )
            if not answer.ok:
                raise self._http.status_error(answer)
            result = self._accepted(answer.status, answer.body)
        except ProviderError as exc:
            log.warning("http %s: message %s: %s: %s", self.name, message.message_id, exc.code, exc)
            raise
        log.debug(
            "http %s: message %s for %s accepted as %s",
            self.name,
            message.message_id,
            mask_phone(message.contact.phone),
            result.provider_message_id,
        )
        return result

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], received_at: datetime
    ) -> ParsedWebhook:
        """Parse the gateway's status/inbound webhook (``providers.generic_webhook``)."""
        return parse_generic_webhook(body, provider=self.name, received_at=received_at)

    # ------------------------------------------------------------------ internals

    def _check_route(self, message: OutboundMessage) -> None:
        why = None
        if message.channel not in self.config.channels:
            why = f"does not send {message.channel} (channels: {', '.join(self.config.channels)})"
        elif message.content.type not in self.config.content_types:
            why = f"does not take {message.content.type} content"
        elif message.channel == "email" and not message.contact.email:
            why = f"has no email address for contact {message.contact.id}"
        elif message.channel != "email" and not message.contact.phone:
            why = f"has no phone number for contact {message.contact.id}"
        if why is not None:
            raise ProviderRejected(f"http provider {self.name} {why}", left=False)

    def _accepted(self, status: int, raw: bytes) -> SendResult:
        try:
            data: Any = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            data = _NOT_JSON
        if self._path is None:
            return SendResult(provider_message_id=None, raw=data if isinstance(data, dict) else {})
        found = _dig(data, self._path) if data is not _NOT_JSON else None
        if isinstance(found, int) and not isinstance(found, bool):
            found = str(found)
        if not isinstance(found, str) or not found:
            why = (
                "the body is not JSON"
                if data is _NOT_JSON
                else f"nothing at {self.config.id_field!r}"
            )
            said = vendor_message(raw, limit=200)
            raise ProviderAmbiguous(
                f"{self.name} answered {status} without a message id ({why}); "
                "the message may have been accepted",
                status=status,
                vendor_message=self._redact(said) if said else None,
            )
        return SendResult(provider_message_id=found, raw=data if isinstance(data, dict) else {})


_NOT_JSON = object()


def _dig(data: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _secret_fragments(values: Any) -> list[str]:
    """Every header value and its last word (``Bearer xyz`` -> also ``xyz``), longest first."""
    found: set[str] = set()
    for value in values:
        found.add(value)
        found.add(value.split()[-1] if value.split() else value)
    # Very short values would blank out ordinary words and hide nothing.
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)
