"""Starting runs for stored contacts in bulk: what cron fan-outs, re-engagement sweeps
and inbound keywords share.

Each run is its own atomic commit (a contact already in a one-at-a-time flow must
not undo the others), and the commits of a batch are issued together so the store
makes them durable with one group commit. Every run has an idempotency key derived
from the trigger (``cron:...``, ``after:...``, ``event:...``): a batch repeated after
a crash starts nothing twice. A contact that already has an open run of the flow is
recorded (``run.trigger_skipped``, once per key) and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.clock import Clock
from engine.errors import Conflict, RenderError
from engine.flow.loader import LoadedFlow
from engine.flow.model import Flow
from engine.flows import FlowCatalog
from engine.metrics import Metrics
from engine.models import Contact, NewEvent
from engine.render import RenderScope, is_true
from engine.run_start import start_commit
from engine.scope import contact_timezone
from engine.settings import TriggerSettings
from storage.base import Commit, Store

log = logging.getLogger("disparo.triggers")

# Commits issued together: small enough that building and writing them keeps the
# event loop busy for a few milliseconds at a time, large enough to share an fsync.
BATCH = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerStart:
    """One run a trigger wants: for ``contact``, under ``key``, with ``data`` logged."""

    contact: Contact
    key: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class StartTally:
    started: int = 0  # runs created now
    existing: int = 0  # the key had started a run before (a repeated chunk, a retry)
    already_active: int = 0  # the contact was already in the flow: recorded and skipped

    def add(self, other: StartTally) -> None:
        self.started += other.started
        self.existing += other.existing
        self.already_active += other.already_active


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerContext:
    """What trigger handlers work with (built by ``engine.triggers.Triggers``)."""

    store: Store
    clock: Clock
    catalog: FlowCatalog
    settings: TriggerSettings
    default_timezone: str
    metrics: Metrics
    notify: Callable[[], None]

    def starter(self) -> RunStarter:
        return RunStarter(self)


def skipped_event(flow: str, trigger: str, contact_id: str, key: str, now: datetime) -> NewEvent:
    """The record of a trigger that found the contact already in the flow (once per key)."""
    return NewEvent(
        kind="run.trigger_skipped",
        at=now,
        contact_id=contact_id,
        data={
            "flow": flow,
            "trigger": trigger,
            "key": key,
            "reason": "contact already has an open run of this flow",
        },
        dedupe_key=f"skipped:{key}",
    )


class RunStarter:
    """Starts runs of one flow for many stored contacts, batch by batch."""

    def __init__(self, ctx: TriggerContext) -> None:
        self.ctx = ctx

    async def start_many(
        self, loaded: LoadedFlow, trigger: str, items: Sequence[TriggerStart]
    ) -> StartTally:
        tally = StartTally()
        for offset in range(0, len(items), BATCH):
            await asyncio.sleep(0)  # let the rest of the engine run between batches
            now = self.ctx.clock.now()
            commits = [
                (
                    item,
                    start_commit(
                        loaded,
                        item.contact,
                        now=now,
                        default_timezone=self.ctx.default_timezone,
                        key=item.key,
                        trigger=trigger,
                        data=item.data,
                    ),
                )
                for item in items[offset : offset + BATCH]
            ]
            outcomes = await asyncio.gather(
                *(self._start(loaded.flow, trigger, item, commit) for item, commit in commits)
            )
            for outcome in outcomes:
                if outcome == "started":
                    tally.started += 1
                elif outcome == "existing":
                    tally.existing += 1
                else:
                    tally.already_active += 1
        if tally.started:
            self.ctx.metrics.runs.labels(loaded.flow.flow, "started").inc(tally.started)
            self.ctx.notify()
        return tally

    async def _start(self, flow: Flow, trigger: str, item: TriggerStart, commit: Commit) -> str:
        try:
            result = await self.ctx.store.commit(commit)
        except Conflict:
            now = self.ctx.clock.now()
            event = skipped_event(flow.flow, trigger, item.contact.id, item.key, now)
            await self.ctx.store.commit(Commit(now=now, events=[event]))
            log.info(
                "%s trigger of %s skipped contact %s: already in the flow",
                trigger,
                flow.flow,
                item.contact.id,
            )
            return "already_active"
        return "started" if result.created else "existing"


@dataclass(slots=True, kw_only=True)
class Selection:
    """Contacts an expression let through, and the errors it raised on the others."""

    chosen: list[TriggerStart] = field(default_factory=list)
    excluded: int = 0
    errors: int = 0
    first_error: str | None = None


def expression_holds(
    expression: str,
    contact: Contact,
    *,
    flow: Flow,
    now: datetime,
    default_timezone: str,
    field_name: str,
) -> bool:
    """Whether an `audience:`/`unless:` expression holds for a contact (``RenderError``
    when it cannot be evaluated, e.g. a missing variable)."""
    scope = RenderScope(
        contact=contact,
        context=contact.context,
        run={"flow": flow.flow},
        now=now,
        timezone=contact_timezone(contact, flow, default_timezone),
    )
    return is_true(expression, scope, flow=flow.flow, step="triggers", field=field_name)


def select(
    candidates: Sequence[TriggerStart],
    *,
    flow: Flow,
    now: datetime,
    default_timezone: str,
    audience: str | None = None,
    unless: str | None = None,
) -> Selection:
    """Keep the candidates that are in ``audience`` and not excluded by ``unless``.

    A contact whose expression fails (a missing variable) is left out and counted as
    an error: a campaign never goes to a contact it cannot decide about.
    """
    out = Selection()
    for item in candidates:
        try:
            if audience is not None and not expression_holds(
                audience,
                item.contact,
                flow=flow,
                now=now,
                default_timezone=default_timezone,
                field_name="audience",
            ):
                out.excluded += 1
                continue
            if unless is not None and expression_holds(
                unless,
                item.contact,
                flow=flow,
                now=now,
                default_timezone=default_timezone,
                field_name="unless",
            ):
                out.excluded += 1
                continue
        except RenderError as exc:
            out.errors += 1
            out.first_error = out.first_error or f"contact {item.contact.id}: {exc}"
            continue
        out.chosen.append(item)
    return out
