"""The file types WhatsApp takes per media kind (mission research, section 4).

WhatsApp refuses the whole message when a file's type does not fit its kind (a GIF
sent as an image, a PNG as a sticker), after the send has left: the provider answers
``failed`` long after the run moved on. Where the type can be known before sending
(``mime_type``, the ``data:`` prefix of a base64 payload, or the extension of the
file name or URL), it is checked with the other limits of ``engine.content``.
Documents and audio are not checked: WhatsApp lists no closed set for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from engine.errors import ContentViolation
from engine.models import Media
from engine.wording import a_or_an

ACCEPTED: Mapping[str, tuple[str, ...]] = {
    "image": ("image/jpeg", "image/png"),
    "video": ("video/mp4", "video/3gpp"),
    "sticker": ("image/webp",),
}
_SAME = {"video/3gp": "video/3gpp"}  # how Meta's documents write it

# Extensions whose type is certain, the same on every machine (the mimetypes module
# reads /etc/mime.types, and takes .3gp for audio). Other extensions are not judged.
_EXTENSIONS = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "bmp": "image/bmp",
    "svg": "image/svg+xml",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "3gp": "video/3gpp",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
    "mkv": "video/x-matroska",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "amr": "audio/amr",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "wav": "audio/wav",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "csv": "text/csv",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "zip": "application/zip",
}


_MIME = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


def _essence(mime: str) -> str:
    """``image/JPEG; q=1`` -> ``image/jpeg``."""
    bare = mime.partition(";")[0].strip().lower()
    return _SAME.get(bare, bare)


def _by_extension(name: str | None) -> tuple[str, str] | None:
    """(extension, type) of a file name or URL path whose extension says the type."""
    if not name:
        return None
    last = name.rpartition("/")[2]
    if "." not in last:
        return None
    extension = last.rpartition(".")[2].lower()
    mime = _EXTENSIONS.get(extension)
    return None if mime is None else (extension, mime)


def _declared(media: Media, at: str) -> tuple[str, str, str] | None:
    """(field, what it says, type) the first place that states the file's type."""
    if media.mime_type is not None and _MIME.fullmatch(_essence(media.mime_type)):
        return f"{at}.mime_type", media.mime_type.strip(), _essence(media.mime_type)
    if media.base64 is not None and media.base64.startswith("data:"):
        mime = media.base64[5:].partition(",")[0].partition(";")[0]
        if mime:
            return f"{at}.base64", f"a data: URL of {mime}", _essence(mime)
    for field, name in (
        ("filename", media.filename),
        ("url", urlsplit(media.url).path if media.url else None),
    ):
        found = _by_extension(name)
        if found is not None:
            extension, mime = found
            return f"{at}.{field}", f"a .{extension} file ({mime})", mime
    return None


def media_type_violations(media: Media, at: str) -> Iterator[ContentViolation]:
    """A violation when ``media``'s known type is not one WhatsApp takes for its kind."""
    accepted = ACCEPTED.get(media.kind)
    if accepted is None:
        return
    declared = _declared(media, at)
    if declared is None or declared[2] in accepted:
        return
    field, said, mime = declared
    hint = _other_kind(mime, media.kind)
    yield ContentViolation(
        field=field,
        message=f"{said}; WhatsApp sends {a_or_an(media.kind)} only as "
        f"{' or '.join(accepted)}" + (f"; set `kind: {hint}`" if hint else ""),
    )


def _other_kind(mime: str, kind: str) -> str | None:
    """The kind a file of type ``mime`` is sent as, when that is not ``kind``: a PDF
    left at the default `kind: image` goes as a document."""
    family = mime.partition("/")[0]
    for other, accepted in ACCEPTED.items():
        if mime in accepted and other != kind:
            return other
    if family in ("application", "text"):
        return "document"
    if family in ("audio", "video") and family != kind:
        return family
    return None
