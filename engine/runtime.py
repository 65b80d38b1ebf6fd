"""The Engine: store, flows, providers, dispatcher and scheduler with one explicit lifecycle.

    async with Engine(settings) as engine:
        run, created = await engine.start_run("cobranca_boleto", contact, context=...)

Everything the HTTP API and the CLI do goes through these methods.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from engine import run_cancel
from engine.check import flow_checks, load_catalog
from engine.clock import Clock, SystemClock
from engine.contact_events import came_in_on, outcome_per_event, resolve_contacts
from engine.dispatcher import Dispatcher, DispatchSettings
from engine.errors import Conflict, NotFound, ProviderRejected
from engine.event_times import ArrivalClamp
from engine.flow.validate import FlowCheck
from engine.flows import FlowCatalog, Reloaded, warn_left_out
from engine.ignored_status import ignored_events
from engine.inbound_text import without_nul
from engine.metrics import Metrics
from engine.models import (
    Contact,
    ContactEvent,
    ContactUpsert,
    DueKind,
    DueWork,
    Event,
    Message,
    NewDueWork,
    NewEvent,
    Run,
    StatusReport,
)
from engine.provider_state import StoreProviderState
from engine.retention import Retention
from engine.run_start import start_commit
from engine.settings import Settings
from engine.start_refusal import refuse_start
from engine.start_request import REQUEST, refuse_another_request, request_digests
from engine.stores import open_store
from engine.template_catalog import TemplateCatalog, template_changes
from engine.triggers import Triggers
from providers.base import Provider
from providers.registry import provider_class
from storage.base import Commit, ContactChange, IngestOutcome, StatusTarget, Store

log = logging.getLogger("disparo.engine")


# What an event or report stored now (not a duplicate, not refused) was answered.
ACCEPTED_OUTCOMES = frozenset({"queued", "applied", "pending"})


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookOutcome:
    accepted: int = 0
    duplicates: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        run_loop: bool = True,
        owner: str | None = None,
        triggers: bool = True,
        offline: bool = False,
    ) -> None:
        self.settings = settings
        # Store only (``disparo why/export/erase/purge``): no providers, no dispatcher,
        # and the flow files that load (``FlowCatalog.load_readable``).
        self.offline = offline
        self.clock: Clock = clock or SystemClock()
        self.store: Store = store or open_store(settings.storage)
        self.metrics = Metrics()
        self.run_loop = run_loop
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.providers: dict[str, Provider] = {}
        # ProviderHost: rate budgets and login tokens, shared by every process on the store.
        self.provider_state = StoreProviderState(self.store, self.clock, self.owner)
        self._catalog: FlowCatalog | None = None
        self._dispatcher: Dispatcher | None = None
        # cron, `after` and `event` triggers (off for one-shot commands and simulations)
        self.runs_triggers = triggers
        self._triggers: Triggers | None = None
        # Inbound times are never later than their arrival (engine.event_times).
        self._arrivals = ArrivalClamp(lambda source: self.metrics.clamped.labels(source).inc())
        # The purge of what finished long ago (runs only while the loop runs).
        self.retention = Retention(
            store=self.store,
            clock=self.clock,
            settings=settings.retention,
            flows=lambda: (
                self.catalog.every_version()
                if offline
                else (loaded.flow for loaded in self.catalog.current.values())
            ),
            metrics=self.metrics,
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Engine:
        await self.store.open()
        try:
            if self.offline:
                self._catalog, left_out = await FlowCatalog.load_readable(
                    self.store, Path(self.settings.flows)
                )
                warn_left_out(left_out)
                return self
            for name, config in self.settings.providers.items():
                cls = provider_class(config.type)
                provider: Provider = cls(name, config, self)
                await provider.start()
                self.providers[name] = provider
                # On /metrics from the start: a closed circuit reads 0, not "no data".
                self.metrics.child(self.metrics.circuit_open, name).set(0)
            templates, checks = self._templates_and_checks()
            self._catalog = await FlowCatalog.load(
                self.store,
                Path(self.settings.flows),
                providers={n: p.capabilities for n, p in self.providers.items()},
                checks=checks,
            )
            d = self.settings.dispatcher
            triggers_on = self.runs_triggers
            self._dispatcher = Dispatcher(
                store=self.store,
                clock=self.clock,
                catalog=self._catalog,
                providers=self.providers,
                metrics=self.metrics,
                settings=DispatchSettings(
                    lease_seconds=d.lease_seconds,
                    max_in_flight=d.max_in_flight,
                    poll_interval=d.poll_interval,
                    max_attempts=d.max_attempts,
                    backoff_base=d.backoff_base,
                    backoff_cap=d.backoff_cap,
                    max_retry_after=d.max_retry_after,
                    default_timezone=self.settings.timezone,
                    breaker_failures=d.breaker_failures,
                    breaker_cooldown=d.breaker_cooldown,
                    breaker_cooldown_cap=d.breaker_cooldown_cap,
                    opt_out_keywords=tuple(self.settings.opt_out_keywords),
                ),
                owner=self.owner,
                on_callback=self._callback,
                templates=templates,
                on_trigger=self._on_trigger if triggers_on else None,
            )
            if triggers_on:
                self._triggers = Triggers(
                    store=self.store,
                    clock=self.clock,
                    catalog=self._catalog,
                    settings=self.settings,
                    metrics=self.metrics,
                    notify=self._dispatcher.notify,
                )
                await self._triggers.schedule()
            if self.run_loop:
                self._dispatcher.start()
                self.retention.start()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        await self.retention.stop()
        if self._dispatcher is not None:
            await self._dispatcher.stop(grace=self.settings.dispatcher.shutdown_grace)
        for provider in self.providers.values():
            await provider.close()
        await self.store.close()

    async def reload_flows(self) -> Reloaded:
        """Read the template catalogue and the flow files again and reschedule the
        triggers (``disparo serve`` on SIGHUP); a ``UserInputError`` (a bad flow or
        catalogue) changes nothing. Runs keep their versions."""
        templates, checks = self._templates_and_checks()
        changed = await self.catalog.reload(checks)
        added, edited, removed = template_changes(self.dispatcher.templates, templates)
        self.dispatcher.templates = templates
        if self._triggers is not None:
            await self._triggers.schedule()
        return replace(
            changed, templates_added=added, templates_changed=edited, templates_removed=removed
        )

    def _templates_and_checks(self) -> tuple[TemplateCatalog | None, list[FlowCheck]]:
        """The template catalogue, read now, and the checks every flow must pass with
        it and the providers' capabilities."""
        templates = load_catalog(self.settings)
        capabilities = {name: p.capabilities for name, p in self.providers.items()}
        return templates, flow_checks(capabilities, templates, self.settings.opt_out_keywords)

    @property
    def catalog(self) -> FlowCatalog:
        assert self._catalog is not None, "use `async with Engine(...)`"
        return self._catalog

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None, "use `async with Engine(...)`"
        return self._dispatcher

    # ------------------------------------------------------------------ runs

    async def start_run(
        self,
        flow_name: str,
        contact: ContactUpsert,
        *,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        trigger: str = "api",
    ) -> tuple[Run, bool]:
        """Start ``flow_name`` for a contact; the same idempotency key starts one run.

        Raises ``Conflict`` when the contact already has an open run of a flow that
        allows one at a time (the refusal is recorded as an event).
        """
        loaded = self.catalog.latest(flow_name)
        flow = loaded.flow
        now = self.clock.now()
        digests = (
            request_digests(flow.flow, contact, context, idempotency_key)
            if idempotency_key
            else None
        )
        if context:
            contact = replace(contact, context={**(contact.context or {}), **context})

        def build(stored: Contact) -> Commit:
            return start_commit(
                loaded,
                stored,
                now=now,
                default_timezone=self.settings.timezone,
                key=idempotency_key,
                trigger=trigger,
                data={REQUEST: digests} if digests else None,
                context=context,
            )

        # One store call: a replayed request and a refused one change nothing, the
        # contact included; otherwise the contact and the run are written together.
        try:
            result = await self.store.start_run(
                contact,
                key=idempotency_key,
                flow=flow.flow,
                exclusive=flow.concurrency == "one",
                now=now,
                build=build,
            )
        except Conflict:
            await refuse_start(self.store, flow.flow, contact.id, trigger, now)
        assert result.run is not None
        if not result.created:
            await refuse_another_request(
                self.store,
                result.run,
                flow=flow.flow,
                contact_id=contact.id,
                key=idempotency_key,
                digests=digests,
            )
        else:
            self.metrics.child(self.metrics.runs, flow.flow, "started").inc()
            log.info("started run %s of %s for contact %s", result.run.id, flow.flow, contact.id)
            self.dispatcher.notify()
        return result.run, result.created

    async def cancel_run(self, run_id: str, reason: str = "cancelled through the API") -> Run:
        """Cancel an open run and its due work (``engine.run_cancel``)."""
        return await run_cancel.cancel_run(self.store, run_id, reason=reason, now=self.clock.now())

    async def get_run(self, run_id: str) -> Run:
        run = await self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        return run

    async def get_message(self, message_id: str) -> Message:
        message = await self.store.get_message(message_id)
        if message is None:
            raise NotFound(f"message {message_id} does not exist")
        return message

    async def get_contact(self, contact_id: str) -> Contact:
        contact = await self.store.get_contact(contact_id)
        if contact is None:
            raise NotFound(f"contact {contact_id} does not exist")
        return contact

    async def decisions(
        self, contact_id: str, flow: str | None = None, limit: int = 200
    ) -> list[Event]:
        """Rule decisions and run events behind what was (not) sent, newest first."""
        await self.check_flow_filter(contact_id, flow)
        events = await self.store.list_events(contact_id=contact_id, limit=limit)
        if flow is None:
            return events
        # The flow's runs from the runs themselves: the newest `limit` events of the
        # contact may not reach back to a run's start.
        runs = [r.id for r in await self.store.list_contact_runs(contact_id) if r.flow == flow]
        found = {e.id: e for e in events if e.run_id is None and e.data.get("flow") == flow}
        for run_id in runs:
            found.update(
                (e.id, e) for e in await self.store.list_events(run_id=run_id, limit=limit)
            )
        return sorted(found.values(), key=lambda e: e.id, reverse=True)[:limit]

    async def check_flow_filter(self, contact_id: str, flow: str | None) -> None:
        """``NotFound`` for an unknown contact, and for a ``flow`` filter that is neither
        loaded nor the flow of any run of the contact (a misspelling), naming the loaded
        flows. A flow taken off disk still filters the runs it left behind."""
        await self.get_contact(contact_id)
        if flow is None or flow in self.catalog.current:
            return
        if not any(run.flow == flow for run in await self.store.list_contact_runs(contact_id)):
            self.catalog.latest(flow)  # raises NotFound naming the loaded flows

    # ------------------------------------------------------------------ what comes in

    async def ingest_contact_events(self, events: Sequence[ContactEvent]) -> list[IngestOutcome]:
        """Durably record contact events (replies, clicks, attendance, opt-out)."""
        now = self.clock.now()
        resolved, origins = await resolve_contacts(
            self.store,
            self._arrivals.clamp(list(events), now),
            now,
            self.settings.opt_out_keywords,
        )
        outcomes = await self.store.ingest_contact_events(resolved, now)
        for event, outcome in zip(resolved, outcomes, strict=True):
            log.info("inbound %s of contact %s: %s", event.type, event.contact_id, outcome)
        if self._triggers is not None:  # stored first: a start lost here is retried (2xx not sent)
            await self._triggers.on_contact_events(resolved, outcomes)
        self.dispatcher.notify()
        return outcome_per_event(outcomes, origins, len(events))

    async def ingest_status_reports(self, reports: Sequence[StatusReport]) -> list[IngestOutcome]:
        """Store the reports; those the message's run ignores are applied at once."""
        now = self.clock.now()
        applied_now: list[StatusTarget] = []

        def run_ignores(target: StatusTarget) -> list[NewEvent] | None:
            loaded = self.catalog.cached(target.run.flow, target.run.flow_version)
            if loaded is None:
                return None  # the dispatcher applies it, loading that version from the store
            events = ignored_events(loaded.flow, target, now)
            if events is not None:
                applied_now.append(target)
            return events

        reports = self._arrivals.clamp(list(reports), now)
        outcomes = await self.store.ingest_status_reports(reports, now, run_ignores=run_ignores)
        # Durable now: each report ``run_ignores`` answered for is an ``applied`` outcome.
        for t in applied_now:
            self.dispatcher.status_moved(t.provider, t.message_id, t.run.id, t.status)
        self.dispatcher.notify()
        return outcomes

    async def ingest_webhook(
        self, provider_name: str, body: bytes, headers: Mapping[str, str]
    ) -> WebhookOutcome:
        """Parse a provider webhook and store what it says before the caller answers 2xx."""
        provider = self.providers.get(provider_name)
        if provider is None:
            raise NotFound(f"no provider named {provider_name!r} is configured")
        parsed = provider.parse_webhook(body, headers, self.clock.now())
        if not parsed.statuses and not parsed.contact_events and parsed.errors:
            raise ProviderRejected("; ".join(parsed.errors), status=400)
        outcomes: list[IngestOutcome] = []
        # A NUL (\u0000) or a lone surrogate in a vendor's text is junk no store can keep
        # (engine.inbound_text): dropped or replaced here, on every store alike.
        if parsed.statuses:
            outcomes += await self.ingest_status_reports(without_nul(parsed.statuses))
        if events := came_in_on(without_nul(parsed.contact_events), provider.capabilities):
            outcomes += await self.ingest_contact_events(events)
        return WebhookOutcome(
            accepted=sum(o in ACCEPTED_OUTCOMES for o in outcomes),
            duplicates=outcomes.count("duplicate"),
            pending=outcomes.count("pending"),
            errors=parsed.errors,
        )

    async def _on_trigger(self, work: DueWork) -> None:
        assert self._triggers is not None
        await self._triggers.handle(work)

    async def _callback(self, provider: str, body: bytes) -> None:
        await self.ingest_webhook(provider, body, {})

    async def schedule_callback(self, provider: str, delay_seconds: float, body: bytes) -> None:
        """ProviderHost: replay ``body`` as a webhook of ``provider`` later, durably."""
        await self.store.commit(
            Commit(
                now=self.clock.now(),
                new_due=[
                    NewDueWork(
                        kind=DueKind.CALLBACK,
                        due_at=self.clock.now() + timedelta(seconds=delay_seconds),
                        payload={"provider": provider, "body": body.decode()},
                    )
                ],
            )
        )
        self.dispatcher.notify()

    async def upsert_contact(self, upsert: ContactUpsert) -> Contact:
        return await self.store.upsert_contact(upsert, self.clock.now())

    async def set_context(self, contact_id: str, patch: Mapping[str, Any]) -> None:
        await self.store.commit(
            Commit(
                now=self.clock.now(),
                contact=ContactChange(contact_id=contact_id, context_patch=patch),
            )
        )

    # ------------------------------------------------------------------ virtual time

    async def settle(self) -> int:
        """Handle everything due now (used with a virtual clock)."""
        return await self.dispatcher.process_due()

    async def run_until(self, until: datetime) -> None:
        """Advance a virtual clock to ``until``, handling due work in time order."""
        from engine.clock import VirtualClock

        clock = self.clock
        assert isinstance(clock, VirtualClock), "run_until needs a VirtualClock"
        await self.settle()
        while True:
            nxt = await self.store.next_due_at()
            if nxt is None or nxt > until:
                break
            if nxt > clock.now():
                clock.set(nxt)
            await self.settle()
        if until > clock.now():
            clock.set(until)
        await self.settle()


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)
