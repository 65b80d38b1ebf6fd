"""Re-engagement sweeps: `after: 23h, since: last_inbound` starts a run for a contact
when its timestamp is ``after`` old, once per episode (per timestamp value).

One SWEEP row per `after` trigger. Its payload keeps a watermark: every timestamp up
to it has been swept. A sweep at ``now`` takes the window ``(watermark, now - after]``
and pages through it in (timestamp, id) order, ``chunk_size`` contacts per chunk and
up to ``CHUNKS_PER_STEP`` chunks per step (the loop runs other work between chunks),
the cursor in the payload between steps; each contact not excluded by ``unless``
gets a run keyed ``after:{flow}:{trigger}:{contact}:{timestamp}``, started through
the bulk path (``Store.start_runs``: the run and its START row, one transaction per
chunk; the dispatcher enters the first step).
A new timestamp (the contact wrote again) is a new episode and a new key; a step
repeated after a crash starts nothing twice. When the window is done the watermark
moves to its end.

When the next sweep runs:

- ``last_inbound``/``last_interaction``/``last_outbound`` are indexed columns: the
  sweep asks the store for the earliest timestamp past the watermark and sleeps
  until it comes due (at least ``sweep_interval``, at most ``after``, from now),
  since a timestamp written later is at least ``now`` and comes due after
  ``now + after``. An event stamped earlier than a timestamp already stored
  (a webhook delayed past newer ones) is picked up by the next sweep, late by that
  difference; one stamped before the watermark is never swept.
- ``context.<key>`` timestamps (ISO-8601 text, dates, Unix seconds or milliseconds:
  ``engine.context_time``; naive ones in the contact's time zone) can be set to any
  value at any time and have no index: every ``sweep_interval`` the sweep pages
  through all contacts by id. Fine for thousands of contacts; at millions prefer a
  contact column. A timestamp written after it came due is started by the next
  sweep when it came due at most a day before, counted ``too_old`` otherwise; a value
  that is not a time is counted as an error and logged once per sweep, and the
  other contacts are swept (``engine.sweep_context``).

A sweep that was not running (the engine was down) catches up the whole window
when it resumes; the flow's rules (e.g. `window: skip`) decide whether a late
message still makes sense.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from engine.errors import NotFound
from engine.flow.durations import format_duration
from engine.flow.loader import LoadedFlow
from engine.flow.model import Flow
from engine.models import Contact, DueWork, NewEvent
from engine.sweep_context import LATE_LIMIT, Page, context_page
from engine.triggers_start import StartTally, TriggerContext, select
from engine.wording import counted
from storage.base import Commit, Completion, ContactTimestamp, StartRequest

log = logging.getLogger("disparo.triggers")

SINCE_COLUMNS: dict[str, ContactTimestamp] = {
    "last_inbound": "last_inbound_at",
    "last_interaction": "last_interaction_at",
    "last_outbound": "last_outbound_at",
}
# Chunks one claim of the SWEEP row handles (yielding to the loop between them)
# before the cursor is stored: fewer claims and completions (each one fsync) per
# contact; a crash redoes at most these chunks, whose run keys start nothing twice.
CHUNKS_PER_STEP = 8
_COUNTS = ("matched", "started", "already_active", "excluded", "errors", "late", "too_old")


def after_run_key(flow: str, trigger: int, contact_id: str, stamp: datetime) -> str:
    """The idempotency key of a contact's re-engagement run: one per episode."""
    return after_key(flow, trigger, contact_id, iso(stamp))


def after_key(flow: str, trigger: int, contact_id: str, at: str) -> str:
    """``after_run_key`` from the timestamp already in ISO-8601 (``iso``)."""
    return f"after:{flow}:{trigger}:{contact_id}:{at}"


