"""Which fields of an inbound event mean something for which event types.

``POST /v1/events`` and ``disparo simulate --events`` refuse a field the event's type
ignores: it is a client's mistake that would otherwise pass unnoticed (a button click
sent as a ``reply`` takes the flow's ``reply`` route, not ``button.<id>``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from engine.models import ContactEventType

EVENT_TYPES: tuple[str, ...] = (*get_args(ContactEventType), "status")
_ALL = frozenset(EVENT_TYPES)

# (field, the types it applies to, what to send instead)
_ONLY_FOR: tuple[tuple[str, frozenset[str], str], ...] = (
    (
        "button_id",
        frozenset({"button", "choice"}),
        'a tapped button is {"type": "button", "button_id": ...}, a list row '
        '{"type": "choice", "button_id": ...}',
    ),
    ("until", frozenset({"attendance_started"}), "it is when an attendance is expected to end"),
    (
        "channel",
        frozenset({"reply", "button", "choice"}),
        "it says what a message the contact wrote came in on",
    ),
    ("attachment", frozenset({"reply"}), "it is a file or map pin a reply brought"),
    (
        "attendant",
        frozenset({"attendance_started", "attendance_ended"}),
        "it names the agent of an attendance",
    ),
    ("message_id", frozenset({"status"}), "it names the message a status report is about"),
    ("status", frozenset({"status"}), "it is a status report's new status"),
    ("error", frozenset({"status"}), "it is a failed status report's reason"),
    ("text", _ALL - {"status"}, "a failed report's reason goes in `error`"),
)


def stray_fields(kind: str, given: Iterable[str]) -> list[tuple[str, str]]:
    """``(field, message)`` for each field in ``given`` (those with a value) that an
    event of type ``kind`` ignores."""
    present = set(given)
    return [
        (name, f"does not apply to type {kind}, {_types(types)}; {hint}")
        for name, types, hint in _ONLY_FOR
        if name in present and kind not in types
    ]


def _types(types: frozenset[str]) -> str:
    """``only to button or choice``, or ``only to types other than status``."""
    if len(types) > len(_ALL) // 2:
        return "only to types other than " + _listed(_ALL - types)
    return "only to " + _listed(types)


def _listed(types: frozenset[str]) -> str:
    ordered = [kind for kind in EVENT_TYPES if kind in types]
    return ordered[0] if len(ordered) == 1 else ", ".join(ordered[:-1]) + " or " + ordered[-1]
