"""Text from a provider's webhook, made storable.

PostgreSQL's text columns keep no NUL character (``\\u0000``), and no message or
error needs one. A vendor's failure text with one (it becomes the message's
``last_error``) could be stored with the report but never applied on PostgreSQL: the
status work failed and was retried for ever. Every string field of what a webhook
said loses its NULs before it is stored, on every store alike.

A lone UTF-16 surrogate (JSON's ``"\\ud800"`` without its pair, from a vendor's
broken encoder) is no character at all: UTF-8 cannot encode it, so no store could
write it and the webhook failed with a 500 the vendor retried for ever. It becomes
U+FFFD, the replacement character, and the rest of the text is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

from engine.models import ContactEvent, StatusReport

E = TypeVar("E", ContactEvent, StatusReport)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def without_nul(items: Sequence[E]) -> list[E]:
    """``items``, each string field without NUL characters and with every lone
    surrogate replaced by U+FFFD."""
    return [_clean(item) for item in items]


def _storable(text: str) -> str:
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def _clean(item: E) -> E:
    dirty: dict[str, Any] = {
        f.name: _storable(value)
        for f in fields(item)
        if isinstance(value := getattr(item, f.name), str) and _UNSTORABLE.search(value)
    }
    return replace(item, **dirty) if dirty else item
