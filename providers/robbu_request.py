"""The body of Robbu's ``POST /v1/sendmessage``, built from one ``OutboundMessage``.

Pure functions: no I/O, no token. ``providers.robbu`` explains the mapping; this
module applies it and refuses, before anything is sent (``ProviderRejected`` with
``left=False``), every message Robbu could not take as it is: a content type or
channel it has no field for, a missing address, a joker over its limit (never cut),
a file without a name and extension.
"""

from __future__ import annotations

import math
import mimetypes
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import phonenumbers

from engine.errors import ProviderRejected
from engine.models import Channel, Email, Media, OutboundMessage, Template, Text

CHANNEL_CODES: Mapping[Channel, int] = {"email": 1, "sms": 2, "whatsapp": 3}
# What Robbu can carry on each channel: files only on WhatsApp, a subject only by e-mail.
CONTENT_BY_CHANNEL: Mapping[Channel, frozenset[str]] = {
    "whatsapp": frozenset({"text", "media", "template"}),
    "sms": frozenset({"text"}),
    "email": frozenset({"email"}),
}
JOKER_LIMITS = (300, 300, 300, 300, 3000)  # characters of joker 1-4 and joker 5
# Contact context keys that fill Robbu's contact fields (``id`` is the CPF/CNPJ).
CUSTOM_CODE_KEY = "custom_code"
DOCUMENT_KEYS = ("cpf_cnpj", "cpf", "cnpj")
TAG_KEY = "tag"
ATTENDANCE_GUARDED = frozenset({"skip", "defer"})  # in_attendance values that discard


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """The line that sends (``source``)."""

    country_code: int
    phone_number: int
    prospect: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """What the body takes from the provider's config."""

    provider: str  # the instance name, for error messages
    private_token: str
    source: Source | None
    wallet_client_code: str
    update_if_exists: bool


def sendmessage_body(message: OutboundMessage, account: Account) -> dict[str, Any]:
    """The SendMessage body for ``message``; ``ProviderRejected(left=False)`` when Robbu
    cannot take it."""
    channel, content = message.channel, message.content
    if content.type not in CONTENT_BY_CHANNEL[channel]:
        _refuse(account, _unsendable(channel, content.type))
    text, subject, template, parameters = "", "", "", []
    files: list[dict[str, str]] = []
    if isinstance(content, Text):
        text = content.body
    elif isinstance(content, Media):
        text = content.caption or ""
        files.append(_file(content, account, "send.media"))
    elif isinstance(content, Template):
        template = content.name
        parameters = _template_parameters(content, account)
        if content.header_media is not None:
            files.append(_file(content.header_media, account, "send.template.header_media"))
    elif isinstance(content, Email):
        text, subject = content.body, content.subject
    hints = message.hints
    body: dict[str, Any] = {
        "invenioPrivateToken": account.private_token,
        "text": text,  # always present: without it Robbu fails with a null reference
        "emailSubject": subject,
        "channel": CHANNEL_CODES[channel],
        "templateName": template,
        "attendantUserName": str(hints.get("attendant") or ""),
        "templateParameters": parameters,
    }
    if account.source is not None:
        body["source"] = {
            "countryCode": account.source.country_code,
            "phoneNumber": account.source.phone_number,
            "prospect": account.source.prospect,
        }
    body["destination"] = _destination(message, account)
    body["discardSettings"] = {
        "recentContactLastHours": _whole_hours(hints.get("recent_contact_hours")),
        "InAttendance": hints.get("in_attendance") in ATTENDANCE_GUARDED,
    }
    body["contact"] = _contact(message, account)
    if files:
        body["files"] = files
    return body


def _unsendable(channel: Channel, kind: str) -> str:
    if kind in ("buttons", "list"):
        return f"cannot send {kind} content: Robbu's SendMessage has no reply buttons or lists"
    if kind == "location":
        return "cannot send location content: Robbu's SendMessage has no location message"
    if kind == "email":
        return f"sends email content only on channel email, not {channel}"
    if channel == "email":
        return f"needs `email:` content (subject and body) on channel email, not {kind}"
    return f"cannot send {kind} content on channel {channel}"


