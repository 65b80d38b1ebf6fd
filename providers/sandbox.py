"""The sandbox: a real provider with no network, for demos, local runs and tests.

It accepts every content type on its configured ``channels``, answers with ids like
``sbx-<uuid>``, and reports back the way a vendor does: through webhooks. Instead of
calling the engine over HTTP it asks ``ProviderHost.schedule_callback`` to replay a
body later, durably; the engine then runs it through ``parse_webhook`` exactly as it
runs a real vendor's webhook.

Its webhook format is disparo's generic one (``providers.generic_webhook``)::

    {"statuses": [{"id": "sbx-…", "key": "<idempotency key>", "status": "delivered",
                   "at": "2024-05-01T12:00:00Z"}]}
    {"inbound": [{"from": "+5511999999999", "type": "reply" | "button" | "choice",
                  "text": "…", "button_id": "…", "at": "…", "id": "…"}]}

For every accepted message it schedules ``sent`` at once, ``delivered`` after
``delivered_after`` and ``read`` after ``read_after`` (both measured from the send;
``null`` means never). Its own callbacks leave ``at`` out: the status happens when
the callback runs, on whatever clock the engine uses. Inbound bodies are what a
test or a demo posts to ``POST /webhooks/<name>`` to play the contact.

A contact address (phone, or the local part of an email address) ending in
``fail_suffix`` is accepted and then gets a ``failed`` callback after
``delivered_after``, like a vendor that takes a message and cannot deliver it.

Resending with the same idempotency key returns the same id and schedules nothing
new. The id is derived from the key, so that stays true across restarts; the
in-memory record of keys only avoids scheduling the callbacks twice.

Config (``config/disparo.yaml``)::

    sandbox:
      type: sandbox
      delivered_after: 1s      # seconds as a number, or 500ms, 1s, 2m, 1h, 1m30s; null: never
      read_after: 5s           # null: never read
      fail_suffix: "0000"      # null: nothing fails
      channels: [whatsapp, sms, email]
      webhook_secret: null
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from engine.errors import ProviderRejected
from engine.models import Channel, MessageStatus, OutboundMessage, SendResult
from providers.base import (
    CONTENT_TYPES,
    Capabilities,
    ParsedWebhook,
    ProviderConfig,
    ProviderHost,
    mask_phone,
)
from providers.generic_webhook import parse_generic_webhook, status_body

log = logging.getLogger("disparo.providers.sandbox")

ALL_CHANNELS: tuple[Channel, ...] = ("whatsapp", "sms", "email")
# Bounds memory on long demo runs; older keys still get their deterministic id back.
_REMEMBERED_KEYS = 100_000
_ID_NAMESPACE = uuid.UUID("6f2c1d8e-3b1a-4c55-9a57-5d1f0e2b7a10")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_delay(value: object) -> float | None:
    """Seconds from ``2``, ``1.5``, ``"500ms"``, ``"1s"``, ``"2m"``, ``"1m30s"``; ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_WHOLE.match(value.replace(" ", "")):
        text = value.replace(" ", "")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    else:
        raise ValueError(f"{value!r} is not a delay; write seconds (2) or 500ms, 1s, 2m, 1m30s")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a delay is zero or more")
    return seconds


Delay = Annotated[float | None, BeforeValidator(parse_delay)]


