"""What WhatsApp does with the text under a file: at most 1024 characters, and none at
all under an audio or a sticker (the contact would never read it, and a provider such
as Interflow leaves it out of the request without a word). A file's caption is its
own ``caption:``, else the step's ``text:`` (``engine.content``), so the error names
whichever the flow wrote."""

from __future__ import annotations

from collections.abc import Iterator

from engine.errors import ContentViolation
from engine.models import Media
from engine.wording import a_or_an

CAPTION_MAX = 1024
UNCAPTIONED = ("audio", "sticker")


def caption_violations(media: Media, field: str) -> Iterator[ContentViolation]:
    """The problems of ``media``'s caption on WhatsApp; ``field`` is where the flow wrote it."""
    caption = media.caption
    if caption is None:
        return
    if media.kind in UNCAPTIONED:
        yield ContentViolation(
            field=field,
            message=f"WhatsApp shows no caption with {a_or_an(media.kind)}; remove it, "
            "or send the text in a step of its own",
        )
    elif len(caption) > CAPTION_MAX:
        yield ContentViolation(
            field=field,
            message=f"{len(caption)} characters; WhatsApp allows at most {CAPTION_MAX}",
        )
