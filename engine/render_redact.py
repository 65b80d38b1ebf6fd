"""Keeping a contact's data out of render errors.

A render error is logged, stored with the run (its events, ``disparo why``, the API)
and kept after the contact's data is gone from its rows; it names the flow, step,
field, the variable path and the kind of value, never the value. Our own messages
(engine.pt_br, engine.context_time, missing values) are written that way; an error
from elsewhere (Python's or jinja's: ``'x' is not in list``, a ``KeyError``) may
quote a value, so its text has every value the render could see replaced by ``…``:
the contact's fields but its id, its context and the run's vars. A value built from
those inside the template (``context.cpf[:3]``) cannot be recognised; such errors
are rare (Python's messages mostly name types).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "…"
# Values shorter than this are taken out only where an error quotes them ('Ana');
# bare, they would also match words of the message itself.
_BARE_FROM = 4
_VALUE_SEARCH_LIMIT = 5_000


def scope_values(variables: Mapping[str, Any]) -> frozenset[str]:
    """The texts (strings, and numbers as text) of the contact's data a render sees."""
    contact = variables.get("contact") or {}
    run = variables.get("run") or {}
    roots: Iterable[Any] = (
        {key: value for key, value in contact.items() if key != "id"},
        variables.get("context") or {},
        run.get("vars") if isinstance(run, Mapping) else None,
    )
    texts: set[str] = set()
    queue: deque[Any] = deque(roots)
    visited = 0
    while queue and visited < _VALUE_SEARCH_LIMIT:
        value = queue.popleft()
        visited += 1
        if isinstance(value, Mapping):  # its keys are the flow's names, not data
            queue.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            queue.extend(value)
        elif isinstance(value, str) and value.strip():
            texts.add(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            texts.add(repr(value))
    return frozenset(texts)


def without_values(message: str, values: frozenset[str]) -> str:
    """``message`` with every one of ``values`` it holds replaced by ``…``: quoted
    (as ``repr`` writes it) whatever its length, bare from four characters on."""
    for value in sorted(values, key=len, reverse=True):
        for quoted in (repr(value), f'"{value}"'):
            message = message.replace(quoted, REDACTED)
        if len(value) >= _BARE_FROM:
            message = message.replace(value, REDACTED)
    return message


def is_value(key: Any, values: frozenset[str]) -> bool:
    """Whether a key a template looked up is one of the contact's values
    (``context.precos[contact.phone]``): the path then shows ``[…]`` instead."""
    text = key if isinstance(key, str) else repr(key)
    return text in values
