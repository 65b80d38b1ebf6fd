"""What an edited trigger keeps from the row it replaces (README, "Triggers": what
happens when you edit a trigger).

A trigger row's key holds a digest of its definition, so any edit (the audience,
`misfire_grace`, `unless`, the config's `triggers.misfire_grace`...) gives the
trigger a new row and ``Store.schedule_triggers`` deletes the old one. Before that,
``carry_over`` hands the state of the old row of the same flow and trigger index
to the new one, so an edit loses nothing and repeats nothing:

- cron: the new row starts from the old row's pending fire time (or now, when that
  is later), in the new schedule: a firing the engine was down for still fires,
  judged by ``plan_firing`` with the new definition and grace. When the trigger
  has fired, the new schedule's first fire time after that firing is skipped if it
  lies closer to that firing than to the old schedule's next one: it is the same
  campaign, moved (`0 9` moved to `0 10` at 09:30 fires tomorrow at 10:00, not again
  today; moved to `0 8` it fires tomorrow at 08:00). The skip is recorded as
  ``trigger.misfired`` and logged as a warning.
- after: with the same `since`, the new row keeps the old watermark: the contacts
  that came due and were not swept yet are swept with the new definition, and the
  run keys (``after:{flow}:{trigger}:{contact}:{timestamp}``) start none twice. A
  new `since` is another timestamp: it starts from ``now - after`` as a new trigger.

Rows are matched by flow, kind and trigger index: a trigger that moves to another
index (one inserted above it) or whose flow file was removed and restored starts
afresh. Read then write, not one transaction: when another process fires the old
row in between, the fire time recorded once (``Commit.firing``) and the run keys
keep anything from happening twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from engine.models import DueKind, NewDueWork, NewEvent
from engine.scheduler import CronSchedule
from engine.triggers_cron import iso as _iso
from storage.base import Store, StoredTrigger

log = logging.getLogger("disparo.triggers")

_MICROSECOND = timedelta(microseconds=1)


def carried_fire_time(
    schedule: CronSchedule, pending: datetime, last: datetime | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """(the first fire time of the edited trigger, the fire time skipped or None).

    ``pending`` is the old row's fire time, ``last`` the trigger's newest firing. The
    new schedule starts at ``min(pending, now)`` (never at or before ``last``); its
    first fire time is skipped when it lies closer to ``last`` than to ``pending``.
    """
    start = min(pending, now)
    if last is not None:
        start = max(start, last + _MICROSECOND)
    first = schedule.next_from(start)
    if first is None:
        return None, None
    if last is not None and first - last < abs(pending - first):
        return schedule.next_after(first), first
    return first, None


async def carry_over(
    store: Store, wanted: Mapping[str, NewDueWork], now: datetime, stored: list[StoredTrigger]
) -> tuple[dict[str, NewDueWork], dict[str, NewEvent]]:
    """``wanted`` with the new keys' rows carrying the state of the ``stored`` rows they
    replace, and the events to record when that key is stored (a cron fire time skipped)."""
    rows = dict(wanted)
    kept = {s.key for s in stored}
    replaced = [s for s in stored if s.key not in wanted]
    events: dict[str, NewEvent] = {}
    for key, row in wanted.items():
        if key in kept or row.kind not in (DueKind.CRON, DueKind.SWEEP):
            continue
        old = _replaced(row, replaced)
        if old is None:
            continue
        if row.kind == DueKind.CRON:
            carried, skipped = await _carry_cron(store, row, old, now)
            if skipped is not None:
                events[key] = skipped
        else:
            carried = _carry_sweep(row, old)
        if carried is not None:
            rows[key] = carried
    return rows, events


def _replaced(row: NewDueWork, replaced: list[StoredTrigger]) -> StoredTrigger | None:
    """The old row of the same kind, flow and trigger index (the earliest, if more)."""
    same = [s for s in replaced if _same_trigger(row, s)]
    return min(same, key=lambda s: s.due_at, default=None)


def _same_trigger(row: NewDueWork, old: StoredTrigger) -> bool:
    """Whether ``row`` is ``old``'s trigger: the same kind, flow and trigger index."""
    return (
        old.kind == row.kind
        and old.payload.get("flow") == row.payload["flow"]
        and old.payload.get("trigger") == row.payload["trigger"]
    )


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


