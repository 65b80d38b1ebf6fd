"""Altu/Zenvia outbound: WhatsApp templates and rich notifications through an Altu bot.

One ``POST`` per message to the integration URL Altu generates
(``https://outbound.ms.altubots.com/zenvia/<slug>/<integration id>``) with
``Content-Type: application/json`` and ``Authorization: <altu token>`` — the bare
token, no ``Bearer`` prefix (a configured ``Bearer ...`` token is refused). The body
(``build_request``, also what ``disparo simulate`` shows; ``providers.altu_contents``
builds it)::

    {"destination": "35988001234",                      # DDD + number, as documented
     "templateId": "<template id>", "fields": {"name": "Maria"},        # a Template
     "contents": [{"type": "file" | "button" | "list" | "location", ...}],  # or rich
     "context": {"disparo_flow": …, "disparo_step": …, "disparo_run": …},
     "externalId": "<idempotency key>",
     "restartContact": true|false,             # only when hints["restart_contact"]
     "inactivityTime": 10}                     # whole minutes from hints["inactivity_minutes"]

``externalId`` is the message's stable idempotency key; Altu echoes it in the send
answer and in the status webhook, so statuses match even without Altu's id.
``inactivityTime`` is the vendor's second guard behind disparo's ``inactivity`` rule
(the document's unit is minutes; rounded down so it never blocks more than the rule).
The context carries disparo's flow, step and run so the Altu bot can route a reply.
The hints ``recent_contact_hours``, ``in_attendance`` and ``attendant`` and a
template's ``language`` have no Altu counterpart: the engine's rules enforce them.

The documented answer ``{"status": "pending", "external_id", "message_id",
"contact_id"}`` means accepted: ``SendResult(provider_message_id=str(message_id),
status=sent, raw=<the answer>)``. A 2xx whose ``status`` says it was not sent
(failed, rejected, error, ...) is ``ProviderRejected``; one that is not that JSON,
names another ``external_id`` or an undocumented status is ``ProviderAmbiguous``.

The document does not say that a repeated ``externalId`` is deduplicated, so
``capabilities.idempotency_key`` is False: after an ambiguous attempt the engine
marks the message ambiguous instead of resending, and the status webhook (which
echoes ``external_id``) resolves it.

Failures: connect errors -> ``ProviderUnreachable``; a timeout or reset after the
request left -> ``ProviderAmbiguous``; 400 -> ``ProviderRejected`` with Altu's
``message``; 401/403 -> ``ProviderAuthError``; 404 (no integration at ``url``: a
wrong slug or integration id) -> ``ProviderAuthError`` naming ``url``, so the
provider pauses instead of failing every message; 429 -> ``ProviderRateLimited``;
5xx -> ``ProviderUnavailable`` (``providers.base.error_for_status``).

Status webhooks (``providers.altu_webhook``) come to ``POST /webhooks/<name>?token=
<webhook_secret>``; Altu signs nothing. Replies go to the Altu bot, not here: the bot
forwards button taps and answers to ``POST /v1/events``. The bot receives a tap as
the button's or row's ``id`` in text (the document's "input that reaches the bot"),
and a reply that is exactly such an id is taken as the tap (``engine.typed_choice``).

Config (``config/disparo.yaml``)::

    altu:
      type: altu
      url: https://outbound.ms.altubots.com/zenvia/<slug>/<integration id>
      token: ${ALTU_TOKEN}
      webhook_secret: ${ALTU_WEBHOOK_SECRET}
      timeout: 15
      max_in_flight: 64
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from engine.errors import ProviderAmbiguous, ProviderError, ProviderRejected
from engine.models import MessageStatus, OutboundMessage, SendResult
from providers.altu_contents import build_body
from providers.altu_webhook import parse_status_webhook
from providers.base import (
    Capabilities,
    ParsedWebhook,
    ProviderConfig,
    ProviderHost,
    config_error,
    mask_phone,
    mask_phone_in,
    one_line,
    url_secrets,
    vendor_message,
)
from providers.transport import Answer, HttpTransport, Redactor

log = logging.getLogger("disparo.providers.altu")

CAPABILITIES = Capabilities(
    channels=frozenset({"whatsapp"}),
    # The document shows templates and file, button, list and location contents only.
    content_types=frozenset({"template", "media", "buttons", "list", "location"}),
    files_per_template=0,
    media_kinds=frozenset({"image", "video", "audio", "document", "sticker"}),
    media_by_url_only=True,
    buttons_text_header=False,  # the only documented header is a file URL
    template_params_named=True,  # `fields` is a mapping
    read_receipts=True,  # Zenvia reports READ for WhatsApp
    idempotency_key=False,  # the document never says a repeated externalId is dropped
    webhooks=True,
)
ACCEPTED = frozenset({"pending", "sent"})
NOT_SENT = frozenset(
    {"failed", "error", "rejected", "refused", "canceled", "cancelled", "not_sent"}
)


class AltuConfig(ProviderConfig):
    """``type: altu`` settings. ``token`` is a ``SecretStr``: a printed config hides it."""

    type: Literal["altu"] = "altu"
    url: str
    token: SecretStr
    # The engine compares ``?token=`` against this string; repr=False keeps it out of logs.
    webhook_secret: str | None = Field(default=None, repr=False)
    timeout: float = Field(default=15.0, gt=0)
    max_in_flight: int = Field(default=64, ge=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "url must be the integration's https:// address, like "
                "https://outbound.ms.altubots.com/zenvia/<slug>/<integration id>"
            )
        return url

    @field_validator("token")
    @classmethod
    def _bare_token(cls, token: SecretStr) -> SecretStr:
        value = token.get_secret_value()
        if not value.strip():
            raise ValueError("token is empty; use the altu token of the outbound integration")
        if value.lower().startswith("bearer "):
            raise ValueError(
                "Altu takes the bare token in Authorization; remove the 'Bearer ' prefix"
            )
        return token


class AltuProvider:
    """Provider protocol implementation for Altu's Zenvia outbound API."""

    config_model: ClassVar[type[ProviderConfig]] = AltuConfig

    def __init__(self, name: str, config: AltuConfig, host: ProviderHost) -> None:
        self.name = name
        self.config = config
        self.host = host
        self.capabilities = CAPABILITIES
        self._token = config.token.get_secret_value()
        secrets = (self._token, config.webhook_secret or "")
        # Very short values would blank out ordinary words and hide nothing.
        self._redact = Redactor([*(s for s in secrets if len(s) >= 4), *url_secrets(config.url)])
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
        """The JSON body posted to ``url`` (see the module docstring)."""
        return build_body(self.name, message)

    async def send(self, message: OutboundMessage) -> SendResult:
        """POST the message; the accepted answer or a typed ``ProviderError``."""
        phone = message.contact.phone
        try:
            body = json.dumps(self.build_request(message), ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json", "Authorization": self._token}
            answer = await self._http.request("POST", self.config.url, body=body, headers=headers)
            if not answer.ok:
                raise self._status_error(answer)
            result = self._accepted(answer, message)
        except ProviderError as exc:
            log.warning(
                "altu %s: message %s to %s: %s: %s",
                self.name,
                message.message_id,
                mask_phone(phone),
                exc.code,
                mask_phone_in(str(exc), phone),
            )
            raise
        log.debug(
            "altu %s: message %s to %s accepted as %s",
            self.name,
            message.message_id,
            mask_phone(phone),
            result.provider_message_id,
        )
        return result

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], received_at: datetime
    ) -> ParsedWebhook:
        """Parse Altu's status webhook (``providers.altu_webhook``); nothing is signed."""
        return parse_status_webhook(body, provider=self.name, received_at=received_at)

    # ------------------------------------------------------------------ internals

    def _status_error(self, answer: Answer) -> ProviderError:
        words = altu_words(answer.body)
        if answer.status == 404:
            # Altu answers 404 only for a path it has no integration at: the slug or
            # integration id in `url` is wrong, so every send would be refused alike.
            said = self._redact(words) if words else None
            return config_error(
                self.name,
                f"{self.name}: Altu has no outbound integration at the configured url (404"
                + (f": {said}" if said else "")
                + "); copy the endpoint Altu generated for the integration",
                setting="url",
                status=404,
                vendor_message=said,
            )
        return self._http.status_error(answer, words)

    def _accepted(self, answer: Answer, message: OutboundMessage) -> SendResult:
        try:
            data: Any = json.loads(answer.body)
        except (ValueError, RecursionError):
            data = None
        words = altu_words(answer.body)
        said = self._redact(words) if words else None
        if not isinstance(data, dict):
            raise ProviderAmbiguous(
                f"{self.name} answered {answer.status} without the documented JSON answer; "
                "the message may have been accepted",
                status=answer.status,
                vendor_message=said,
            )
        echoed = data.get("external_id")
        if echoed is not None and str(echoed) != message.idempotency_key:
            raise ProviderAmbiguous(
                f"{self.name} answered {answer.status} for another externalId "
                f"({self._redact(str(echoed))[:80]!r}); the message may have been accepted",
                status=answer.status,
                vendor_message=said,
            )
        status = data.get("status")
        word = status.strip().lower() if isinstance(status, str) else None
        if word in NOT_SENT:
            raise ProviderRejected(
                f"{self.name} did not send the message (status {status!r})"
                + (f": {said}" if said else ""),
                status=answer.status,
                vendor_message=said,
            )
        if word not in ACCEPTED:
            raise ProviderAmbiguous(
                f"{self.name} answered {answer.status} with status {status!r}, which its "
                "document does not describe; the message may have been accepted",
                status=answer.status,
                vendor_message=said,
            )
        altu_id = data.get("message_id")
        if isinstance(altu_id, bool) or not isinstance(altu_id, int | str) or altu_id == "":
            # Statuses still match: the webhook echoes external_id, our key.
            log.warning(
                "altu %s: message %s was accepted without a message_id",
                self.name,
                message.message_id,
            )
            altu_id = None
        return SendResult(
            provider_message_id=None if altu_id is None else str(altu_id),
            status=MessageStatus.SENT,
            raw=data,
        )


def altu_words(body: bytes) -> str | None:
    """Altu's explanation in an error body: its ``message`` (a string or a list of
    strings) before the generic shapes ``providers.base.vendor_message`` knows."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    said = data.get("message") if isinstance(data, dict) else None
    if isinstance(said, list) and said and all(isinstance(s, str) for s in said):
        said = "; ".join(said)
    if isinstance(said, str) and said.strip():
        return one_line(said)
    return vendor_message(body)
