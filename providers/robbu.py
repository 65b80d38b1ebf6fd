"""Robbu Invenio: one ``POST /v1/sendmessage`` per message, for WhatsApp, SMS and e-mail.

Authentication (``providers.robbu_login``): ``POST /v1/login`` with
``{"Company", "Username", "Password"}`` answers an ``access_token`` that lasts years;
logging in again invalidates the previous token. The token is fetched on the first
send, kept, and sent as ``Authorization: Bearer <token>``. Only a 401 renews it, once
for all concurrent sends; a 401 with the renewed token is ``ProviderAuthError``, never
a login loop. With a store behind the engine the token is kept there, one per API
user for every engine process on that store, and renewed by exactly one of them
(``providers.robbu_login``); a restart keeps it.

The body (``providers.robbu_request``; ``build_request`` shows it with the private
token masked as ``***`` because ``disparo simulate`` prints and stores it)::

    {"invenioPrivateToken": private_token,
     "text": "…",                       # always present, "" for templates
     "emailSubject": "",                # the subject of email content
     "channel": 3,                      # email 1, sms 2, whatsapp 3 (the message's channel)
     "templateName": "",                # the template id from config/templates.yaml
     "attendantUserName": "",           # hints["attendant"]: the handoff step that follows
     "templateParameters": [{"parameterName": "Cliente", "parameterValue": "Roberto"}],
     "source": {"countryCode": 55, "phoneNumber": 11999999999, "prospect": false},
     "destination": {"countryCode": 55, "phoneNumber": 11988887777, "email": ""},
     "discardSettings": {"recentContactLastHours": 4, "InAttendance": true},
     "contact": {"name", "customCode", "id", "tag", "jokers": [5 strings],
                 "walletClientCode", "updateIfExists"},
     "files": [{"address": url, "base64": data, "name": "boleto.pdf"}]}   # only with a file

- content: text -> ``text``; media (WhatsApp) -> its caption in ``text`` and one file;
  template -> ``templateName`` + ``templateParameters`` (named params by name, a tuple
  as ``"1"``, ``"2"``, … as the carousel example does; a parameter that is a file of
  Invenio's media library, ``https://storage.robbu.global/v2/file/<id>``, needs its
  file extension at the end, as the carousel note says, and is refused without one)
  and its ``header_media`` as the one file a template may carry; email (channel
  email only) -> ``text`` + ``emailSubject``. Robbu has no reply buttons, lists or
  locations: those, and content a channel cannot carry (files by SMS, text without a
  subject by e-mail), are refused before sending (``ProviderRejected``, ``left=False``).
- ``destination``: the E.164 phone split into country code and national number (as
  numbers, like the document); by e-mail only ``{"email"}``; by SMS, like the document's
  SMS example, ``prospect`` instead of ``email``. ``source`` is sent only when configured
  (the SMS example has none).
- ``discardSettings``: ``recentContactLastHours`` is ``hints["recent_contact_hours"]``
  rounded down (0 without the rule; 0 on a run's follow-up, as Robbu would count the
  run's own earlier message: ``engine.provider_hints``); ``InAttendance`` is true when the flow's
  ``in_attendance`` is ``skip`` or ``defer``. Robbu then discards a message to a
  contact an operator attends in Invenio ("message not sent: contact in attendance"),
  which disparo may not know of: that answer is a ``ProviderDiscarded``, and the
  flow's ``in_attendance`` skips or defers the message as if disparo had seen the
  attendance itself. (`disparo check` refuses ``in_attendance: skip`` together with
  an ``attendantUserName``, which Robbu would refuse every time.)
- ``contact``: ``name`` from the contact; ``customCode``, ``id`` (CPF/CNPJ) and ``tag``
  from its context keys ``custom_code``, ``cpf_cnpj`` (or ``cpf``, ``cnpj``) and ``tag``;
  ``jokers`` from ``joker1`` … ``joker5`` (300 characters each, 3000 for the fifth; a
  longer value is refused naming the field, never cut); ``walletClientCode`` and
  ``updateIfExists`` from the config.

Answers: 2xx is sent (Robbu returns no message id, so ``provider_message_id`` is None;
a 2xx whose body says the message was not sent is ``ProviderRejected``); 400 ->
``ProviderRejected`` with Robbu's message, except a 400 about ``invenioPrivateToken``;
that one, a 404 ("URL incorreta": a wrong ``base_url``) and a 401 after one re-login
are ``ProviderAuthError``: the instance is set up wrong, not the message, so the
engine pauses the provider and retries instead of failing every message; 429 ->
``ProviderRateLimited``; 5xx -> ``ProviderUnavailable``; transport failures as in
``providers.transport``. Robbu dedupes nothing, so an
ambiguous send is never resent blindly (``idempotency_key=False``).

Statuses: the document describes no status or inbound webhook (delivery failures are
only in Invenio Center's reports), so ``webhooks`` and ``read_receipts`` are false and
``parse_webhook`` refuses every body with that explanation.

Config (``config/disparo.yaml``)::

    robbu_whatsapp:
      type: robbu
      base_url: https://api.robbu.global   # with or without /v1
      company: ${ROBBU_COMPANY}
      username: ${ROBBU_USERNAME}          # a user of type API
      password: ${ROBBU_PASSWORD}
      private_token: ${ROBBU_PRIVATE_TOKEN}
      channel: whatsapp                    # whatsapp=3, sms=2, email=1; omit: the message's
      source: {country_code: 55, phone_number: "11999999999", prospect: false}
      wallet_client_code: comercial
      update_if_exists: false              # let the send update the contact in Invenio
      timeout: 15
      max_in_flight: 64
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from engine.errors import ProviderAuthError, ProviderDiscarded, ProviderError, ProviderRejected
from engine.models import Channel, OutboundMessage, SendResult
from providers.base import (
    Capabilities,
    ParsedWebhook,
    ProviderConfig,
    ProviderHost,
    config_error,
    mask_phone,
    mask_phone_in,
    preparing,
    vendor_message,
)
from providers.robbu_login import RobbuLogin
from providers.robbu_request import CONTENT_BY_CHANNEL, Account, Source, sendmessage_body
from providers.transport import Answer, HttpTransport, Redactor

log = logging.getLogger("disparo.providers.robbu")

ALL_CHANNELS: tuple[Channel, ...] = ("whatsapp", "sms", "email")
MASK = "***"
NOT_SENT = "message not sent"  # how Robbu's refusals begin ("… contact in attendance")
IN_ATTENDANCE = "contact in attendance"  # the refusal discardSettings.InAttendance causes
PRIVATE_TOKEN = "invenioprivatetoken"  # a 400 naming it is about the account, not the message


class RobbuSource(BaseModel):
    """The sending line: ``{country_code: 55, phone_number: "11999999999", prospect: false}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    country_code: int = Field(ge=1, le=999)
    phone_number: str
    prospect: bool = False

    @field_validator("phone_number", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError("write the line's number with its area code, e.g. '11999999999'")
        digits = "".join(c for c in value if c not in " -().")
        if not digits.isdigit() or not 6 <= len(digits) <= 14:
            raise ValueError(
                f"{value!r} is not a phone number with area code and without the country "
                "code, e.g. '11999999999'"
            )
        return digits

    @field_validator("phone_number")
    @classmethod
    def _national(cls, digits: str, info: ValidationInfo) -> str:
        """Robbu takes the country code apart (``countryCode``): a number that repeats
        it names a line that does not exist."""
        code = info.data.get("country_code")
        if code is None:
            return digits  # country_code itself is wrong; that error says so
        prefix = str(code)
        repeated = digits.startswith(prefix) and (
            len(digits) - len(prefix) in (10, 11) if code == 55 else len(prefix + digits) > 15
        )
        if repeated:
            national = digits[len(prefix) :]
            raise ValueError(
                f"{digits!r} starts with the country code {code}, which goes in "
                f"country_code; write phone_number without it: {national!r}"
            )
        if code == 55 and len(digits) not in (10, 11):
            raise ValueError(
                f"{digits!r} is not a Brazilian number: write the area code (DDD) and the "
                "number, 10 or 11 digits without the country code, e.g. '11999999999'"
            )
        return digits


class RobbuConfig(ProviderConfig):
    """``type: robbu`` settings; password and private token are ``SecretStr``."""

    type: Literal["robbu"] = "robbu"
    base_url: str = "https://api.robbu.global"
    company: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: SecretStr
    private_token: SecretStr
    channel: Channel | None = None
    source: RobbuSource | None = None
    wallet_client_code: str = ""
    update_if_exists: bool = False
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
        # The document writes the endpoints as https://api.robbu.global/v1/login and
        # /v1/sendmessage, so a base with /v1 is as natural as one without: both work.
        return url.rstrip("/").removesuffix("/v1")

    @field_validator("password", "private_token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("is empty; set it (usually from an environment variable)")
        return value


class RobbuProvider:
    """Provider protocol implementation for Robbu Invenio's SendMessage API."""

    config_model: ClassVar[type[ProviderConfig]] = RobbuConfig

    def __init__(self, name: str, config: RobbuConfig, host: ProviderHost) -> None:
        self.name = name
        self.config = config
        self.host = host
        channels = (config.channel,) if config.channel else ALL_CHANNELS
        self.capabilities = Capabilities(
            channels=frozenset(channels),
            content_types=frozenset().union(*(CONTENT_BY_CHANNEL[c] for c in channels)),
            files_per_template=1,
            read_receipts=False,
            idempotency_key=False,
            webhooks=False,
            attendant_conflicts_with_in_attendance=True,
        )
        private_token = config.private_token.get_secret_value()
        password = config.password.get_secret_value()
        self._redact = Redactor([private_token, password])
        self._http = HttpTransport(
            name, timeout=config.timeout, max_in_flight=config.max_in_flight, redact=self._redact
        )
        self.login = RobbuLogin(
            name,
            url=f"{config.base_url}/v1/login",
            company=config.company,
            username=config.username,
            password=password,
            http=self._http,
            redact=self._redact,
            lease=2 * config.timeout + 15,
        )
        self._send_url = f"{config.base_url}/v1/sendmessage"
        source = config.source
        self._account = Account(
            provider=name,
            private_token=private_token,
            source=None
            if source is None
            else Source(
                country_code=source.country_code,
                phone_number=int(source.phone_number),
                prospect=source.prospect,
            ),
            wallet_client_code=config.wallet_client_code,
            update_if_exists=config.update_if_exists,
        )

    async def start(self) -> None:
        """Open the connection pool; the login waits for the first send."""
        self.login.share_through(self.host.provider_state)
        await self._http.start(self.host.provider_state)

    async def close(self) -> None:
        """Drop any login in flight and close the pool; safe to call twice."""
        self.login.close()
        await self._http.close()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """What one send needs before its request: a connection slot and a token (the
        first send logs in here, in that slot)."""
        async with self._http.slot():
            await self._token()
            yield

    def build_request(self, message: OutboundMessage) -> Mapping[str, Any]:
        """The SendMessage body (module docstring) with ``invenioPrivateToken`` masked."""
        return {**self._body(message), "invenioPrivateToken": MASK}

    async def send(self, message: OutboundMessage) -> SendResult:
        """POST the message with the kept token; renew it once on a 401."""
        try:
            body = json.dumps(self._body(message), ensure_ascii=False).encode()
            async with self.slot():
                token = await self._token()
                answer = await self._post(body, token)
                if answer.status == 401:
                    log.info(
                        "robbu %s: the access token was refused (401); logging in again",
                        self.name,
                    )
                    answer = await self._post(body, await self.login.renew(token))
            if answer.status == 401:
                raise self._refused_again(answer)
            if not answer.ok:
                raise self._status_error(answer)
            result = self._accepted(answer)
        except ProviderError as exc:
            # A discard the flow asked for (InAttendance) is routine, not a problem.
            log.log(
                logging.INFO if isinstance(exc, ProviderDiscarded) else logging.WARNING,
                "robbu %s: message %s to %s: %s: %s",
                self.name,
                message.message_id,
                _recipient(message),
                exc.code,
                _masked(str(exc), message),
            )
            raise
        log.debug(
            "robbu %s: message %s to %s accepted (channel %s)",
            self.name,
            message.message_id,
            _recipient(message),
            message.channel,
        )
        return result

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], received_at: datetime
    ) -> ParsedWebhook:
        """Refuse every body: Robbu's SendMessage API delivers no status webhooks."""
        raise ProviderRejected(
            f"robbu provider {self.name} takes no webhooks: Robbu's SendMessage API "
            "documents no status or inbound callback (delivery and read statuses are only "
            "in Invenio Center's reports), so nothing should post to this URL",
            left=False,
        )

    # ------------------------------------------------------------------ internals

    def _body(self, message: OutboundMessage) -> dict[str, Any]:
        if self.config.channel and message.channel != self.config.channel:
            raise ProviderRejected(
                f"robbu provider {self.name} sends on channel {self.config.channel} only "
                f"(config `channel`); this message is for {message.channel}",
                left=False,
            )
        return sendmessage_body(message, self._account)

    async def _token(self) -> str:
        with preparing():  # a login is not the message: nothing of it has left
            return await self.login.token()

    async def _post(self, body: bytes, token: str) -> Answer:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return await self._http.request("POST", self._send_url, body=body, headers=headers)

    def _status_error(self, answer: Answer) -> ProviderError:
        error = self._http.status_error(answer)
        said = error.vendor_message
        if answer.status == 404:
            return config_error(
                self.name,
                f"{self.name}: Robbu answered 404 (URL incorreta) to POST {self._send_url}"
                + (f": {said}" if said else ""),
                setting="base_url",
                status=404,
                vendor_message=said,
            )
        if answer.status == 400 and said and PRIVATE_TOKEN in said.lower():
            return config_error(
                self.name,
                f"{self.name}: Robbu refused the private token (400: {said}); copy it from "
                "Invenio Center, Configurações > Conta",
                setting="private_token",
                status=400,
                vendor_message=said,
            )
        return self._discarded(said, answer.status) or error

    def _discarded(self, said: str | None, status: int) -> ProviderDiscarded | None:
        """Robbu's discard of a contact in attendance, which ``InAttendance: true``
        asked for: the flow's ``in_attendance`` decides what follows, not a failure."""
        if said is None or IN_ATTENDANCE not in said.lower():
            return None
        return ProviderDiscarded(
            f"{self.name} held the message back: the contact is in attendance in Invenio ({said})",
            rule="in_attendance",
            status=status,
            vendor_message=said,
        )

    def _refused_again(self, answer: Answer) -> ProviderAuthError:
        said = self._http.status_error(answer).vendor_message
        return ProviderAuthError(
            f"{self.name}: Robbu refused a freshly issued access token too (401)"
            + (f": {said}" if said else "")
            + "; not logging in again: check the API user's permissions",
            status=401,
            vendor_message=said,
        )

    def _accepted(self, answer: Answer) -> SendResult:
        try:
            data: Any = json.loads(answer.body) if answer.body.strip() else None
        except (ValueError, RecursionError):
            data = None
        said = vendor_message(answer.body, limit=300)
        refused = isinstance(data, dict) and data.get("success") is False
        if refused or (said is not None and said.lower().startswith(NOT_SENT)):
            words = self._redact(said) if said else None
            discarded = self._discarded(words, answer.status)
            if discarded is not None:
                raise discarded
            raise ProviderRejected(
                f"{self.name} answered {answer.status} but did not send the message"
                + (f": {words}" if words else ""),
                status=answer.status,
                vendor_message=words,
            )
        return SendResult(provider_message_id=None, raw=data if isinstance(data, dict) else {})


def _masked(text: str, message: OutboundMessage) -> str:
    """``text`` (Robbu's words may echo the destination) with the contact's address
    masked as in ``_recipient``."""
    if message.channel != "email":
        return mask_phone_in(text, message.contact.phone)
    address = message.contact.email
    return text.replace(address, _recipient(message)) if address else text


def _recipient(message: OutboundMessage) -> str:
    if message.channel != "email":
        return mask_phone(message.contact.phone)
    domain = (message.contact.email or "").rpartition("@")[2]
    return f"***@{domain}" if domain else "<no e-mail>"
