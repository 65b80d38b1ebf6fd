"""The body of Interflow's ``POST /v1/messages/send`` for each kind of disparo content.

Every body is ``{"channel_id": <the configured channel UUID>, "to": <phone digits,
no "+">, "type": ..., "content": {...}}``; the content per type, as the vendor's
examples show it (optional fields that are ``None`` or blank are left out, never
sent as ``""``):

==========  ===============================================================
text        ``{"text": body}``
image       ``{"url", "caption"}``
video       ``{"url", "caption"}`` (no example in the document; as image)
audio       ``{"url"}`` (no example; WhatsApp audio has no caption, so it is dropped)
document    ``{"url", "filename", "caption"}``
location    ``{"latitude", "longitude", "name", "address"}``
template    ``{"name", "language", "components": [{"type": "body",
            "parameters": [{"type": "text", "text": ...}, ...]}]}``
==========  ===============================================================

Template parameters are positional: a tuple in its order, a mapping in its order
(the engine has already put it in the catalogue's declared order). A template with
no parameters sends ``"components": []``.

Anything the document does not show cannot be sent and is refused before any
request (``ProviderRejected``, ``left=False``): a channel other than WhatsApp,
buttons, lists, e-mail, stickers, media given as base64 instead of a URL, a template
header file, and a template without a language or with one that is not written as
WhatsApp's code (``pt-BR`` for ``pt_BR``: WhatsApp would find no template in that
language). ``Text.preview_url`` and ``Location.url`` have no field at Interflow and
are not sent (``disparo check`` refuses a flow that gives a location a url for an
Interflow step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.errors import ProviderRejected
from engine.models import (
    Location,
    Media,
    OutboundMessage,
    Template,
    Text,
)
from providers.base import language_problem

Refuse = Callable[[str], ProviderRejected]
MEDIA_TYPES = frozenset({"image", "video", "audio", "document"})


def request_body(message: OutboundMessage, *, channel_id: str, provider: str) -> dict[str, Any]:
    """The JSON body for ``message``; ``ProviderRejected`` (unsent) if Interflow can't carry it."""

    def refuse(why: str) -> ProviderRejected:
        return ProviderRejected(f"interflow provider {provider} {why}", left=False)

    if message.channel != "whatsapp":
        raise refuse(f"sends only whatsapp, not {message.channel}")
    phone = "".join(c for c in message.contact.phone or "" if c.isdigit())
    if not phone:
        raise refuse(f"has no phone number for contact {message.contact.id}")
    kind, content = _content(message.content, refuse)
    return {"channel_id": channel_id, "to": phone, "type": kind, "content": content}


def _content(content: object, refuse: Refuse) -> tuple[str, dict[str, Any]]:
    if isinstance(content, Text):
        return "text", {"text": content.body}
    if isinstance(content, Media):
        return content.kind, _media(content, refuse)
    if isinstance(content, Location):
        return "location", _present(
            latitude=content.latitude,
            longitude=content.longitude,
            name=content.name,
            address=content.address,
        )
    if isinstance(content, Template):
        return "template", _template(content, refuse)
    kind = getattr(content, "type", type(content).__name__)
    raise refuse(
        f"cannot send {kind} content (Interflow's API takes text, media, location and template)"
    )


def _media(media: Media, refuse: Refuse) -> dict[str, Any]:
    if media.kind not in MEDIA_TYPES:
        raise refuse(f"cannot send a {media.kind} (it sends image, video, audio and document)")
    if not media.url:
        raise refuse(f"takes {media.kind} files by url only; host the file and give `url`")
    if media.kind == "audio":
        return {"url": media.url}
    if media.kind == "document":
        return _present(url=media.url, filename=media.filename, caption=media.caption)
    return _present(url=media.url, caption=media.caption)


def _template(template: Template, refuse: Refuse) -> dict[str, Any]:
    if template.header_media is not None:
        raise refuse(
            f"cannot send template {template.name!r} with a header file "
            "(Interflow's API documents body parameters only)"
        )
    if not template.language:
        raise refuse(
            f"needs a language for template {template.name!r}; set `language:` for this "
            "provider in config/templates.yaml"
        )
    problem = language_problem(template.language)
    if problem is not None:
        raise refuse(f"cannot send template {template.name!r}: {problem}")
    values = template.params.values() if isinstance(template.params, dict) else template.params
    parameters = [{"type": "text", "text": value} for value in values]
    components = [{"type": "body", "parameters": parameters}] if parameters else []
    return {"name": template.name, "language": template.language, "components": components}


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that say something: ``None`` and blank texts (a caption rendered
    empty) are left out rather than sent as ``""``."""
    return {
        name: value
        for name, value in fields.items()
        if value is not None and not (isinstance(value, str) and not value.strip())
    }
