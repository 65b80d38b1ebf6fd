"""Counts in the words users read: "1 run", "2 runs", "1,204 messages"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (``plural``, else ``noun`` + "s")."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