class SandboxConfig(ProviderConfig):
    """``type: sandbox`` settings; delays are seconds measured from the send."""

    type: Literal["sandbox"] = "sandbox"
    delivered_after: Delay = 1.0
    read_after: Delay = 5.0
    fail_suffix: str | None = Field(default="0000", min_length=1)
    channels: tuple[Channel, ...] = ALL_CHANNELS

    @field_validator("channels")
    @classmethod
    def _some_channel(cls, channels: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if not channels:
            raise ValueError("list at least one channel (whatsapp, sms, email)")
        return tuple(dict.fromkeys(channels))

    @model_validator(mode="after")
    def _read_after_delivery(self) -> SandboxConfig:
        delivered, read = self.delivered_after, self.read_after
        if delivered is not None and read is not None and read < delivered:
            raise ValueError(
                f"read_after ({read:g}s) is shorter than delivered_after ({delivered:g}s); "
                "both count from the send, so a message would be read before it arrives"
            )
        return self


class SandboxProvider:
    """Provider protocol implementation that delivers nowhere and reports back on schedule."""

    config_model: ClassVar[type[ProviderConfig]] = SandboxConfig

    def __init__(self, name: str, config: SandboxConfig, host: ProviderHost) -> None:
        self.name = name
        self.config = config
        self.host = host
        self.capabilities = Capabilities(
            channels=frozenset(config.channels),
            content_types=CONTENT_TYPES,
            # A null read_after plays contacts who never read; the sandbox can still report reads.
            read_receipts=True,
            idempotency_key=True,
        )
        self._accepted: OrderedDict[str, str] = OrderedDict()

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    def build_request(self, message: OutboundMessage) -> Mapping[str, Any]:
        """The body the sandbox "sends": ``{"to", "channel", "content", "key"}``."""
        return {
            "to": self._address(message),
            "channel": message.channel,
            "content": message.content.model_dump(mode="json"),
            "key": message.idempotency_key,
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        """Accept the message and schedule its status callbacks.

        Raises ``ProviderRejected`` (nothing sent) for a channel the sandbox is not
        configured for or a contact without an address on that channel. Errors of the
        host while scheduling (the store) propagate unchanged: the send is safe to
        repeat with the same key.
        """
        address = self._address(message)
        key = message.idempotency_key
        provider_id = self.provider_id_for(key)
        if key in self._accepted:
            self._accepted.move_to_end(key)
            log.info(
                "sandbox %s: message %s resent with a known key; same id %s, nothing new scheduled",
                self.name,
                message.message_id,
                provider_id,
            )
            return SendResult(provider_message_id=provider_id, raw={"id": provider_id})
        # Claimed before the awaits so a concurrent resend with this key is a duplicate too.
        self._accepted[key] = provider_id
        try:
            for delay, body in self._callbacks(provider_id, key, address):
                await self.host.schedule_callback(self.name, delay, body)
        except BaseException:
            self._accepted.pop(key, None)
            raise
        while len(self._accepted) > _REMEMBERED_KEYS:
            self._accepted.popitem(last=False)
        log.debug(  # the dispatcher logs every send at info already
            "sandbox %s: accepted message %s for %s via %s as %s",
            self.name,
            message.message_id,
            _masked(message.channel, address),
            message.channel,
            provider_id,
        )
        return SendResult(provider_message_id=provider_id, raw={"id": provider_id})

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], received_at: datetime
    ) -> ParsedWebhook:
        """Parse the sandbox's callbacks and inbound bodies (``providers.generic_webhook``)."""
        return parse_generic_webhook(body, provider=self.name, received_at=received_at)

    def provider_id_for(self, idempotency_key: str) -> str:
        """The id this instance gives every message sent with ``idempotency_key``."""
        return f"sbx-{uuid.uuid5(_ID_NAMESPACE, f'{self.name}:{idempotency_key}')}"

    def _address(self, message: OutboundMessage) -> str:
        if message.channel not in self.config.channels:
            allowed = ", ".join(self.config.channels)
            raise ProviderRejected(
                f"sandbox {self.name} does not send {message.channel}; its channels are {allowed}",
                left=False,
            )
        contact = message.contact
        address = contact.email if message.channel == "email" else contact.phone
        if not address:
            wanted = "email address" if message.channel == "email" else "phone number"
            raise ProviderRejected(
                f"contact {contact.id} has no {wanted} for {message.channel}", left=False
            )
        return address

    def _callbacks(self, provider_id: str, key: str, address: str) -> list[tuple[float, bytes]]:
        def body(status: MessageStatus, code: str | None = None, why: str | None = None) -> bytes:
            return status_body(
                provider_message_id=provider_id,
                idempotency_key=key,
                status=status,
                error_code=code,
                error_message=why,
            )

        config = self.config
        if config.fail_suffix and address.split("@")[0].endswith(config.fail_suffix):
            failed = body(
                MessageStatus.FAILED,
                code="undeliverable",
                why=f"the address ends in {config.fail_suffix} (sandbox fail_suffix)",
            )
            return [(config.delivered_after or 0.0, failed)]
        callbacks = [(0.0, body(MessageStatus.SENT))]
        if config.delivered_after is not None:
            callbacks.append((config.delivered_after, body(MessageStatus.DELIVERED)))
        if config.read_after is not None:
            callbacks.append((config.read_after, body(MessageStatus.READ)))
        return callbacks


def _masked(channel: Channel, address: str) -> str:
    if channel != "email":
        return mask_phone(address)
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
