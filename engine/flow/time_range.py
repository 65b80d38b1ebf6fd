"""Local time ranges as flows write them: ``"20:00-08:00"``.

One parser for the flow model (so ``disparo check`` refuses a bad range with its
position) and for the quiet-hours rule that applies the range at send time.
"""

from __future__ import annotations

DAY = 24 * 3600


def clock(text: str) -> int:
    """Seconds after local midnight of ``"HH:MM"`` (``"24:00"`` is the end of the day)."""
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{text!r} is not a time of day; write it like 08:00, 20:30 or 24:00")
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ValueError(f"{text!r} is not a time of day; write it like 08:00, 20:30 or 24:00")
    return h * 3600 + m * 60


def parse_time_range(text: str) -> tuple[int, int]:
    """``(start, end)`` in seconds after local midnight; ``ValueError`` names what is wrong."""
    first, sep, second = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not a time range; write it like 20:00-08:00")
    start, end = clock(first.strip()), clock(second.strip())
    if start == DAY:
        raise ValueError(f"{text!r} cannot start at 24:00; use 00:00")
    return start, end
