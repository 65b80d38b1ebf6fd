"""What users read: counts ("1 run", "2 runs", "1,204 messages"), local times and the
kind of a value (for messages that must not quote it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (``plural``, else ``noun`` + "s")."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def a_or_an(noun: str) -> str:
    """``noun`` after its indefinite article: "an image", "a video"."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def local_time(at: datetime | str, zone: ZoneInfo) -> str:
    """``at`` (aware, or ISO text) as a person reads it: in ``zone``, to the second.
    A wall time the zone shows twice (the hour repeated when clocks go back) carries
    its UTC offset, so the two read apart. Text that is no ISO time is given back as
    it is."""
    if isinstance(at, str):
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            return at
    else:
        when = at
    local = when.astimezone(zone)
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        return f"{text} (UTC{local.strftime('%z')[:3]}:{local.strftime('%z')[3:]})"
    return text


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words; a message says this instead of quoting
    a value that may be a person's data."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"
