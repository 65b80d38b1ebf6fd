"""How long a value's text would be, counted without building the text.

``str(x)`` of a list, tuple, dict or set is one C call that runs to the end: a list
of 100,000 references to one 60,000-character text prints as 6 GB before any check
after the fact can look at it. The sandbox counts first (``engine.sandbox``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CONTAINERS = (list, tuple, dict, set, frozenset)
_TICK_EVERY = 4_096


def printed_size(value: Any, limit: int, tick: Callable[[], None] | None = None) -> int:
    """About ``len(str(value))``: exact for texts, close for containers of texts and
    numbers, at least 1 for anything else. Stops counting once past ``limit`` (and
    returns a number over it), so it visits at most about ``limit / 2`` values: no
    more work than printing would have done. ``tick`` runs every few thousand values
    (the render's time budget). A cycle is counted until it passes ``limit``."""
    size = 0
    stack = [value]
    visits = 0
    while stack:
        item = stack.pop()
        visits += 1
        if tick is not None and visits % _TICK_EVERY == 0:
            tick()
        if isinstance(item, str | bytes):
            size += len(item) + 2  # quotes, inside a container
        elif isinstance(item, dict):
            size += 2 + 4 * len(item)  # braces, ": " and ", "
            if size > limit:
                return size
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, CONTAINERS):
            size += 2 + 2 * len(item)  # brackets and ", "
            if size > limit:
                return size
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            size += item.bit_length() // 4 + 1  # fewer than its decimal digits
        else:
            size += 1
        if size > limit:
            return size
    return size
