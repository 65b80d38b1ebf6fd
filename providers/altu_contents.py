"""The Altu/Zenvia outbound request body, built from one ``OutboundMessage``.

Everything here follows the vendor document (``altu-zenvia-outbound.txt``); what the
document does not show is refused before anything is sent (``ProviderRejected`` with
``left=False``), never sent as a guess:

- ``Template`` -> ``templateId`` + ``fields`` (named parameters only: ``fields`` is an
  object of keys and values). No template file header is documented.
- ``Media`` -> one ``contents`` item of type ``file`` (``fileUrl``, ``fileMimeType``,
  ``fileCaption``, ``fileName``); files go by URL only; image must be image/jpeg or
  image/png and sticker image/webp (the document's size table).
- ``Buttons`` -> type ``button`` (optional file ``header``, ``body``, ``footer``, 1-3
  ``buttons`` of ``id``/``title``). The only documented header is a file, so a header
  must be an http(s) URL.
- ``ListMenu`` -> type ``list`` (text ``header``, ``body``, ``footer``, ``button`` label,
  ``sections`` of ``rows``).
- ``Location`` -> type ``location`` (``latitude``, ``longitude``, ``name``, ``address``,
  ``url``).
- ``Text`` and ``Email``: the document has no plain-text content and no e-mail.
"""

from __future__ import annotations

import math
import mimetypes
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from engine.errors import ProviderRejected
from engine.models import (
    Buttons,
    ListMenu,
    Location,
    Media,
    OutboundMessage,
    Template,
)
from providers.base import mask_phone

# The size table of the document names these types; other kinds take any valid type.
_KIND_MIME_TYPES: Mapping[str, frozenset[str]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "sticker": frozenset({"image/webp"}),
}
_BRAZIL = "55"

Refuse = Callable[[str], ProviderRejected]


def build_body(provider: str, message: OutboundMessage) -> dict[str, Any]:
    """The exact JSON body for ``message``; ``ProviderRejected`` (never sent) when the
    document has no way to say it."""

    def refuse(why: str) -> ProviderRejected:
        return ProviderRejected(f"altu provider {provider} {why}", left=False)

    if message.channel != "whatsapp":
        raise refuse(f"sends WhatsApp only, not {message.channel}")
    body: dict[str, Any] = {"destination": destination(message.contact.phone, refuse)}
    content = message.content
    if isinstance(content, Template):
        body["templateId"] = content.name
        body.update(_template_fields(content, refuse))
    elif isinstance(content, Media | Buttons | ListMenu | Location):
        body["contents"] = [content_item(content, refuse)]
    else:
        raise refuse(
            f"cannot send {content.type} content: the Altu outbound document has no "
            "plain-text or e-mail content; send a template, media, buttons, a list or a location"
        )
    body["context"] = {
        # Lets the Altu bot tell which disparo flow a reply answers; namespaced so it
        # never overwrites the bot's own variables.
        "disparo_flow": message.flow,
        "disparo_step": message.step,
        "disparo_run": message.run_id,
    }
    body["externalId"] = message.idempotency_key
    restart = message.hints.get("restart_contact")
    if isinstance(restart, bool):
        body["restartContact"] = restart
    minutes = inactivity_time(message.hints.get("inactivity_minutes"))
    if minutes is not None:
        body["inactivityTime"] = minutes
    return body


def destination(phone: str | None, refuse: Refuse) -> str:
    """A Brazilian E.164 number as the document writes it: DDD + number, digits only
    (``+5535988001234`` -> ``35988001234``)."""
    if not phone:
        raise refuse("has no phone number for this contact")
    digits = "".join(c for c in phone if c.isdigit())
    if digits.startswith(_BRAZIL) and len(digits) in (12, 13):
        return digits[len(_BRAZIL) :]
    raise refuse(
        f"sends to Brazilian WhatsApp numbers only (DDD + number, as its document "
        f"shows); {mask_phone(phone)} is not one"
    )


