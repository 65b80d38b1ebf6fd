"""Cron campaigns: a CRON row per trigger fires at each fire time; a FANOUT row per
firing walks the contacts and starts a run for each one in the audience.

- The CRON row's payload holds the trigger (expression, time zone, audience,
  misfire grace) and its next fire time. When it comes due, one atomic commit
  records the firing (``Commit.firing``: a (flow, trigger, fire time) fires once,
  across processes), adds the FANOUT row and moves the CRON row to the next fire
  time. A second process, or a stale row of an edited trigger, that reaches the same
  fire time gets ``Conflict`` and only moves on.
- Misfires (the engine was down or behind): fire times are coalesced, the newest
  one that is at most ``misfire_grace`` late fires once, and any older one is
  recorded as ``trigger.misfired``; if none is within grace, nothing fires.
- The FANOUT row handles ``chunk_size`` contacts (id order) per step, then puts its
  cursor (the last contact id) back into its own payload. Before each step it checks
  the flow still has the trigger with the audience it fired with (``trigger_gone``);
  if not, it stops and records ``trigger.abandoned`` with the reason. Runs are started before
  the cursor moves, with the key ``cron:{flow}:{trigger}:{fire time}:{contact}``: a
  chunk repeated after a crash starts nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.errors import Conflict, NotFound
from engine.flow.model import CronTrigger, Flow
from engine.models import DueKind, DueWork, NewDueWork, NewEvent
from engine.scheduler import CronSchedule
from engine.triggers_start import StartTally, TriggerContext, TriggerStart, select
from engine.wording import counted
from storage.base import Commit, Completion, TriggerFiring

log = logging.getLogger("disparo.triggers")

_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class CronPlan:
    """What a CRON row does when handled at ``now``."""

    fire: datetime | None  # the fire time to fan out now
    missed: datetime | None  # the oldest fire time given up (late beyond grace, or coalesced)
    next_fire: datetime | None  # when the row comes due again (None: never)


def plan_firing(schedule: CronSchedule, due: datetime, now: datetime, grace: timedelta) -> CronPlan:
    """Coalesce the fire times from ``due`` to ``now``: fire the newest one that is at
    most ``grace`` late; report ``due`` as missed when it does not fire itself.

    ``due`` is a fire time (the row stored it): within grace it fires as stored, and
    the schedule is only asked for newer fire times (coalescing) or, when ``due`` is
    over the grace, for the first fire time within it. So a row keeps the instant it
    was scheduled for even if the schedule would place it otherwise today (a row
    written by an older release, a time zone database updated in between).
    """
    if due > now:
        return CronPlan(fire=None, missed=None, next_fire=due)
    first = due if due >= now - grace else schedule.next_from(now - grace)
    fire = None if first is None or first > now else _newest_until(schedule, first, now)
    missed = due if fire is None or due < fire else None
    return CronPlan(fire=fire, missed=missed, next_fire=schedule.next_after(now))


def missed_reason(plan: CronPlan, now: datetime, grace: timedelta) -> str:
    """Why ``plan.missed`` did not fire, for trigger.misfired and the log.

    A fire time is only given up unfired when it is more than ``grace`` late, so the
    lateness is rounded up and the grace down: the first number is always larger.
    """
    if plan.fire is not None:
        return f"coalesced into the fire time {iso(plan.fire)}"
    assert plan.missed is not None
    late = math.ceil((now - plan.missed).total_seconds())
    return f"{late}s late, over the misfire grace of {math.floor(grace.total_seconds())}s"


def _newest_until(schedule: CronSchedule, first: datetime, now: datetime) -> datetime:
    """The last fire time <= ``now``, given one (``first``): a binary search, since
    cron fire times are whole minutes apart."""
    low, high = first, now + _MICROSECOND  # low fires; nothing in [high, ...) is <= now
    while high - low > _SECOND:
        middle = low + (high - low) / 2
        found = schedule.next_from(middle)
        if found is not None and found <= now:
            low = found
        else:
            high = middle
    return low


def cron_run_key(flow: str, trigger: int, fire_time: datetime, contact_id: str) -> str:
    """The idempotency key of the run a firing starts for a contact."""
    return f"cron:{flow}:{trigger}:{iso(fire_time)}:{contact_id}"


def _at(payload: Any, name: str) -> datetime:
    return datetime.fromisoformat(str(payload[name]))


async def handle_cron(ctx: TriggerContext, work: DueWork) -> None:
    """Fire (or give up) the fire time of a CRON row and move it to the next one."""
    p = dict(work.payload)
    flow, index = str(p["flow"]), int(p["trigger"])
    now = ctx.clock.now()
    schedule = CronSchedule(str(p["cron"]), str(p["timezone"]))
    grace = timedelta(seconds=float(p["misfire_grace"]))
    plan = plan_firing(schedule, _at(p, "fire_time"), now, grace)
    done = (
        Completion(work=work)
        if plan.next_fire is None
        else Completion(
            work=work, retry_at=plan.next_fire, payload={**p, "fire_time": iso(plan.next_fire)}
        )
    )
    base = {"flow": flow, "trigger": index, "cron": p["cron"]}
    events: list[NewEvent] = []
    if plan.missed is not None:
        reason = missed_reason(plan, now, grace)
        events.append(
            NewEvent(
                kind="trigger.misfired",
                at=now,
                data={**base, "fire_time": iso(plan.missed), "reason": reason},
            )
        )
        log.warning(
            "cron trigger %d of %s missed %s: %s", index + 1, flow, iso(plan.missed), reason
        )
    if plan.fire is None:
        await ctx.store.commit(Commit(now=now, done=done, events=events))
        return
    fire_iso = iso(plan.fire)
    fanout = NewDueWork(
        kind=DueKind.FANOUT,
        due_at=now,
        payload={
            "flow": flow,
            "trigger": index,
            "fire_time": fire_iso,
            "audience": p.get("audience"),
            "cursor": None,
            **_zero_counts(),
        },
    )
    fired = NewEvent(
        kind="trigger.fired",
        at=now,
        data={**base, "fire_time": fire_iso, "late_by": (now - plan.fire).total_seconds()},
    )
    try:
        await ctx.store.commit(
            Commit(
                now=now,
                done=done,
                firing=TriggerFiring(flow=flow, trigger=index, fire_time=plan.fire),
                new_due=[fanout],
                events=[*events, fired],
            )
        )
    except Conflict:
        log.info("cron trigger %d of %s already fired for %s", index + 1, flow, fire_iso)
        await ctx.store.commit(Commit(now=now, done=done))
        return
    log.info("cron trigger %d of %s fired for %s", index + 1, flow, fire_iso)
    ctx.notify()


async def handle_fanout(ctx: TriggerContext, work: DueWork) -> None:
    """Start the runs of one chunk of a firing's audience, then move the cursor."""
    p = dict(work.payload)
    flow_name, index = str(p["flow"]), int(p["trigger"])
    fire_time = _at(p, "fire_time")
    now = ctx.clock.now()
    try:
        loaded = ctx.catalog.latest(flow_name)
    except NotFound as exc:
        await _finish(ctx, work, p, now, abandoned=str(exc))
        return
    gone = trigger_gone(loaded.flow, index, p.get("audience"))
    if gone is not None:
        log.warning("fan-out of %s for %s abandoned: %s", flow_name, p["fire_time"], gone)
        await _finish(ctx, work, p, now, abandoned=gone)
        return
    chunk = ctx.settings.chunk_size
    page = await ctx.store.page_contacts(after=p.get("cursor"), limit=chunk)
    await asyncio.sleep(0)  # reading and decoding a chunk is one slice of the loop's time
    candidates = [
        TriggerStart(
            contact=contact,
            key=cron_run_key(flow_name, index, fire_time, contact.id),
            data={"fire_time": p["fire_time"]},
        )
        for contact in page
    ]
    audience = p.get("audience")
    chosen = select(
        candidates,
        lambda item: item.contact,
        flow=loaded.flow,
        now=now,
        default_timezone=ctx.default_timezone,
        audience=None if audience is None else str(audience),
    )
    tally = await ctx.starter().start_many(loaded, "cron", chosen.chosen)
    p = _counted(p, len(chosen.chosen), tally, chosen.errors, chosen.first_error)
    if len(page) < chunk:
        await _finish(ctx, work, p, ctx.clock.now())
        return
    p["cursor"] = page[-1].id
    await ctx.store.commit(
        Commit(now=ctx.clock.now(), done=Completion(work=work, retry_at=ctx.clock.now(), payload=p))
    )


