"""Starting runs for stored contacts in bulk: what cron fan-outs, re-engagement sweeps
and inbound keywords share.

Runs start through the store's bulk path (``Store.start_runs``): per contact only
what makes the start durable and idempotent (the run, not yet entered, and its
START due-work row), a batch per transaction. The dispatcher enters each run's
first step when it claims the START row, and writes its ``run.started`` event then
(``engine.run_enter``). Every run has an idempotency key derived from the trigger
(``cron:...``, ``after:...``, ``event:...``): a batch repeated after a crash starts
nothing twice. A contact that already has an open run of a one-at-a-time flow is
recorded (``run.trigger_skipped``, once per key) and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from engine.clock import Clock
from engine.errors import RenderError
from engine.flow.loader import LoadedFlow
from engine.flow.model import Flow
from engine.flows import FlowCatalog
from engine.metrics import Metrics
from engine.models import Contact, ContactUpsert
from engine.settings import TriggerSettings
from engine.trigger_filter import ContactFilter
from storage.base import BulkStart, StartRequest, Store

log = logging.getLogger("disparo.triggers")

T = TypeVar("T")

# Runs started per transaction: writing a batch keeps the event loop busy for a few
# milliseconds (well under the 50 ms a stall may last), and shares one fsync.
BATCH = 1000


def bulk_start(
    loaded: LoadedFlow,
    trigger: str,
    requests: Sequence[StartRequest],
    *,
    now: datetime,
    contacts: Sequence[ContactUpsert] = (),
) -> BulkStart:
    """The ``Store.start_runs`` batch that starts ``loaded`` (its exact version) for
    ``requests``; ``contacts`` (one per request) are written for the runs that start."""
    flow = loaded.flow
    return BulkStart(
        flow=flow.flow,
        flow_version=loaded.version,
        trigger=trigger,
        exclusive=flow.concurrency == "one",
        now=now,
        requests=requests,
        contacts=contacts,
    )


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


class RunStarter:
    """Starts runs of one flow for many stored contacts, a batch per transaction."""

    def __init__(self, ctx: TriggerContext) -> None:
        self.ctx = ctx

    async def start_many(
        self, loaded: LoadedFlow, trigger: str, items: Sequence[TriggerStart]
    ) -> StartTally:
        return await self.start_requests(
            loaded, trigger, [(item.contact.id, item.key, item.data) for item in items]
        )

    async def start_requests(
        self, loaded: LoadedFlow, trigger: str, requests: Sequence[StartRequest]
    ) -> StartTally:
        """Start a run per (contact id, key, data) request; the tally of what happened."""
        flow = loaded.flow
        tally = StartTally()
        for offset in range(0, len(requests), BATCH):
            if offset:
                await asyncio.sleep(0)  # let the rest of the engine run between batches
            result = await self.ctx.store.start_runs(
                bulk_start(
                    loaded, trigger, requests[offset : offset + BATCH], now=self.ctx.clock.now()
                )
            )
            tally.started += result.started
            tally.existing += result.existing
            tally.already_active += len(result.already_active)
            for contact_id in result.already_active:
                log.info(
                    "%s trigger of %s skipped contact %s: already in the flow",
                    trigger,
                    flow.flow,
                    contact_id,
                )
        if tally.started:
            self.ctx.metrics.runs.labels(flow.flow, "started").inc(tally.started)
            self.ctx.notify()
        return tally


@dataclass(slots=True, kw_only=True)
class Selection(Generic[T]):
    """Candidates an expression let through, and the errors it raised on the others."""

    chosen: list[T] = field(default_factory=list)
    excluded: int = 0
    errors: int = 0
    first_error: str | None = None


def select(
    candidates: Iterable[T],
    contact_of: Callable[[T], Contact],
    *,
    flow: Flow,
    now: datetime,
    default_timezone: str,
    audience: str | None = None,
    unless: str | None = None,
) -> Selection[T]:
    """Keep the candidates whose contact is in ``audience`` and not excluded by ``unless``.

    A contact whose expression fails (a missing variable) is left out and counted as
    an error: a campaign never goes to a contact it cannot decide about.
    """
    out: Selection[T] = Selection()
    # (filter, what it must say for the contact to be kept)
    tests = [
        (
            ContactFilter(expr, field=name, flow=flow, now=now, default_timezone=default_timezone),
            keep,
        )
        for name, expr, keep in (("audience", audience, True), ("unless", unless, False))
        if expr is not None
    ]
    for item in candidates:
        contact = contact_of(item)
        try:
            if any(test.holds(contact) != keep for test, keep in tests):
                out.excluded += 1
                continue
        except RenderError as exc:
            out.errors += 1
            out.first_error = out.first_error or f"contact {contact.id}: {exc}"
            continue
        out.chosen.append(item)
    return out