def inactivity_time(minutes: object) -> int | None:
    """Whole minutes for ``inactivityTime``, rounded down: the vendor's guard must never
    hold back a message the engine's own inactivity rule already let through."""
    if isinstance(minutes, bool) or not isinstance(minutes, int | float):
        return None
    if not math.isfinite(minutes) or minutes < 0:
        return None
    return math.floor(minutes)


def content_item(content: Media | Buttons | ListMenu | Location, refuse: Refuse) -> dict[str, Any]:
    """One ``contents`` item, in the document's field order."""
    if isinstance(content, Media):
        return _file(content, refuse)
    if isinstance(content, Buttons):
        return _buttons(content, refuse)
    if isinstance(content, ListMenu):
        return _list(content)
    return _location(content)


def _template_fields(template: Template, refuse: Refuse) -> dict[str, Any]:
    if template.header_media is not None:
        raise refuse("cannot send a file with a template: the Altu outbound document has none")
    if isinstance(template.params, tuple):
        if template.params:
            raise refuse(
                f"needs named template fields for {template.name!r} (the document's "
                "`fields` is an object of keys and values); write params as a mapping"
            )
        return {}
    return {"fields": dict(template.params)} if template.params else {}


def _file(media: Media, refuse: Refuse) -> dict[str, Any]:
    if not media.url:
        raise refuse(
            f"sends files by URL only (fileUrl); this {media.kind} has no url — "
            "host the file and give its url"
        )
    mime = media.mime_type or _guess_mime(media.filename, media.url)
    if mime is None:
        raise refuse(
            f"needs the file's MIME type (fileMimeType) for {media.kind} "
            f"{media.filename or media.url!r}; set mime_type"
        )
    allowed = _KIND_MIME_TYPES.get(media.kind)
    if allowed is not None and mime.lower() not in allowed:
        raise refuse(
            f"cannot send a {media.kind} of type {mime}; WhatsApp takes "
            f"{' or '.join(sorted(allowed))}"
        )
    item: dict[str, Any] = {"type": "file", "fileUrl": media.url, "fileMimeType": mime}
    if media.caption is not None:
        item["fileCaption"] = media.caption
    if media.filename is not None:
        item["fileName"] = media.filename
    return item


def _guess_mime(filename: str | None, url: str) -> str | None:
    for name in (filename, urlsplit(url).path):
        if name:
            guessed, _ = mimetypes.guess_type(name, strict=False)
            if guessed is not None:
                return guessed
    return None


def _buttons(content: Buttons, refuse: Refuse) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "button"}
    if content.header is not None:
        if not _is_http_url(content.header):
            raise refuse(
                "takes a file as the header of buttons (a URL); the Altu outbound "
                "document has no text header for buttons — drop `header:` or give a file URL"
            )
        item["header"] = {"type": "file", "fileUrl": content.header}
    item["body"] = content.body
    if content.footer is not None:
        item["footer"] = content.footer
    item["buttons"] = [{"id": b.id, "title": b.title} for b in content.buttons]
    return item


def _list(content: ListMenu) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "list"}
    if content.header is not None:
        item["header"] = content.header
    item["body"] = content.body
    if content.footer is not None:
        item["footer"] = content.footer
    item["button"] = content.button
    sections = []
    for section in content.sections:
        out: dict[str, Any] = {} if section.title is None else {"title": section.title}
        rows = []
        for row in section.rows:
            one = {"id": row.id, "title": row.title}
            if row.description is not None:
                one["description"] = row.description
            rows.append(one)
        out["rows"] = rows
        sections.append(out)
    item["sections"] = sections
    return item


def _location(content: Location) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "location",
        "latitude": content.latitude,
        "longitude": content.longitude,
    }
    for name in ("name", "address", "url"):
        value = getattr(content, name)
        if value is not None:
            item[name] = value
    return item


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)