def _template_parameters(content: Template, account: Account) -> list[dict[str, str]]:
    if isinstance(content.params, tuple):  # positional (carousel images): named 1, 2, ...
        named = {str(i): value for i, value in enumerate(content.params, start=1)}
    else:
        named = content.params
    for name, value in named.items():
        if _library_url_without_extension(value):
            _refuse(
                account,
                f"cannot send parameter {name} of template {content.name!r}: {value} is a "
                "file of Invenio's media library with no file extension at its end, and "
                "Robbu processes it only with one; add the file's, e.g. .jpeg or .png",
            )
    return [{"parameterName": name, "parameterValue": value} for name, value in named.items()]


def _library_url_without_extension(value: str) -> bool:
    """A URL copied from Invenio Center's media library (``https://storage.robbu.global
    /v2/file/<id>``) as it is copied: the document's carousel note says the file's
    extension must be added at its end "para garantir o correto processamento"."""
    parts = urlsplit(value.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host.endswith(".robbu.global"):
        return False
    if "/file/" not in parts.path:
        return False
    last = posixpath.basename(unquote(parts.path))
    return bool(last) and "." not in last.strip(".")


def _file(media: Media, account: Account, field: str) -> dict[str, str]:
    if not media.url and not media.base64:
        _refuse(account, f"got {field} with neither url nor base64")
    name = media.filename or ""
    if not name and media.url:
        name = posixpath.basename(unquote(urlsplit(media.url).path))
    if name and "." not in name and media.mime_type:
        name += mimetypes.guess_extension(media.mime_type) or ""
    if not name or "." not in name.strip(".") or name.endswith("."):
        _refuse(
            account,
            f"needs {field}.filename with an extension (e.g. boleto.pdf): Robbu names the "
            f"file by it, and {name or 'nothing'!r} has none",
        )
    return {"address": media.url or "", "base64": media.base64 or "", "name": name}


def _destination(message: OutboundMessage, account: Account) -> dict[str, Any]:
    contact = message.contact
    if message.channel == "email":
        if not contact.email:
            _refuse(account, f"has no e-mail address for contact {contact.id}")
        return {"email": contact.email}
    if not contact.phone:
        _refuse(account, f"has no phone number for contact {contact.id}")
    country, national = _split_phone(contact.phone, account, contact.id)
    if message.channel == "sms":
        # The document's SMS example carries the prospect flag here, and no source.
        prospect = account.source.prospect if account.source is not None else False
        return {"countryCode": country, "phoneNumber": national, "prospect": prospect}
    return {"countryCode": country, "phoneNumber": national, "email": ""}


def _split_phone(phone: str, account: Account, contact_id: str) -> tuple[int, int]:
    try:
        number = phonenumbers.parse(phone if phone.startswith("+") else f"+{phone}", None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not number.country_code or not number.national_number:
        _refuse(account, f"cannot split the phone of contact {contact_id} into country and number")
    return int(number.country_code), int(number.national_number)


def _whole_hours(value: Any) -> int:
    # Rounded down: Robbu's guard never discards more than the flow's own rule.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(0, math.floor(value))


def _contact(message: OutboundMessage, account: Account) -> dict[str, Any]:
    context = message.contact.context
    document = next((context[k] for k in DOCUMENT_KEYS if context.get(k) not in (None, "")), "")
    jokers = []
    for index, limit in enumerate(JOKER_LIMITS):
        key = f"joker{index + 1}"
        value = _text(context.get(key), f"contact.context.{key}", account)
        if len(value) > limit:
            _refuse(
                account,
                f"cannot send contact.jokers[{index}] (context `{key}`): it is {len(value)} "
                f"characters and Robbu takes at most {limit}; shorten it, it is never cut",
            )
        jokers.append(value)
    return {
        "name": message.contact.name or "",
        "customCode": _text(context.get(CUSTOM_CODE_KEY), CUSTOM_CODE_KEY, account),
        "id": _text(document, "contact.context.cpf_cnpj", account),
        "tag": _text(context.get(TAG_KEY), TAG_KEY, account),
        "jokers": jokers,
        "walletClientCode": account.wallet_client_code,
        "updateIfExists": account.update_if_exists,
    }


def _text(value: Any, field: str, account: Account) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    _refuse(account, f"needs text for {field}, got {type(value).__name__}")


def _refuse(account: Account, why: str) -> NoReturn:
    raise ProviderRejected(f"robbu provider {account.provider} {why}", left=False)
