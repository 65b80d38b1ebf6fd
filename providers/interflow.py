"""Interflow (api.interflow.chat): WhatsApp through one connected Interflow channel.

One request per message: ``POST {base_url}/v1/messages/send`` with
``Authorization: Bearer <api_key>`` (a key with the ``messages:write`` permission)
and a JSON body ``{"channel_id", "to", "type", "content"}`` built by
``providers.interflow_body`` (its docstring has the table per content type). The
answer is ``201 {"success": true, "data": {"id": "msg_…", "status": "sent", …}}``;
``data.id`` becomes the provider message id the status webhooks name.

How answers map (the engine's retry policy keys on these types):

- 400 ``VALIDATION_ERROR`` and other 4xx -> ``ProviderRejected`` (final), with
  ``vendor_message`` like ``VALIDATION_ERROR: Campo 'to' é obrigatório [to: Campo
  obrigatório]``: something about this message;
- 422 ``CHANNEL_DISCONNECTED`` ("O canal está desconectado": the WhatsApp number
  dropped off, usually for minutes) -> ``ProviderUnavailable``, like a 5xx: the
  message is retried and the provider's circuit pauses the backlog meanwhile;
- 404 (``CHANNEL_NOT_FOUND``: a wrong ``channel_id``; any other 404: a wrong
  ``base_url``) and 401/403 -> ``ProviderAuthError``: the instance is set up wrong,
  so it pauses (logged as an error naming ``providers.<name>``) instead of failing
  every message; 5xx -> ``ProviderUnavailable``;
- 429 -> ``ProviderRateLimited`` with ``retry_after`` from ``Retry-After``, else
  ``X-RateLimit-Reset``, else one minute; our own limiter pauses as long;
- a 2xx without ``data.id`` -> ``ProviderAmbiguous``; a 2xx whose ``data.status`` is
  already ``failed`` -> ``ProviderRejected`` naming the id;
- transport failures as ``providers.transport`` says (refused -> unreachable,
  timeout or reset after the request left -> ambiguous).

Interflow documents no idempotency key, so a resend after an ambiguous answer could
deliver twice: ``idempotency_key`` is false and the engine never resends blindly.
It documents no reply buttons, lists, e-mail or template header files, so the
capabilities leave them out. Sends respect the plan's ``rate_limit`` through
``providers.interflow_rate_limit``: in the engine's store when the host offers one
(one budget per API key, shared by every engine process on that store), else in
memory. Status webhooks: ``providers.interflow_webhook``.

Config (``config/disparo.yaml``)::

    interflow:
      type: interflow
      base_url: https://api.interflow.chat     # or the sandbox, https://sandbox.api.interflow.chat
      api_key: ${INTERFLOW_API_KEY}
      channel_id: 550e8400-e29b-41d4-a716-446655440000
      rate_limit: 300/min                      # Starter 60, Professional 300, Enterprise 1000
      webhook_secret: ${INTERFLOW_WEBHOOK_SECRET}
      timeout: 15
      max_in_flight: 64
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from engine.errors import (
    ProviderAmbiguous,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from engine.models import MessageStatus, OutboundMessage, SendResult
from providers.base import (
    Capabilities,
    ParsedWebhook,
    ProviderConfig,
    ProviderHost,
    config_error,
    mask_phone,
    mask_phone_in,
    one_line,
    preparing,
    vendor_message,
)
from providers.interflow_body import request_body
from providers.interflow_rate_limit import (
    WINDOW_SECONDS,
    Monotonic,
    SendPacer,
    SendWindow,
    SharedSendWindow,
    Sleep,
    WallClock,
    budget_name,
    read_rate_limit_headers,
)
from providers.interflow_webhook import parse_interflow_webhook
from providers.transport import Answer, HttpTransport, Redactor

log = logging.getLogger("disparo.providers.interflow")

SEND_PATH = "/v1/messages/send"
_RATE = re.compile(r"^\s*(\d+)\s*/\s*min\s*$")
# A send waits this long in memory for a rate-limit slot; longer, the engine parks it.
MAX_SLOT_WAIT_SECONDS = 5.0
# The longest pause one answer can put on every Interflow send of the deployment (the
# window is shared by every process, and kept across restarts). Interflow's limits
# are per minute; a Retry-After of days is a vendor mistake, not a plan limit. As
# dispatcher.max_retry_after's default: after it, a send tries again, and a new 429
# pauses again.
MAX_PAUSE_SECONDS = 3600.0


class InterflowConfig(ProviderConfig):
    """``type: interflow`` settings; ``api_key`` is a ``SecretStr``."""

    type: Literal["interflow"] = "interflow"
    base_url: str = "https://api.interflow.chat"
    api_key: SecretStr
    channel_id: str
    rate_limit: str = "60/min"  # the smallest plan: never too fast for any account
    timeout: float = Field(default=15.0, gt=0)
    max_in_flight: int = Field(default=64, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an absolute http:// or https:// address")
        if parts.query or parts.fragment:
            raise ValueError("base_url takes no ?query or #fragment")
        # The API overview gives the base as https://api.interflow.chat/v1; both work.
        return url.rstrip("/").removesuffix("/v1")

    @field_validator("api_key")
    @classmethod
    def _bare_key(cls, key: SecretStr) -> SecretStr:
        value = key.get_secret_value()
        if not value.strip():
            raise ValueError("api_key is empty; set INTERFLOW_API_KEY")
        if value.lower().startswith("bearer "):
            raise ValueError("api_key is the key itself, without `Bearer `")
        if any(c.isspace() for c in value):
            raise ValueError("api_key has spaces or line breaks in it")
        return key

    @field_validator("channel_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise ValueError(
                f"channel_id {value!r} is not a UUID like 550e8400-e29b-41d4-a716-446655440000 "
                "(Interflow shows it in the channel's settings)"
            ) from None

    @field_validator("rate_limit")
    @classmethod
    def _per_minute(cls, value: str) -> str:
        found = _RATE.match(value)
        if found is None or int(found.group(1)) < 1:
            raise ValueError(
                f"rate_limit {value!r} is not like 300/min (requests per minute: "
                "Starter 60/min, Professional 300/min, Enterprise 1000/min)"
            )
        return f"{int(found.group(1))}/min"

    @property
    def per_minute(self) -> int:
        return int(self.rate_limit.partition("/")[0])


class InterflowProvider:
    """Provider protocol implementation for Interflow's messages API."""

    config_model: ClassVar[type[ProviderConfig]] = InterflowConfig

    def __init__(
        self,
        name: str,
        config: InterflowConfig,
        host: ProviderHost,
        *,
        monotonic: Monotonic = time.monotonic,
        wall_clock: WallClock = time.time,
        sleep: Sleep = asyncio.sleep,
        max_slot_wait: float = MAX_SLOT_WAIT_SECONDS,
    ) -> None:
        self.name = name
        self.config = config
        self.host = host  # its provider_state holds the shared rate limit
        self.capabilities = Capabilities(
            channels=frozenset({"whatsapp"}),
            content_types=frozenset({"text", "media", "location", "template"}),
            files_per_template=0,
            media_kinds=frozenset({"image", "video", "audio", "document"}),
            media_by_url_only=True,
            location_url=False,
            template_needs_language=True,
            read_receipts=True,
            idempotency_key=False,
            webhooks=True,
        )
        self._key = config.api_key.get_secret_value()
        self._url = f"{config.base_url}{SEND_PATH}"
        self._wall_clock = wall_clock
        self._redact = Redactor([self._key])
        self._http = HttpTransport(
            name, timeout=config.timeout, max_in_flight=config.max_in_flight, redact=self._redact
        )
        self.window: SendPacer = SendWindow(
            name, config.per_minute, monotonic=monotonic, sleep=sleep, max_wait=max_slot_wait
        )

    async def start(self) -> None:
        """Take the shared rate limit when the host has a store; open the pool."""
        state = self.host.provider_state
        if state is not None:
            self.window = SharedSendWindow(
                self.name,
                self.config.per_minute,
                budget=budget_name(self.config.base_url, self._key),
                state=state,
            )
            self._wall_clock = lambda: state.now().timestamp()  # the engine's clock
        await self._http.start(state)

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        await self._http.close()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """What one send needs before its request: a slot of the plan's rate limit,
        then a connection slot. ``ProviderRateLimited`` parks the send (nothing left)."""
        if self._http.holding:
            yield
            return
        with preparing():
            await self.window.acquire()
        async with self._http.slot():
            yield

    def build_request(self, message: OutboundMessage) -> Mapping[str, Any]:
        """The JSON body (``providers.interflow_body``); ``ProviderRejected`` if unsendable."""
        return request_body(message, channel_id=self.config.channel_id, provider=self.name)

    async def send(self, message: OutboundMessage) -> SendResult:
        """Wait for a rate-limit slot, POST the message, return Interflow's id.

        Raises a ``ProviderError`` subclass as the module docstring maps them.
        """
        try:
            body = json.dumps(self.build_request(message), ensure_ascii=False).encode()
            async with self.slot():
                answer = await self._http.request(
                    "POST",
                    self._url,
                    body=body,
                    headers={
                        "Authorization": f"Bearer {self._key}",
                        "Content-Type": "application/json",
                    },
                )
            await self._heed_rate_headers(answer)
            if not answer.ok:
                raise self._status_error(answer)
            result = self._accepted(answer)
        except ProviderError as exc:
            # Parking a send until the plan's window frees is routine, not a problem.
            routine = isinstance(exc, ProviderRateLimited) and exc.status is None
            log.log(
                logging.INFO if routine else logging.WARNING,
                "interflow %s: message %s to %s: %s: %s",
                self.name,
                message.message_id,
                mask_phone(message.contact.phone),
                exc.code,
                mask_phone_in(str(exc), message.contact.phone),
            )
            raise
        log.debug(
            "interflow %s: message %s to %s accepted as %s",
            self.name,
            message.message_id,
            mask_phone(message.contact.phone),
            result.provider_message_id,
        )
        return result

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], received_at: datetime
    ) -> ParsedWebhook:
        """Parse ``message.status_updated`` events (``providers.interflow_webhook``)."""
        return parse_interflow_webhook(body, provider=self.name, received_at=received_at)

    # ------------------------------------------------------------------ internals

    async def _heed_rate_headers(self, answer: Answer) -> None:
        said = read_rate_limit_headers(answer.headers, wall_now=self._wall_clock())
        if said.limit is not None and await self.window.heed_limit(said.limit):
            log.warning(
                "interflow %s: Interflow allows %d requests/min, less than rate_limit %s; "
                "sending at %d/min (set rate_limit to your plan's limit)",
                self.name,
                said.limit,
                self.config.rate_limit,
                said.limit,
            )
        if answer.status == 429:
            await self._pause(said.wait if said.wait is not None else WINDOW_SECONDS)
        elif said.remaining == 0 and said.reset_in:
            await self._pause(said.reset_in)

    async def _pause(self, seconds: float) -> None:
        if seconds > MAX_PAUSE_SECONDS:
            log.warning(
                "interflow %s: Interflow asked to wait %.0fs; pausing its sends %.0fs, the "
                "most one answer may pause them",
                self.name,
                seconds,
                MAX_PAUSE_SECONDS,
            )
        await self.window.pause(min(seconds, MAX_PAUSE_SECONDS))

    def _status_error(self, answer: Answer) -> ProviderError:
        words = _vendor_words(answer.body)
        said = self._redact(words) if words else None
        if answer.status == 429:
            wait = read_rate_limit_headers(answer.headers, wall_now=self._wall_clock()).wait
            return ProviderRateLimited(
                f"{self.name} is rate limiting (429)" + (f": {said}" if said else ""),
                status=429,
                vendor_message=said,
                retry_after=wait if wait is not None else WINDOW_SECONDS,
            )
        code = _error_code(answer.body)
        if answer.status == 422 and code == "CHANNEL_DISCONNECTED":
            return ProviderUnavailable(
                f"{self.name}: Interflow channel {self.config.channel_id} is disconnected "
                f"(422 {said}); reconnect its WhatsApp number in Interflow. Sends are "
                "retried and pause while it lasts",
                status=422,
                vendor_message=said,
            )
        if answer.status == 404 and code == "CHANNEL_NOT_FOUND":
            return config_error(
                self.name,
                f"{self.name}: Interflow has no channel {self.config.channel_id} for this "
                f"API key (404 {said})",
                setting="channel_id",
                status=404,
                vendor_message=said,
            )
        if answer.status == 404:
            return config_error(
                self.name,
                f"{self.name}: {self._url} does not exist (404" + (f": {said})" if said else ")"),
                setting="base_url",
                status=404,
                vendor_message=said,
            )
        return self._http.status_error(answer, said)

    def _accepted(self, answer: Answer) -> SendResult:
        try:
            document: Any = json.loads(answer.body)
        except (ValueError, RecursionError):
            document = None
        data = document.get("data") if isinstance(document, dict) else None
        found = data.get("id") if isinstance(data, dict) else None
        if not isinstance(found, str) or not found:
            said = _vendor_words(answer.body)
            raise ProviderAmbiguous(
                f"{self.name} answered {answer.status} without data.id; "
                "the message may have been accepted",
                status=answer.status,
                vendor_message=self._redact(said) if said else None,
            )
        assert isinstance(data, dict)
        assert isinstance(document, dict)
        if data.get("status") == "failed":
            raise ProviderRejected(
                f"{self.name} took the message as {found} and reports it failed",
                status=answer.status,
                vendor_message=f"message {found}: status failed",
            )
        return SendResult(provider_message_id=found, status=MessageStatus.SENT, raw=document)


def _error_code(body: bytes) -> str | None:
    """``error.code`` of Interflow's documented error body, if it has one."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    error = document.get("error") if isinstance(document, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _vendor_words(body: bytes, limit: int = 500) -> str | None:
    """``CODE: message [field: message; …]`` from Interflow's error body, else its text."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        said = ": ".join(str(p) for p in (code, message) if p) or "no message"
        details = error.get("details")
        if isinstance(details, list):
            fields = [
                f"{d.get('field')}: {d.get('message')}" if isinstance(d, dict) else str(d)
                for d in details
            ]
            if fields:
                said += f" [{'; '.join(fields)}]"
    else:
        return vendor_message(body, limit=limit)  # not the documented shape
    return one_line(said, limit)
