"""Sending one message: rules, rendering, the outbox write, the provider call, the outcome.

Order of a send (ARCHITECTURE.md, "the life of a message"):
1. evaluate the contact-context rules; a skip or a deferral is recorded and stops here;
2. render and check the content; a render or limit error fails the message, nothing is sent;
3. take the provider's slot (a connection of ``max_in_flight``, a login, a rate
   slot: ``engine.send_slot``); a send that waits there is still ``queued``;
4. mark the message ``sending`` with its rendered payload, durably, BEFORE the call;
5. call the provider in that slot; record the answer under the due-work fence.

A message found in ``sending`` when its row is claimed again means a worker died
after step 4: the request may have left. It is resent with the same idempotency
key only to a provider that honours one; otherwise it becomes ``ambiguous`` and is
resolved by a later status webhook or by an operator, never resent blindly.

Steps 1 and 2 decide with the pure functions of ``engine.send_content``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from engine import left_step, runner, send_answer, send_failures, validity
from engine.errors import (
    ContentError,
    NotFound,
    OutboundChanged,
    ProviderAuthError,
    ProviderError,
    RenderError,
    StaleRun,
)
from engine.flow.model import Flow
from engine.models import (
    OPEN_RUN_STATUSES,
    Contact,
    Content,
    DueWork,
    Message,
    MessageStatus,
    NewEvent,
    OutboundMessage,
    Run,
)
from engine.outbound_counts import count_outbound, deciding
from engine.phone_opt_out import phone_opted_out
from engine.provider_hints import ProviderHints
from engine.resends import count_resend
from engine.scope import contact_timezone
from engine.send_content import (
    UnknownTemplate,
    judge,
    message_content,
    message_event,
)
from engine.send_slot import SendSlot, call_provider, not_ready, still_wanted, watched_send
from engine.validity import Validity
from providers.base import RECHECK_AFTER_SECONDS, Departure, SendWithdrawn
from storage.base import Commit, Completion, MessageChange

if TYPE_CHECKING:
    from engine.dispatcher import Dispatcher

log = logging.getLogger("disparo.sending")
_CONTENT: TypeAdapter[Any] = TypeAdapter(Content)


# Decisions of one send refused by its OutboundGuard before it waits a little.
DECIDE_TRIES = 3
REDECIDE_AFTER = timedelta(seconds=30)


class Sender:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        self.hints = ProviderHints()
        # The provider calls in progress (``withdraw_waiting``): (due-work id, watch)
        # by ``id()`` of the watch, as this process may claim a row again while the
        # send of its earlier claim is still out (its lease ran out).
        self.watching: dict[int, tuple[int, Departure]] = {}

    @property
    def now(self) -> datetime:
        return self.d.clock.now()

    async def complete(self, work: DueWork, **commit: Any) -> None:
        await self.d.store.commit(Commit(now=self.now, done=Completion(work=work), **commit))

    async def dispatch(self, work: DueWork) -> None:
        assert work.message_id is not None
        store = self.d.store
        message = await store.get_message(work.message_id)
        if message is None or message.status not in (MessageStatus.QUEUED, MessageStatus.SENDING):
            await self.complete(work)
            return
        run = await store.get_run(message.run_id)
        if run is None or run.status not in OPEN_RUN_STATUSES:
            await self.complete(
                work,
                messages=[self._change(message, MessageStatus.SKIPPED, last_error="run is closed")],
            )
            return
        if (left := left_step.withdrawn(message, run, self.now)) is not None:
            log.info("skipped message %s: %s", message.id, left.change.last_error)
            await self.complete(work, messages=[left.change], events=[left.event])
            return
        loaded = await self.d.catalog.pinned(run.flow, run.flow_version)
        flow = loaded.flow
        contact = await store.get_contact(run.contact_id)
        assert contact is not None
        provider = self.d.providers.get(message.provider)
        if provider is None:
            await self.fail(work, message, f"provider {message.provider!r} is not configured")
            return

        if message.status == MessageStatus.SENDING and await store.has_queued_status(message.id):
            # Its answer is stored already, as a report waiting to be applied (the
            # process that sent kept it through a store outage past its lease): the
            # report settles the message; it is neither sent again nor ambiguous.
            log.info("message %s has a status report queued; leaving it to that", message.id)
            await self.complete(work)
            return
        # A `sending` message may have reached the provider already: never expired.
        valid = None
        if message.status == MessageStatus.QUEUED:
            valid = validity.of(flow, message, contact, self.d.settings.default_timezone)
        if valid is not None and valid.late(self.now):
            await validity.expire(self, work, message, valid, validity.waited(message))
            return
        breaker = self.d.breaker(message.provider)
        admitted_at = self.now
        blocked = breaker.admit(admitted_at)
        if blocked is not None:
            if valid is not None and valid.late(blocked):
                paused = f"its provider {message.provider} is paused until {valid.at(blocked)}"
                await validity.expire(self, work, message, valid, paused)
                return
            # The provider is down: move the work to when the circuit half-opens (or
            # its probe has answered), no attempt.
            await self._complete_later(work, message, blocked)
            return
        try:
            # The provider's slot is taken before the outbox write and held through
            # the call (engine.send_slot); a resend of a `sending` message takes it in
            # the call, as the message is `sending` already.
            async with watched_send(self, work, provider) as slot:
                if message.status == MessageStatus.SENDING:
                    # A previous attempt may have reached the provider (crash or ambiguous answer).
                    if not provider.capabilities.idempotency_key:
                        await send_failures.ambiguous(
                            self, work, message, "a previous attempt may have been sent"
                        )
                        return
                    resend = await count_resend(self, work, message)
                    if resend is None:
                        return
                    content = _CONTENT.validate_python(dict(message.payload))
                    attempts = resend
                else:
                    try:
                        async with deciding(self.d.deciding, flow, message, contact):
                            prepared = await self._prepare(
                                work, message, flow, contact, run, slot, valid
                            )
                    except asyncio.CancelledError:
                        # Cut off (the shutdown grace ran out) before any request: whatever
                        # of the outbox write landed, nothing left. Give it back now, or the
                        # next claim would find it `sending` and call it ambiguous.
                        await asyncio.shield(send_failures.cut_off_unsent(self, work, message))
                        raise
                    if prepared is None:
                        return
                    content, attempts = prepared

                await self.send(work, message, run, contact, flow, slot, content, attempts, valid)
        finally:
            breaker.settle(admitted_at)

    async def send(
        self,
        work: DueWork,
        message: Message,
        run: Run,
        contact: Contact,
        flow: Flow,
        slot: SendSlot,
        content: Any,
        attempts: int,
        valid: Validity | None = None,
    ) -> None:
        """Call the provider for a message durably ``sending``; record the answer."""
        provider = slot.provider
        breaker = self.d.breaker(message.provider)
        outbound = OutboundMessage(
            message_id=message.id,
            idempotency_key=message.idempotency_key,
            run_id=run.id,
            flow=flow.flow,
            step=message.step,
            channel=message.channel,
            contact=contact,
            content=content,
            hints=await self.hints.of_message(self.d.store, flow, run.flow_version, message),
        )
        try:
            result = await call_provider(self, work, message, slot, outbound)
        except ProviderError as exc:
            if isinstance(exc, ProviderAuthError):
                log.error(
                    "provider %s refused disparo's credentials or settings (%s); fix "
                    "providers.%s in the config. Its sends are retried, and pause while this "
                    "lasts",
                    message.provider,
                    exc,
                    message.provider,
                )
            send_failures.count_failure(self, message.provider, exc)
            await send_answer.record_error(
                self,
                work,
                message,
                exc,
                attempts,
                idempotent=provider.capabilities.idempotency_key,
                hints=outbound.hints,
                answered_at=self.now,
                valid=valid,
            )
            return
        if result is None:
            return  # given back: the engine is stopping
        log.info(
            "sent message %s of run %s step %s via %s (provider id %s)",
            message.id,
            run.id,
            message.step,
            message.provider,
            result.provider_message_id,
        )
        if breaker.is_open or breaker.failures:
            if breaker.is_open:
                log.info("provider %s answers again; its circuit is closed", message.provider)
            self.d.metrics.circuit_open.labels(message.provider).set(0)
        breaker.success()
        self.d.metrics.child(self.d.metrics.messages, message.provider, str(result.status)).inc()
        # A known outcome: kept until the store records it (engine.outcome_keeper).
        await send_answer.record_sent(self, work, message, run, contact, result, self.now)

    def withdraw_waiting(self) -> list[int]:
        """The engine is stopping: no watched send may start a request any more.
        Returns the due work whose send waits for a provider's slot or prepares its
        request (it has not left: cancelling it leaves or puts the message back in
        the queue)."""
        for _, watched in self.watching.values():
            watched.withdrawn = True
        return [work_id for work_id, watched in self.watching.values() if watched.waiting]

    async def _prepare(
        self,
        work: DueWork,
        message: Message,
        flow: Flow,
        contact: Contact,
        run: Run,
        slot: SendSlot,
        valid: Validity | None,
    ) -> tuple[Any, int] | None:
        """Rules, render, the provider's ``slot``; on success the message is durably
        ``sending``. The caller holds the contact's ``deciding``. Another engine's send
        to the contact that became ``sending`` after the counts: decide again, with it
        counted."""
        for _ in range(DECIDE_TRIES):
            try:
                return await self._decide(work, message, flow, contact, run, slot, valid)
            except OutboundChanged as exc:
                log.info(
                    "message %s: another send to its contact began after the rules counted "
                    "(%s); deciding again",
                    message.id,
                    exc,
                )
        # Sends of the contact keep beginning elsewhere: try again a little later.
        await self._complete_later(work, message, self.now + REDECIDE_AFTER)
        return None

    async def _decide(
        self,
        work: DueWork,
        message: Message,
        flow: Flow,
        contact: Contact,
        run: Run,
        slot: SendSlot,
        valid: Validity | None,
    ) -> tuple[Any, int] | None:
        rules = flow.rules_for(message.step)
        tz = contact_timezone(contact, flow, self.d.settings.default_timezone)
        now = self.now
        counts = await count_outbound(self.d.store, rules, contact, message, run, now, tz)
        verdict, events = judge(
            flow,
            message,
            contact,
            now,
            tz,
            sent_today=counts.sent_today,
            last_outbound_at=counts.last_outbound_at,
            phone_opt_out=await phone_opted_out(self.d.store, contact),
        )
        for decision in verdict.decisions:
            self.d.metrics.child(self.d.metrics.decisions, decision.rule, decision.outcome).inc()
        if verdict.action == "skip":
            await self.skip(work, message, verdict.reason, events)
            return None
        if verdict.action == "defer":
            assert verdict.until is not None
            if valid is not None and valid.late(verdict.until):
                why = f"deferred until {valid.at(verdict.until)} ({verdict.reason})"
                await validity.expire(self, work, message, valid, why, events)
                return None
            log.info(
                "deferred message %s until %s: %s",
                message.id,
                verdict.until.isoformat(),
                verdict.reason,
            )
            await self.d.store.commit(
                Commit(
                    now=now,
                    done=Completion(work=work, retry_at=verdict.until),
                    messages=[
                        MessageChange(message_id=message.id, at=now, next_attempt_at=verdict.until)
                    ],
                    events=events,
                )
            )
            return None
        try:
            content = message_content(
                flow,
                message,
                contact,
                now,
                tz,
                verdict,
                self.d.templates,
                run.vars,
                flow_version=run.flow_version,
            )
        except (RenderError, ContentError, UnknownTemplate) as exc:
            await self.fail(work, message, str(exc), extra_events=events)
            return None
        attempts = message.attempts + 1
        # `sending` only once the request can start: a crash while the send waits for
        # its provider's slot (or login) must leave the message queued, not ambiguous.
        waiting_since = time.monotonic()
        try:
            await slot.take()
        except SendWithdrawn:  # the engine is stopping; nothing was written
            await send_failures.cut_off_unsent(self, work, message)
            return None
        except ProviderError as exc:
            await not_ready(self, work, message, exc, attempts, valid)
            return None
        # Its contact may have been erased (or the work taken over) while it waited.
        waited = slot.watched.contended or time.monotonic() - waiting_since > RECHECK_AFTER_SECONDS
        if waited and not await still_wanted(self, message.id, MessageStatus.QUEUED):
            return None
        now = self.now  # the wait may have been long
        try:
            await self.d.store.commit(
                Commit(
                    now=now,
                    messages=[
                        MessageChange(
                            message_id=message.id,
                            at=now,
                            status=MessageStatus.SENDING,
                            expected_status=MessageStatus.QUEUED,
                            payload=content.model_dump(mode="json"),
                            attempts=attempts,
                            next_attempt_at=None,
                        )
                    ],
                    events=events,
                    guard=counts.guard,
                )
            )
        except StaleRun:
            # Another worker took this message over (our lease lapsed while we were
            # slow) and is sending it. Leave it to that worker: our due work stays
            # leased until it expires, and whoever claims it then sees `sending`.
            log.info("message %s is being sent by another worker; leaving it", message.id)
            return None
        except NotFound:  # its contact was erased after the check above
            log.info("message %s is gone since its send began; not sending it", message.id)
            return None
        return content, attempts

    async def _complete_later(self, work: DueWork, message: Message, when: datetime) -> None:
        await self.d.store.commit(
            Commit(
                now=self.now,
                done=Completion(work=work, retry_at=when),
                messages=[MessageChange(message_id=message.id, at=self.now, next_attempt_at=when)],
            )
        )

    def _change(
        self, message: Message, status: MessageStatus, *, last_error: str | None
    ) -> MessageChange:
        return MessageChange(
            message_id=message.id, at=self.now, status=status, last_error=last_error
        )

    async def skip(
        self,
        work: DueWork,
        message: Message,
        reason: str,
        events: list[NewEvent],
        *,
        expected_status: MessageStatus | None = None,
    ) -> None:
        """Skip ``message`` for ``reason`` (a rule's); its step routes ``skipped``."""
        log.info("skipped message %s step %s: %s", message.id, message.step, reason)
        self.d.metrics.child(self.d.metrics.messages, message.provider, "skipped").inc()
        change = MessageChange(
            message_id=message.id,
            at=self.now,
            status=MessageStatus.SKIPPED,
            last_error=reason,
            expected_status=expected_status,
        )
        await self.d.apply_events(
            work,
            [runner.StepEvent(name="skipped", step_seq=message.step_seq, data={"reason": reason})],
            messages=[change],
            run_id=message.run_id,
            extra_events=events,
        )

    async def fail(
        self,
        work: DueWork,
        message: Message,
        error: str,
        *,
        extra_events: list[NewEvent] | None = None,
    ) -> None:
        log.warning("message %s step %s failed: %s", message.id, message.step, error)
        self.d.metrics.child(self.d.metrics.messages, message.provider, "failed").inc()
        # The audit log says why, so `disparo why` and the simulator show it even when
        # the flow routes `failed` on to another step.
        failed = message_event(
            message,
            "message.failed",
            self.now,
            {"step": message.step, "provider": message.provider, "error": error},
        )
        await self.d.apply_events(
            work,
            [runner.StepEvent(name="failed", step_seq=message.step_seq, data={"error": error})],
            messages=[self._change(message, MessageStatus.FAILED, last_error=error)],
            run_id=message.run_id,
            extra_events=[*(extra_events or []), failed],
        )
