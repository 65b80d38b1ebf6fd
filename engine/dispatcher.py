"""The dispatcher: claims due work with a lease and a fence and handles it.

Every delay, timeout, deferral, retry, status report and inbound event reaches a
run as a due-work row. The dispatcher claims rows, runs the pure state machine,
and writes the outcome in one atomic commit that completes the row under its
fence, so a stale worker can never commit over a newer claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine import clock_skew, runner
from engine.circuit import CircuitBreaker
from engine.clock import Clock
from engine.clock_skew import ClockWatch
from engine.closed_runs import skip_queued
from engine.effects import Effects, collect_effects, run_commit, state_change
from engine.errors import MAX_STALE_RETRIES, StaleFence, StaleRun, StoreUnavailable
from engine.flows import FlowCatalog
from engine.inbound_work import apply_inbound
from engine.keyed_locks import KeyedLocks
from engine.metrics import Metrics
from engine.models import (
    Contact,
    DueKind,
    DueWork,
    MessageStatus,
    NewEvent,
    Run,
)
from engine.opt_out import DEFAULT_OPT_OUT_KEYWORDS
from engine.outage_log import OutageLog
from engine.outcome_keeper import OutcomeKeeper
from engine.run_enter import enter_run
from engine.scope import RunnerScope, contact_timezone
from engine.status_reports import apply_status_report
from engine.template_catalog import TemplateCatalog
from engine.timer_turn import gave_way
from engine.wait_statuses import MAX_REPORTS_FED, already_reported
from providers.base import Provider
from storage.base import (
    Commit,
    CommitResult,
    Completion,
    ContactChange,
    MessageChange,
    Store,
)

log = logging.getLogger("disparo.dispatcher")


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchSettings:
    lease_seconds: float = 30.0
    max_in_flight: int = 64
    poll_interval: float = 1.0
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    max_retry_after: float = 3600.0
    default_timezone: str = "America/Sao_Paulo"
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    breaker_cooldown_cap: float = 300.0
    opt_out_keywords: tuple[str, ...] = DEFAULT_OPT_OUT_KEYWORDS


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        catalog: FlowCatalog,
        providers: dict[str, Provider],
        metrics: Metrics,
        settings: DispatchSettings,
        owner: str,
        on_callback: Callable[[str, bytes], Any],
        templates: TemplateCatalog | None = None,
        rng: random.Random | None = None,
        on_trigger: Callable[[DueWork], Awaitable[None]] | None = None,
    ) -> None:
        self.store, self.clock, self.catalog = store, clock, catalog
        self.templates = templates
        self._breakers: dict[str, CircuitBreaker] = {}
        self.providers, self.metrics, self.settings = providers, metrics, settings
        self.owner = owner
        self.rng = rng or random.Random()
        self._on_callback = on_callback
        self._on_trigger = on_trigger
        self.locks = KeyedLocks()  # one per run: this process never handles a run twice at once
        # One per contact: this process decides one send of a contact at a time
        # (engine.outbound_counts).
        self.deciding = KeyedLocks()
        self.wake = asyncio.Event()
        self._tasks: dict[int, tuple[asyncio.Task[None], DueWork]] = {}
        # The lease's end of each row in hand, as its claim or the last heartbeat set it.
        self.lease_ends: dict[int, datetime] = {}
        # Send outcomes the store could not take at once (engine.outcome_keeper).
        self.keeper = OutcomeKeeper(self)
        self._stopping = False
        self._outage = OutageLog(log, "no due work is claimed", "failed claims")
        self._loop_task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._clock_task: asyncio.Task[None] | None = None
        # Imported here to keep module import order simple; sending needs the dispatcher.
        from engine.sending import Sender

        self.sender = Sender(self)

    # ------------------------------------------------------------------ loop

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="disparo-dispatcher")
        self._beat_task = asyncio.create_task(self._heartbeat(), name="disparo-heartbeat")
        watch = ClockWatch(self.store, self.clock, self.metrics, self.settings.lease_seconds)
        self._clock_task = asyncio.create_task(watch.run(), name="disparo-clock-watch")

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; give back the sends that have not left; let the rest of the
        work in flight finish within ``grace`` seconds, then cancel it."""
        self._stopping = True
        self.wake.set()
        loop_task = self._loop_task
        if loop_task is not None:
            # Let a claim in progress finish and spawn its work: cancelling it half
            # way would leave rows leased with nobody to run them until the lease ends.
            done, _ = await asyncio.wait([loop_task], timeout=grace)
            if not done:
                loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        await clock_skew.stop(self._clock_task)
        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
        # A send queued for one of its provider's connections has not left: cancelled,
        # it goes back to the queue now, instead of holding the shutdown (or being cut
        # off after the grace and left `sending`, ambiguous without idempotency keys).
        given_back = set()
        for work_id in self.sender.withdraw_waiting():
            found = self._tasks.get(work_id)
            if found is not None:
                found[0].cancel()
                given_back.add(found[0])
        pending = [t for t, _ in self._tasks.values()]
        ends = asyncio.get_running_loop().time() + grace
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late - given_back:  # those are writing their release: let them
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # Send outcomes waiting for the store, within the same grace; then logged.
        await self.keeper.stop(ends - asyncio.get_running_loop().time())

    def notify(self) -> None:
        """Something became due now: wake the claim loop."""
        self.wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            failed = False
            try:
                claimed = await self.claim_and_spawn()
            except StoreUnavailable as exc:
                self._outage.failed(exc)
                claimed, failed = 0, True
            if claimed:
                await asyncio.sleep(0)
                continue
            self.wake.clear()
            if self._stopping:
                break
            poll = timedelta(seconds=self.settings.poll_interval)
            if len(self._tasks) >= self.settings.max_in_flight:
                # Full: nothing can be claimed before a task finishes, and a finished
                # task sets ``wake``. Asking the store when work is due is wasted here.
                await self.clock.sleep_until(self.clock.now() + poll, self.wake)
                continue
            # After a failed claim, the next try waits a poll: a store that still reads
            # but cannot write (a full disk, a read-only database) would otherwise show
            # the overdue work as due now, and the loop would claim without pause.
            try:
                nxt = None if failed else await self.store.next_due_at()
            except StoreUnavailable:
                nxt = None
            target = self.clock.now() + poll
            if nxt is not None and nxt < target:
                target = nxt
            await self.clock.sleep_until(target, self.wake)

    async def _heartbeat(self) -> None:
        interval = self.settings.lease_seconds / 3
        while not self._stopping:
            await self.clock.sleep_until(self.clock.now() + timedelta(seconds=interval))
            held = [work for _, work in self._tasks.values()]
            if not held:
                continue
            until = self.clock.now() + timedelta(seconds=self.settings.lease_seconds)
            try:
                extended = await self.store.extend_leases(owner=self.owner, work=held, until=until)
            except StoreUnavailable as exc:
                log.warning("could not extend leases: %s", exc)
                continue
            self.lease_ends.update((i, until) for i in extended if i in self.lease_ends)

    async def claim_and_spawn(self) -> int:
        free = self.settings.max_in_flight - len(self._tasks)
        if free <= 0:
            return 0
        now = self.clock.now()
        items = await self.store.claim_due_work(
            owner=self.owner, now=now, lease_seconds=self.settings.lease_seconds, limit=free
        )
        self._outage.succeeded()  # (a full process asks the store nothing: no news)
        for item in items:
            self.metrics.child(self.metrics.due_lag, str(item.kind)).observe(
                max(0.0, (now - item.due_at).total_seconds())
            )
            task = asyncio.create_task(self._guarded(item))
            self._tasks[item.id] = (task, item)
            self.lease_ends[item.id] = item.lease_until or now
            task.add_done_callback(functools.partial(self._finished, item.id))
        self.metrics.in_flight.set(len(self._tasks))
        return len(items)

    def _finished(self, work_id: int, task: object = None) -> None:
        found = self._tasks.get(work_id)
        if found is not None and (task is None or found[0] is task):
            # (not a newer claim of the same row by this process)
            del self._tasks[work_id]
            self.lease_ends.pop(work_id, None)
        self.metrics.in_flight.set(len(self._tasks))
        self.wake.set()

    async def process_due(self) -> int:
        """Handle everything due now until nothing is left (tests and the simulator)."""
        handled = 0
        while True:
            claimed = await self.claim_and_spawn()
            handled += claimed
            if self._tasks:
                await asyncio.gather(*(t for t, _ in list(self._tasks.values())))
                continue
            if not claimed:
                return handled

    # ------------------------------------------------------------------ handling

    async def _guarded(self, work: DueWork) -> None:
        try:
            await self.handle(work)
        except StaleFence:
            log.info(
                "due work %s was taken over by a newer claim or deleted (its contact "
                "erased, its trigger dropped); dropped its result",
                work.id,
            )
        except StoreUnavailable as exc:
            log.warning("store unavailable handling %s %s: %s", work.kind, work.id, exc)
        except Exception:
            log.exception("handling %s %s failed; retrying later", work.kind, work.id)
            delay = self.backoff(work.attempts + 1)
            with contextlib.suppress(Exception):
                await self.store.commit(
                    Commit(
                        now=self.clock.now(),
                        done=Completion(work=work, retry_at=self.clock.now() + delay),
                    )
                )

    async def handle(self, work: DueWork) -> None:
        if work.kind == DueKind.DISPATCH:
            await self.sender.dispatch(work)
        elif work.kind == DueKind.TIMER:
            poll = timedelta(seconds=self.settings.poll_interval)
            if await gave_way(self.store, work, now=self.clock.now(), poll=poll):
                return
            payload = work.payload
            event = runner.StepEvent(
                name="timeout", step_seq=int(payload["step_seq"]), data=dict(payload)
            )
            timer = NewEvent(
                kind="timer", at=self.clock.now(), run_id=work.run_id, data=dict(payload)
            )
            await self.apply_events(work, [event], extra_events=[timer])
        elif work.kind == DueKind.STATUS:
            await apply_status_report(self, work)
        elif work.kind == DueKind.INBOUND:
            await apply_inbound(self, work)
        elif work.kind == DueKind.CALLBACK:
            body = str(work.payload["body"]).encode()
            await self._on_callback(str(work.payload["provider"]), body)
            await self.store.commit(Commit(now=self.clock.now(), done=Completion(work=work)))
        elif work.kind in (DueKind.CRON, DueKind.FANOUT, DueKind.SWEEP):
            if self._on_trigger is None:  # kept for an engine that runs triggers
                raise RuntimeError(f"this engine does not run triggers; {work.kind} left due")
            await self._on_trigger(work)
        elif work.kind == DueKind.START:
            await enter_run(self, work)
        else:  # future kinds: nothing to do but complete
            await self.store.commit(Commit(now=self.clock.now(), done=Completion(work=work)))

    def breaker(self, provider: str) -> CircuitBreaker:
        found = self._breakers.get(provider)
        if found is None:
            s = self.settings
            found = CircuitBreaker(
                provider,
                threshold=s.breaker_failures,
                cooldown=timedelta(seconds=s.breaker_cooldown),
                cooldown_cap=timedelta(seconds=s.breaker_cooldown_cap),
            )
            self._breakers[provider] = found
        return found

    def backoff(self, attempt: int) -> timedelta:
        """Exponential backoff with jitter, capped: uniform between a tenth of the
        ceiling and the ceiling. Full jitter (AWS architecture blog) with a floor,
        so a retry never comes straight back."""
        # The exponent is capped: rows rescheduled forever (triggers) count every step.
        exponent = min(max(0, attempt), 32)
        ceiling = min(self.settings.backoff_cap, self.settings.backoff_base * 2**exponent)
        return timedelta(seconds=self.rng.uniform(ceiling / 10, ceiling))

    def status_moved(self, provider: str, message_id: str, run_id: str, new: MessageStatus) -> None:
        """Count and log a message that a provider's report moved to ``new``."""
        self.metrics.child(self.metrics.messages, provider, str(new)).inc()
        log.info("message %s of run %s is %s", message_id, run_id, new)

    async def apply_events(
        self,
        work: DueWork | None,
        events: Sequence[runner.StepEvent],
        *,
        messages: Sequence[MessageChange] = (),
        run_id: str | None = None,
        extra_events: Sequence[NewEvent] = (),
        contact_last_outbound: datetime | None = None,
        known_run: Run | None = None,
        known_contact: Contact | None = None,
    ) -> CommitResult | None:
        """Feed ``events`` to the run's state machine and commit the outcome atomically.

        Retries on ``StaleRun`` from a concurrent change of the run (not of ``messages``:
        a message's ``expected_status`` mismatch is re-raised for the caller).
        ``known_run``: the run as the caller just read it, used for the first attempt
        instead of reading it again; its version is checked by the commit, and a
        retry reads the run afresh. ``known_contact``: the run's contact as the
        caller read it, likewise for the first attempt only (contact changes in a
        commit are patches, so it only feeds the scope the transition sees).
        """
        run_id = run_id or (work.run_id if work else None)
        assert run_id is not None
        fresh_run = known_run if known_run is not None and known_run.id == run_id else None
        fresh_contact = known_contact
        async with self.locks.hold(run_id):
            for _ in range(MAX_STALE_RETRIES):
                if fresh_run is not None:
                    run: Run | None = fresh_run
                    fresh_run = None
                else:
                    run = await self.store.get_run(run_id)
                if run is None:
                    if work is not None:
                        await self.store.commit(
                            Commit(
                                now=self.clock.now(), done=Completion(work=work), messages=messages
                            )
                        )
                    return None
                if fresh_contact is not None and fresh_contact.id == run.contact_id:
                    contact: Contact | None = fresh_contact
                else:
                    contact = await self.store.get_contact(run.contact_id)
                fresh_contact = None
                assert contact is not None, f"run {run.id} has no contact {run.contact_id}"
                commit = await self.transition_commit(
                    run,
                    contact,
                    events,
                    work=work,
                    messages=messages,
                    extra_events=extra_events,
                    contact_last_outbound=contact_last_outbound,
                )
                try:
                    result = await self.store.commit(commit)
                except StaleRun:
                    if messages and any(m.expected_status for m in messages):
                        fresh = [await self.store.get_message(m.message_id) for m in messages]
                        if any(
                            f is None or (m.expected_status and f.status != m.expected_status)
                            for f, m in zip(fresh, messages, strict=True)
                        ):
                            raise
                    continue
                if (
                    result.run is not None
                    and commit.run is not None
                    and result.run.status != run.status
                    and result.run.status not in ("active", "waiting")
                ):
                    self.metrics.child(self.metrics.runs, run.flow, str(result.run.status)).inc()
                    log.info(
                        "run %s of %s finished %s at step %s",
                        run.id,
                        run.flow,
                        result.run.status,
                        result.run.step,
                    )
                    await skip_queued(self.store, result.run, self.clock.now())
                if commit.new_due:
                    self.notify()
                return result
        raise StaleRun(f"run {run_id} kept changing; will retry")

    async def transition_commit(
        self,
        run: Run,
        contact: Contact,
        events: Sequence[runner.StepEvent],
        *,
        work: DueWork | None,
        messages: Sequence[MessageChange] = (),
        extra_events: Sequence[NewEvent] = (),
        contact_last_outbound: datetime | None = None,
    ) -> Commit:
        now = self.clock.now()
        loaded = await self.catalog.pinned(run.flow, run.flow_version)
        flow = loaded.flow
        tz = contact_timezone(contact, flow, self.settings.default_timezone)
        scope = RunnerScope.for_run(run, contact, flow, now, tz)
        state = runner.RunState(
            step=run.step,
            status=run.status,
            step_seq=run.step_seq,
            vars=run.vars,
            started_at=run.created_at,
        )
        # An event of this run is about its contact (a timer's is written without one):
        # `disparo why` and the export list a contact's events by the contact.
        fx = Effects(
            events=[
                replace(e, contact_id=run.contact_id)
                if e.run_id == run.id and e.contact_id is None
                else e
                for e in extra_events
            ]
        )
        queue, fed = list(events), 0
        while queue:
            transition = runner.handle(flow, state, queue.pop(0), scope, now)
            collect_effects(
                transition, flow=flow, run_id=run.id, contact_id=run.contact_id, now=now, into=fx
            )
            state = transition.state
            if fed < MAX_REPORTS_FED:  # a wait for read whose `on: read` leads back to it
                reported = await already_reported(self.store, flow, run.id, transition)
                queue, fed = queue + reported, fed + len(reported)
        contact_change = fx.contact_change(contact.id)
        if contact_last_outbound is not None:
            contact_change = ContactChange(
                contact_id=contact.id,
                context_patch=contact_change.context_patch if contact_change else None,
                attendance=contact_change.attendance if contact_change else None,
                last_outbound_at=contact_last_outbound,
            )
        return run_commit(
            fx,
            run_id=run.id,
            now=now,
            done=Completion(work=work) if work is not None else None,
            run=state_change(run, state),
            contact=contact_change,
            messages=messages,
        )
