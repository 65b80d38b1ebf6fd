"""Text from a provider's webhook, made storable.

PostgreSQL's text columns keep no NUL character (``\\u0000``), and no message or
error needs one. A vendor's failure text with one (it becomes the message's
``last_error``) could be stored with the report but never applied on PostgreSQL: the
status work failed and was retried for ever. Every string field of what a webhook
said loses its NULs before it is stored, on every store alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

from engine.models import ContactEvent, StatusReport

E = TypeVar("E", ContactEvent, StatusReport)


def without_nul(items: Sequence[E]) -> list[E]:
    """``items``, each with the NUL characters removed from its string fields."""
    return [_clean(item) for item in items]


def _clean(item: E) -> E:
    dirty: dict[str, Any] = {
        f.name: value.replace("\x00", "")
        for f in fields(item)
        if isinstance(value := getattr(item, f.name), str) and "\x00" in value
    }
    return replace(item, **dirty) if dirty else item
