"""A process can claim its own due work again while that work's send is still out:
the lease ran out because the heartbeat could not reach the store. The two sends of
one row must keep apart, or the one that ends first takes the other's departure
watch with it and the other fails, which gets the message sent yet again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.models import DueKind, MessageStatus
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import harness, until
from tests.integration.test_provider_faults import AUTH, make_settings

QUIET = "rules: {window: ignore, quiet_hours: '20:00-08:00'}"


async def test_a_row_claimed_again_while_its_send_is_out_is_sent_once(tmp_path: Path) -> None:
    async with FakeGateway(auth_value=AUTH) as gateway:
        settings = make_settings(tmp_path, gateway)
        flow = Path(settings.flows) / "aviso.yaml"
        flow.write_text(flow.read_text().replace("rules: {window: ignore}", QUIET))
        evening = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 21:00 in São Paulo
        async with harness(settings, at=evening) as h:
            run = await h.start("aviso")  # deferred to 08:00: its DISPATCH row waits
            h.clock.set(evening + timedelta(hours=11))
            claimed = await h.engine.store.claim_due_work(
                owner="engine-a", now=h.clock.now(), lease_seconds=30, limit=10
            )
            (work,) = [w for w in claimed if w.kind == DueKind.DISPATCH]
            sender = h.engine.dispatcher.sender
            gateway.pause()
            first = asyncio.create_task(sender.dispatch(work))
            await until(lambda: gateway.in_flight == 1, "the first request reaches the gateway")
            # The lease ran out; this process claims the row again and finds it `sending`.
            second = asyncio.create_task(sender.dispatch(work))
            await until(lambda: gateway.in_flight == 2, "the resend reaches the gateway")
            gateway.resume()
            outcomes = await asyncio.gather(first, second, return_exceptions=True)
            (message,) = await h.messages(run.id)

    assert outcomes == [None, None]
    assert sender.watching == {}
    assert message.status == MessageStatus.SENT
    assert gateway.stats()["delivered"] == 1  # the resend carried the same key