async def _carry_cron(
    store: Store, row: NewDueWork, old: StoredTrigger, now: datetime
) -> tuple[NewDueWork | None, NewEvent | None]:
    """The new row starting where the old one stood, and the event of a fire time
    skipped (None, None: the new row as it is)."""
    p = dict(row.payload)
    pending = _when(old.payload.get("fire_time"))
    if pending is None:
        return None, None
    flow, index = str(p["flow"]), int(p["trigger"])
    last = await store.last_firing(flow, index)
    schedule = CronSchedule(str(p["cron"]), str(p["timezone"]))
    fire, skipped = carried_fire_time(schedule, pending, last, now)
    if fire is None:
        return None, None
    event = None
    if skipped is not None:
        assert last is not None
        reason = (
            f"trigger edited after it fired for {_iso(last)}: {_iso(skipped)} is taken for "
            f"that firing, moved, and does not fire; the next fire time is {_iso(fire)}"
        )
        event = NewEvent(
            kind="trigger.misfired",
            at=now,
            data={
                "flow": flow,
                "trigger": index,
                "cron": p["cron"],
                "fire_time": _iso(skipped),
                "reason": reason,
            },
        )
        log.warning("cron trigger %d of %s: %s", index + 1, flow, reason)
    else:
        log.info(
            "cron trigger %d of %s edited: the fire time pending was %s, the next one is %s",
            index + 1,
            flow,
            _iso(pending),
            _iso(fire),
        )
    return replace(row, due_at=fire, payload={**p, "fire_time": _iso(fire)}), event


def _carry_sweep(row: NewDueWork, old: StoredTrigger) -> NewDueWork | None:
    p = dict(row.payload)
    flow, index = str(p["flow"]), int(p["trigger"])
    watermark = _when(old.payload.get("watermark"))
    if watermark is None:
        return None
    if old.payload.get("since") != p["since"]:
        log.info(
            "after trigger %d of %s now counts from %s (was %s): it sweeps from %s on",
            index + 1,
            flow,
            p["since"],
            old.payload.get("since"),
            p["watermark"],
        )
        return None
    log.info(
        "after trigger %d of %s edited: it keeps sweeping from %s",
        index + 1,
        flow,
        _iso(watermark),
    )
    return replace(row, payload={**p, "watermark": _iso(watermark)})


__all__ = ["carried_fire_time", "carry_over", "log_unscheduled", "unscheduled"]


def unscheduled(
    stored: list[StoredTrigger], wanted: Mapping[str, NewDueWork], loaded: set[str]
) -> list[tuple[str, str]]:
    """(key, why) of each stored CRON or SWEEP row ``wanted`` drops without replacing
    it (an edit keeps the trigger's state in a new row: that is not dropping it).
    ``loaded``: the flows of this process's files."""
    dropped = []
    for old in stored:
        if old.kind not in (DueKind.CRON, DueKind.SWEEP) or old.key in wanted:
            continue
        if _replaced_by(old, wanted):
            continue
        flow, index = old.payload.get("flow"), old.payload.get("trigger")
        if flow in loaded:
            why = f"flow {flow} has no such trigger at position {index} in this process's files"
        else:
            why = f"flow {flow} is not among this process's flow files"
        dropped.append((old.key, why))
    return dropped


def log_unscheduled(dropped: list[tuple[str, str]]) -> None:
    for key, why in dropped:
        log.warning(
            "unscheduled trigger %s: %s. Each start and SIGHUP makes the stored triggers "
            "those of the process's own files, so every process sharing the database must "
            "serve the same flow files: if this one has old ones, update them and send it "
            "SIGHUP (or reload the process that has the trigger) to schedule it again",
            key,
            why,
        )


def _replaced_by(old: StoredTrigger, wanted: Mapping[str, NewDueWork]) -> bool:
    return any(_same_trigger(row, old) for row in wanted.values())
