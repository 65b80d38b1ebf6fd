"""What every vendor webhook parser shares: reading the body as JSON, refusing a
body no vendor would send (400), and keeping the good items of a batch when some
are bad."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from engine.errors import ProviderRejected

T = TypeVar("T")


class BadItem(ValueError):
    """One item of a webhook cannot be used; the others are kept. Says why, for operators."""


def rejected(provider: str, why: str, *, label: str = "webhook") -> ProviderRejected:
    """The whole body is unusable: the API answers 400 with this message."""
    return ProviderRejected(f"{provider} {label}: {why}", status=400, left=False)


def load_json(
    body: bytes, provider: str, *, label: str = "webhook", noun: str = "a webhook"
) -> Any:
    """The decoded body, or ``ProviderRejected`` saying why it is not JSON."""
    try:
        return json.loads(body)
    except RecursionError:
        raise rejected(provider, f"the body nests too deeply to be {noun}", label=label) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise rejected(provider, f"the body is not UTF-8 JSON ({exc})", label=label) from None


def parse_items(
    items: Sequence[Any], parse: Callable[[Any], T], where: Callable[[int], str]
) -> tuple[list[T], list[str]]:
    """``parse`` each item; a ``BadItem`` becomes ``"<where>: <why>"`` in the errors."""
    good: list[T] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        try:
            good.append(parse(item))
        except BadItem as exc:
            errors.append(f"{where(index)}: {exc}")
    return good, errors