def trigger_gone(flow: Flow, index: int, audience: Any) -> str | None:
    """Why a firing's fan-out must stop in the flow as loaded now (None: go on).

    A fan-out goes on while the flow has a cron trigger at the firing's index with the
    audience the firing was made with (an edit of its time or grace changes later
    firings only); a removed trigger, or an edited audience, stops it: the contacts
    not reached yet are not sent a campaign the flow no longer has."""
    trigger = flow.triggers[index] if index < len(flow.triggers) else None
    if not isinstance(trigger, CronTrigger):
        return f"trigger removed: flow {flow.flow!r} has no cron trigger {index + 1} any more"
    if trigger.audience != audience:
        return (
            f"trigger edited: the audience of cron trigger {index + 1} of flow {flow.flow!r} "
            "changed since it fired"
        )
    return None


async def _finish(
    ctx: TriggerContext,
    work: DueWork,
    p: dict[str, Any],
    now: datetime,
    *,
    abandoned: str | None = None,
) -> None:
    data = {k: v for k, v in p.items() if k not in ("cursor", "audience")}
    if abandoned is not None:
        data["reason"] = abandoned
    kind = "trigger.abandoned" if abandoned else "trigger.fanout_done"
    event = NewEvent(kind=kind, at=now, data=data)
    await ctx.store.commit(Commit(now=now, done=Completion(work=work), events=[event]))
    log.info(
        "fan-out of %s for %s %s: %s",
        p["flow"],
        p["fire_time"],
        "abandoned" if abandoned else "done",
        {k: v for k, v in data.items() if k in _COUNTS},
    )
    if data.get("errors"):
        # A campaign that could not decide about some contacts (an audience comparing
        # text with a number) reached fewer people than planned: say so, and why.
        log.warning(
            "fan-out of %s for %s left %s out on errors; the first: %s",
            p["flow"],
            p["fire_time"],
            counted(int(data["errors"]), "contact"),
            data.get("first_error"),
        )


_COUNTS = ("matched", "started", "already_active", "errors")


def _zero_counts() -> dict[str, Any]:
    return {"matched": 0, "started": 0, "already_active": 0, "errors": 0, "first_error": None}


def _counted(
    p: dict[str, Any], matched: int, tally: StartTally, errors: int, first_error: str | None
) -> dict[str, Any]:
    return {
        **p,
        "matched": int(p.get("matched", 0)) + matched,
        "started": int(p.get("started", 0)) + tally.started,
        "already_active": int(p.get("already_active", 0)) + tally.already_active,
        "errors": int(p.get("errors", 0)) + errors,
        "first_error": p.get("first_error") or first_error,
    }


def iso(moment: datetime) -> str:
    """A fire time as stored and logged: ISO-8601 in UTC."""
    return moment.astimezone(UTC).isoformat()
