"""Resends of a message found `sending` (its worker died with the request out) to a
provider with idempotency keys count their attempts before they leave, so however
they end (another crash, a cut-off at shutdown) `max_attempts` caps them; and a
contact's send waiting for one provider does not hold up its sends through another."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import ContactUpsert, MessageStatus
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import START, harness, running_engine, until
from tests.integration.test_provider_faults import AUTH, FLOW, make_settings


async def test_resends_cut_off_with_their_request_out_stop_at_max_attempts(
    tmp_path: Path,
) -> None:
    async with FakeGateway(auth_value=AUTH) as gateway:
        settings = make_settings(tmp_path, gateway, max_in_flight=1, timeout=30)  # keyed
        lease = timedelta(seconds=settings.dispatcher.lease_seconds)
        gateway.pause()  # every request reaches the gateway and hangs there
        run_id = None
        statuses = []
        for cycle in range(settings.dispatcher.max_attempts + 2):  # max_attempts is 3
            async with harness(settings, at=START + cycle * 2 * lease) as h:
                if run_id is None:
                    run, _ = await h.engine.start_run(
                        "aviso", ContactUpsert(id="c-1", phone="+5511999998888", name="Ana")
                    )
                    run_id = run.id
                before = gateway.stats()["requests"]
                dying = asyncio.create_task(h.engine.dispatcher.process_due())
                # A request out, or (once the cap is hit) the work done without one.
                await until(
                    lambda before=before, dying=dying: (
                        gateway.stats()["requests"] > before or dying.done()
                    ),
                    "a request out, or the dispatch over",
                )
                dying.cancel()  # the worker dies with its request out
                with contextlib.suppress(asyncio.CancelledError):
                    await dying
                (message,) = await h.engine.store.list_run_messages(run_id)
                statuses.append((message.status, message.attempts))
        gateway.resume()

    assert gateway.stats()["requests"] == 3
    assert statuses == [
        (MessageStatus.SENDING, 1),
        (MessageStatus.SENDING, 2),
        (MessageStatus.SENDING, 3),
        (MessageStatus.AMBIGUOUS, 3),
        (MessageStatus.AMBIGUOUS, 3),
    ]


async def test_a_send_waiting_for_one_providers_slot_does_not_hold_the_contacts_others(
    tmp_path: Path,
) -> None:
    async with FakeGateway(auth_value=AUTH) as gateway:
        settings = make_settings(tmp_path, gateway, max_in_flight=1, timeout=30)
        sandbox_flow = FLOW.replace("flow: aviso", "flow: aviso_sb").replace(
            "provider: gateway", "provider: sandbox"
        )
        (tmp_path / "flows" / "aviso_sb.yaml").write_text(sandbox_flow)
        gateway.pause()
        async with running_engine(settings) as (engine, _clock):

            def contact(i: int) -> ContactUpsert:
                return ContactUpsert(id=f"c-{i}", phone=f"+55119999988{i:02d}", name="Ana")

            await engine.start_run("aviso", contact(0))  # holds the gateway's one connection
            await until(lambda: gateway.in_flight == 1, "c-0's request out")
            await engine.start_run("aviso", contact(1))  # waits for that connection
            watching = engine.dispatcher.sender.watching
            await until(lambda: sum(d.waiting for _, d in watching.values()) == 1, "c-1 waiting")
            other, _ = await engine.start_run("aviso_sb", contact(1))  # same contact, sandbox

            async def status() -> MessageStatus:
                (message,) = await engine.store.list_run_messages(other.id)
                return message.status

            for _ in range(300):
                if await status() != MessageStatus.QUEUED:
                    break
                await asyncio.sleep(0.01)
            through_sandbox = await status()
            gateway.resume()
            await until(lambda: gateway.in_flight == 0, "the gateway drained")

    assert through_sandbox != MessageStatus.QUEUED


async def test_a_resend_after_a_takeover_says_so_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway sees a key twice: the log tells the on-call person why."""
    caplog.set_level(logging.INFO, logger="disparo")
    async with FakeGateway(auth_value=AUTH) as gateway:
        settings = make_settings(tmp_path, gateway, max_in_flight=1, timeout=30)  # keyed
        lease = timedelta(seconds=settings.dispatcher.lease_seconds)
        gateway.pause()
        async with harness(settings) as h:
            run, _ = await h.engine.start_run(
                "aviso", ContactUpsert(id="c-1", phone="+5511999998888", name="Ana")
            )
            dying = asyncio.create_task(h.engine.dispatcher.process_due())
            await until(lambda: gateway.stats()["requests"] == 1, "a request out")
            dying.cancel()  # the worker dies with its request out
            with contextlib.suppress(asyncio.CancelledError):
                await dying
        gateway.resume()
        async with harness(settings, at=START + 2 * lease) as h:
            await h.engine.dispatcher.process_due()
            (message,) = await h.engine.store.list_run_messages(run.id)
    assert message.status == MessageStatus.SENT
    resends = [r.getMessage() for r in caplog.records if "resending" in r.getMessage()]
    assert resends == [
        f"resending message {message.id} via gateway with its idempotency key (attempt 2 "
        "of 3): an earlier attempt may have reached the provider (its process stopped, "
        "or the answer was lost)"
    ]
