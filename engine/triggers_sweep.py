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
- ``context.<key>`` timestamps (ISO-8601 strings, dates, or Unix seconds; naive ones
  in the contact's time zone) can be set to any value at any time and have no index:
  every ``sweep_interval`` the sweep pages through all contacts by id. Fine for
  thousands of contacts; at millions prefer a contact column.

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
from zoneinfo import ZoneInfo

from engine.errors import NotFound
from engine.flow.loader import LoadedFlow
from engine.flow.model import Flow
from engine.models import Contact, DueWork, NewEvent
from engine.scope import contact_timezone
from engine.triggers_start import TriggerContext, select
from storage.base import Commit, Completion, ContactTimestamp, StartRequest

log = logging.getLogger("disparo.triggers")

SINCE_COLUMNS: dict[str, ContactTimestamp] = {
    "last_inbound": "last_inbound_at",
    "last_interaction": "last_interaction_at",
    "last_outbound": "last_outbound_at",
}
_CONTEXT = "context."
# Chunks one claim of the SWEEP row handles (yielding to the loop between them)
# before the cursor is stored: fewer claims and completions (each one fsync) per
# contact; a crash redoes at most these chunks, whose run keys start nothing twice.
CHUNKS_PER_STEP = 8
_COUNTS = ("matched", "started", "already_active", "excluded", "errors")


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


def context_timestamp(contact: Contact, path: str, zone: ZoneInfo) -> datetime | None:
    """The UTC time stored at ``context.<path>`` of a contact, or None when it is not a
    time (missing, not a date, not ISO-8601)."""
    value: Any = contact.context
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


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
    cutoff = _at(p["cutoff"]) if p.get("cutoff") else now - after
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
        page, candidates, cursor = await _page(
            ctx, loaded.flow, p, since, watermark, cutoff, chunk, profile=unless is not None
        )
        await asyncio.sleep(0)  # reading and decoding a chunk is one slice of the loop's time
        await _start_chunk(ctx, loaded, p, candidates, unless, now)
        if page < chunk:
            break
        p["cursor"] = cursor
    now = ctx.clock.now()
    if page == chunk:
        p["cutoff"] = iso(cutoff)
        await ctx.store.commit(Commit(now=now, done=Completion(work=work, retry_at=now, payload=p)))
        return
    events = []
    if p["matched"] or p["errors"]:
        data = {k: p.get(k) for k in ("flow", "trigger", "since", *_COUNTS, "first_error")}
        data.update(window_from=p["watermark"], window_to=iso(cutoff))
        events.append(NewEvent(kind="trigger.swept", at=now, data=data))
        log.info("sweep of %s up to %s: %s", flow_name, iso(cutoff), data)
    nxt = await _next_sweep(ctx, since, cutoff, now, after)
    p.update(watermark=iso(cutoff), cutoff=None, cursor=None, first_error=None)
    p.update(dict.fromkeys(_COUNTS, 0))
    await ctx.store.commit(
        Commit(now=now, done=Completion(work=work, retry_at=nxt, payload=p), events=events)
    )


async def _start_chunk(
    ctx: TriggerContext,
    loaded: LoadedFlow,
    p: dict[str, Any],
    candidates: list[tuple[Contact, datetime]],
    unless: str | None,
    now: datetime,
) -> None:
    """Start a run for each candidate `unless` (evaluated at the sweep's ``now``) does
    not exclude; add the counts to the payload ``p``."""
    flow_name, index, since = str(p["flow"]), int(p["trigger"]), str(p["since"])
    chosen = select(
        candidates,
        itemgetter(0),
        flow=loaded.flow,
        now=now,
        default_timezone=ctx.default_timezone,
        unless=unless,
    )
    requests: list[StartRequest] = []
    for contact, stamp in chosen.chosen:
        at = iso(stamp)
        requests.append(
            (contact.id, after_key(flow_name, index, contact.id, at), {"since": since, "at": at})
        )
    tally = await ctx.starter().start_requests(loaded, "after", requests)
    p.update(
        matched=int(p.get("matched", 0)) + len(candidates),
        started=int(p.get("started", 0)) + tally.started,
        already_active=int(p.get("already_active", 0)) + tally.already_active,
        excluded=int(p.get("excluded", 0)) + chosen.excluded,
        errors=int(p.get("errors", 0)) + chosen.errors,
        first_error=p.get("first_error") or chosen.first_error,
    )


async def _page(
    ctx: TriggerContext,
    flow: Flow,
    p: dict[str, Any],
    since: str,
    watermark: datetime,
    cutoff: datetime,
    chunk: int,
    *,
    profile: bool,
) -> tuple[int, list[tuple[Contact, datetime]], Any]:
    """(contacts read, the (contact, timestamp) in the window, the cursor after them).

    From an indexed column, a contact carries its id alone, or with ``profile`` what
    an expression reads (``Store.window_page``)."""
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
        return len(found), found, last
    path = since.removeprefix(_CONTEXT)
    contacts = await ctx.store.page_contacts(after=p.get("cursor"), limit=chunk)
    in_window = []
    for contact in contacts:
        zone = contact_timezone(contact, flow, ctx.default_timezone)
        stamp = context_timestamp(contact, path, zone)
        if stamp is not None and watermark < stamp <= cutoff:
            in_window.append((contact, stamp))
    return len(contacts), in_window, contacts[-1].id if contacts else None


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
