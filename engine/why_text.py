"""`disparo why` as text: one line per event, newest first, each saying when (in the
contact's time zone), which run and step, what happened and why.

``2026-11-23 22:00:00  run 1f2e3d4c  lembrete       decision           quiet_hours:
defer (quiet_hours) until 2026-11-24 08:00:00, range=20:00-08:00, ...``
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.flow.durations import format_duration
from engine.models import Event
from engine.wording import local_time

STEP_WIDTH = 14  # the step column, wider when a step id is longer (up to STEP_WIDTH_MAX)
STEP_WIDTH_MAX = 40


def why_lines(events: Iterable[Event], zone: ZoneInfo) -> list[str]:
    listed = list(events)
    longest = max((len(_step(event)) for event in listed), default=0)
    width = min(max(STEP_WIDTH, longest), STEP_WIDTH_MAX)
    return [_line(event, zone, width) for event in listed]


# The facts a decision stores are UTC instants and spans in seconds (exact, for
# `--json` and the API); the line reads them on the clock of its own times.
_INSTANT_SUFFIXES = ("_at", "_until", "_since")


def _readable(key: str, value: Any, zone: ZoneInfo) -> tuple[str, Any]:
    """A decision's fact as the line shows it: an instant in ``zone``, a span as 4h."""
    if isinstance(value, str) and key.endswith(_INSTANT_SUFFIXES):
        return key, local_time(value, zone)
    if key.endswith("_seconds") and type(value) in (int, float):
        return key.removesuffix("_seconds"), format_duration(timedelta(seconds=value))
    return key, value


def _step(event: Event) -> str:
    return str(event.data.get("step") or "")


def _line(event: Event, zone: ZoneInfo, width: int) -> str:
    data: Mapping[str, Any] = event.data
    run = f"run {event.run_id[:8]}" if event.run_id else "contact"
    step = _step(event)
    if event.kind == "decision":
        what = f"{data.get('rule')}: {data.get('outcome')} ({data.get('reason')})"
        if data.get("until"):
            what += f" until {local_time(str(data['until']), zone)}"
        details = dict(
            _readable(key, value, zone) for key, value in (data.get("facts") or {}).items()
        )
    else:
        what = str(data.get("reason") or "")  # why a run finished, why an event was ignored
        details = {k: v for k, v in data.items() if k not in ("step", "reason")}
    rest = ", ".join(f"{k}={v}" for k, v in details.items())
    text = ", ".join(part for part in (what, rest) if part)
    when = local_time(event.at, zone)
    return f"{when}  {run:<12}  {step:<{width}} {event.kind:<18} {text}".rstrip()