def next_sweep_at(
    now: datetime, *, interval: timedelta, after: timedelta, earliest: datetime | None
) -> datetime:
    """When to sweep again, knowing the earliest timestamp past the swept window (None:
    no contact has one yet). Never sooner than ``interval``, never later than ``after``
    (unless ``interval`` is longer)."""
    latest = now + max(interval, after)
    if earliest is None:
        return latest
    return min(latest, max(now + interval, earliest + after))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _at(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


async def handle_sweep(ctx: TriggerContext, work: DueWork) -> None:
    """Sweep up to ``CHUNKS_PER_STEP`` chunks of the window; reschedule for the next
    chunks or the next sweep."""
    p = dict(work.payload)
    flow_name, since = str(p["flow"]), str(p["since"])
    after = timedelta(seconds=float(p["after"]))
    now = ctx.clock.now()
    watermark = _at(p["watermark"])
    # Never behind the watermark: an `after` lengthened by an edit keeps the old
    # watermark (engine.triggers_edits), and the window waits until it comes due.
    cutoff = max(_at(p["cutoff"]) if p.get("cutoff") else now - after, watermark)
    try:
        loaded = ctx.catalog.latest(flow_name)
    except NotFound:
        # The flow is not served here (another process may serve it): try again later.
        retry = now + timedelta(seconds=ctx.settings.sweep_interval)
        await ctx.store.commit(Commit(now=now, done=Completion(work=work, retry_at=retry)))
        return
    chunk = ctx.settings.chunk_size
    unless = None if p.get("unless") is None else str(p["unless"])
    for _ in range(CHUNKS_PER_STEP):
        page = await _page(
            ctx, loaded.flow, p, watermark, cutoff, after, chunk, profile=unless is not None
        )
        await asyncio.sleep(0)  # reading and decoding a chunk is one slice of the loop's time
        await _start_chunk(ctx, loaded, p, page, unless, now)
        if page.read < chunk:
            break
        p["cursor"] = page.cursor
    now = ctx.clock.now()
    if page.read == chunk:
        p["cutoff"] = iso(cutoff)
        await ctx.store.commit(Commit(now=now, done=Completion(work=work, retry_at=now, payload=p)))
        return
    events = []
    if any(p.get(k) for k in ("matched", "errors", "late", "too_old")):
        data = {k: p.get(k) for k in ("flow", "trigger", "since", *_COUNTS, "first_error")}
        data.update(window_from=p["watermark"], window_to=iso(cutoff))
        events.append(NewEvent(kind="trigger.swept", at=now, data=data))
        log.info("sweep of %s up to %s: %s", flow_name, iso(cutoff), data)
        _warn(p, cutoff)
    nxt = await _next_sweep(ctx, since, cutoff, now, after)
    p.update(watermark=iso(cutoff), cutoff=None, cursor=None, first_error=None)
    p.update(dict.fromkeys(_COUNTS, 0))
    await ctx.store.commit(
        Commit(now=now, done=Completion(work=work, retry_at=nxt, payload=p), events=events)
    )


def _warn(p: dict[str, Any], cutoff: datetime) -> None:
    """Once per sweep: the contacts it could not decide about, and those whose
    timestamp was written too late to start."""
    where = f"sweep of trigger {int(p['trigger']) + 1} of {p['flow']} up to {iso(cutoff)}"
    if p.get("errors"):
        log.warning(
            "%s left %s out on errors; the first: %s",
            where,
            counted(int(p["errors"]), "contact"),
            p.get("first_error"),
        )
    if p.get("too_old"):
        # Info: a reply also changes a contact, and an old timestamp is no fault.
        log.info(
            "%s did not start %s changed since the last sweep whose %s came due more than "
            "%s before: taken for historic data",
            where,
            counted(int(p["too_old"]), "contact"),
            p["since"],
            format_duration(LATE_LIMIT),
        )


async def _start_chunk(
    ctx: TriggerContext,
    loaded: LoadedFlow,
    p: dict[str, Any],
    page: Page,
    unless: str | None,
    now: datetime,
) -> None:
    """Start a run for each candidate of ``page`` `unless` (evaluated at the sweep's
    ``now``) does not exclude; add the counts to the payload ``p``.

    A late candidate (written after it came due) whose run key exists was swept
    before and counts nowhere; those that start count as ``late`` too."""
    chosen = select(
        [*page.due, *page.late] if page.late else page.due,
        itemgetter(0),
        flow=loaded.flow,
        now=now,
        default_timezone=ctx.default_timezone,
        unless=unless,
    )
    due, late = chosen.chosen, []
    if page.late:
        late_ids = {contact.id for contact, _ in page.late}
        due = [pick for pick in chosen.chosen if pick[0].id not in late_ids]
        late = [pick for pick in chosen.chosen if pick[0].id in late_ids]
    tally = await _start(ctx, loaded, p, due)
    late_tally = await _start(ctx, loaded, p, late)
    p.update(
        matched=int(p.get("matched", 0)) + len(page.due) + len(page.late) - late_tally.existing,
        started=int(p.get("started", 0)) + tally.started + late_tally.started,
        already_active=int(p.get("already_active", 0))
        + tally.already_active
        + late_tally.already_active,
        excluded=int(p.get("excluded", 0)) + chosen.excluded,
        errors=int(p.get("errors", 0)) + page.errors + chosen.errors,
        first_error=p.get("first_error") or page.first_error or chosen.first_error,
        late=int(p.get("late", 0)) + late_tally.started,
        too_old=int(p.get("too_old", 0)) + page.too_old,
    )


async def _start(
    ctx: TriggerContext,
    loaded: LoadedFlow,
    p: dict[str, Any],
    picks: list[tuple[Contact, datetime]],
) -> StartTally:
    if not picks:
        return StartTally()
    flow_name, index, since = str(p["flow"]), int(p["trigger"]), str(p["since"])
    requests: list[StartRequest] = []
    for contact, stamp in picks:
        at = iso(stamp)
        requests.append(
            (contact.id, after_key(flow_name, index, contact.id, at), {"since": since, "at": at})
        )
    return await ctx.starter().start_requests(loaded, "after", requests)


async def _page(
    ctx: TriggerContext,
    flow: Flow,
    p: dict[str, Any],
    watermark: datetime,
    cutoff: datetime,
    after: timedelta,
    chunk: int,
    *,
    profile: bool,
) -> Page:
    """The next chunk of the window, after the cursor in ``p``.

    From an indexed column, a contact carries its id alone, or with ``profile`` what
    an expression reads (``Store.window_page``); a context key is read from every
    contact (``engine.sweep_context``)."""
    since = str(p["since"])
    column = SINCE_COLUMNS.get(since)
    if column is not None:
        cursor = p.get("cursor")
        found = await ctx.store.window_page(
            column,
            above=watermark,
            up_to=cutoff,
            cursor=None if not cursor else (_at(cursor[0]), str(cursor[1])),
            limit=chunk,
            profile=profile,
        )
        last = [iso(found[-1][1]), found[-1][0].id] if found else None
        return Page(read=len(found), due=found, cursor=last)
    contacts = await ctx.store.page_contacts(after=p.get("cursor"), limit=chunk)
    return context_page(
        contacts,
        flow=flow,
        since=since,
        default_timezone=ctx.default_timezone,
        watermark=watermark,
        cutoff=cutoff,
        after=after,
    )


async def _next_sweep(
    ctx: TriggerContext, since: str, cutoff: datetime, now: datetime, after: timedelta
) -> datetime:
    interval = timedelta(seconds=ctx.settings.sweep_interval)
    column = SINCE_COLUMNS.get(since)
    if column is None:
        return now + interval
    earliest = await ctx.store.window_page(column, above=cutoff, up_to=None, limit=1)
    stamp = earliest[0][1] if earliest else None
    return next_sweep_at(now, interval=interval, after=after, earliest=stamp)
