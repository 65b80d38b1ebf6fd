"""Durations as bot designers write them: ``30s``, ``10m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from functools import lru_cache

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[dhms]\s*)+$")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
# Longer durations leave the calendar once added to now (`timeout`, `wait`, `after`).
LONGEST = timedelta(days=36500)


# The rules of every message parse their durations again; a flow has only a few.
# typed: ``True`` must not find the entry cached for ``1``.
@lru_cache(maxsize=512, typed=True)
def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``"1h30m"`` into a timedelta; a bare number is seconds. At most
    ``LONGEST`` either way."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        # float(10**400) raises; such an int is far too long anyway
        seconds = float(text) if isinstance(text, float) or abs(text) < 1e300 else math.inf
    elif isinstance(text, str) and _WHOLE.match(text):
        seconds = sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
    else:
        seconds = math.nan
    if math.isnan(seconds):
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 10m, 2h, 1d or 1h30m")
    if abs(seconds) > LONGEST.total_seconds():
        raise ValueError(f"{text!r} is longer than 100 years (36500d); write a shorter duration")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    total = int(delta.total_seconds())
    if total == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
