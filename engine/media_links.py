"""Where a file is fetched from. Every provider hands WhatsApp a link it downloads
(Robbu's ``Address``, Altu's ``fileUrl``, Interflow's ``url``): a relative path, a
Windows path or a ``file://`` address written in a flow or a contact's context never
arrives, and the provider reports the failure long after the run moved on. A link
is an absolute ``http://`` or ``https://`` address with a host."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from engine.errors import ContentViolation
from engine.models import Media

NOT_A_LINK = (
    "is not a web address; WhatsApp fetches the file from an http(s):// link "
    "(or give the file as `base64:`)"
)


def is_web_link(value: str) -> bool:
    parts = urlsplit(value.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def link_violations(media: Media, at: str) -> Iterator[ContentViolation]:
    """A violation when ``media`` is given by a URL that is not a web address."""
    if media.url is not None and not is_web_link(media.url):
        yield ContentViolation(field=f"{at}.url", message=f"{media.url!r} {NOT_A_LINK}")
