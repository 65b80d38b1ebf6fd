"""`disparo why` tells how each run moved: the timers that fired are among its lines."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.models import ContactUpsert, MessageStatus, StatusReport
from engine.why_text import why_lines
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import harness, settings_for, until
from tests.integration.test_cli import _local_config, disparo
from tests.integration.test_provider_faults import AUTH, make_settings

BOLETO = {"valor": 1670, "vencimento": "2026-11-30"}


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway(auth_value=AUTH) as gw:
        yield gw


async def test_why_shows_the_timeout_that_sent_the_sms(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    settings = settings_for(
        tmp_path,
        storage=f"sqlite:///{tmp_path / 'd.db'}",
        provider_changes={"sandbox": {"read_after": None}},  # never read
    )
    async with harness(settings) as h:  # 10:00 in São Paulo
        run = await h.start("cobranca_boleto", context=BOLETO)
        await h.advance(timedelta(hours=2, seconds=5))
        assert (await h.run(run.id)).status == "completed"

    result = disparo("why", "c-1", "--config", str(config))

    assert result.returncode == 0, result.stderr
    # Without the timer line, the SMS step follows the send for no reason shown.
    timer = [line for line in result.stdout.splitlines() if " timer " in line]
    assert len(timer) == 1, result.stdout
    assert re.match(rf"2026-11-23 12:00:0\d  run {run.id[:8]}  lembrete +timer +timeout", timer[0])


async def test_why_says_a_message_went_out_when_no_report_ever_comes(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    # Robbu sends no status webhook, nor does a gateway that only answers the send:
    # the provider's answer is all there is to say the message went out.
    async with harness(make_settings(tmp_path, gateway)) as h:
        run = await h.start("aviso")
        [message] = await h.messages(run.id)
        assert message.status == MessageStatus.SENT

        events = await h.engine.decisions("c-1")

    [sent] = [e for e in events if e.kind == "message.sent"]
    assert sent.message_id == message.id
    assert dict(sent.data) == {
        "step": "aviso",
        "provider": "gateway",
        "provider_message_id": message.provider_message_id,
    }
    line = why_lines([sent], ZoneInfo("America/Sao_Paulo"))[0]
    assert "aviso          message.sent       provider=gateway, provider_message_id=" in line


async def test_why_says_a_message_went_out_after_its_run_was_cancelled(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    async with harness(make_settings(tmp_path, gateway)) as h:
        run, _ = await h.engine.start_run(
            "aviso", ContactUpsert(id="c-1", phone="+5511999998888", name="Maria")
        )
        gateway.pause()
        sending = asyncio.create_task(h.engine.settle())
        await until(lambda: gateway.in_flight == 1, "the request is on the wire")
        await h.engine.cancel_run(run.id)  # while the request is out
        gateway.resume()
        await sending

        events = await h.engine.decisions("c-1")

    # The operator cancelled, yet the message reached the contact: why says so.
    kinds = [e.kind for e in reversed(events)]
    assert kinds.index("run.finished") < kinds.index("message.sent")


async def test_why_says_a_failure_reported_after_the_read_changed_nothing(
    tmp_path: Path,
) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await h.start("cobranca_boleto", context=BOLETO)
        await h.advance(timedelta(seconds=6))  # the sandbox reports read after 5 s
        [message] = await h.messages(run.id)
        assert message.status == MessageStatus.READ

        await h.engine.ingest_status_reports(
            [
                StatusReport(
                    provider=message.provider,
                    status=MessageStatus.FAILED,
                    at=h.clock.now(),
                    idempotency_key=message.idempotency_key,
                    error_message="131026 message undeliverable",
                )
            ]
        )
        await h.engine.settle()

        [message] = await h.messages(run.id)
        assert message.status == MessageStatus.READ
        newest = await h.engine.decisions("c-1", limit=2)

    # Without it the newest line was `status.failed ... undeliverable`, read as the outcome.
    assert [e.kind for e in newest] == ["message.report_ignored", "status.failed"]
    assert newest[0].data["reason"] == (
        "message is already read: a `failed` report after it changes nothing "
        "(statuses never go back)"
    )


async def test_why_says_a_delivery_reported_after_the_failure_changed_nothing(
    tmp_path: Path,
) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await h.start("cobranca_boleto", context=BOLETO)
        [message] = await h.messages(run.id)
        report = {"provider": message.provider, "idempotency_key": message.idempotency_key}
        failed = StatusReport(status=MessageStatus.FAILED, at=h.clock.now(), **report)
        late = StatusReport(status=MessageStatus.DELIVERED, at=h.clock.now(), **report)
        await h.engine.ingest_status_reports([failed])
        await h.engine.settle()
        await h.engine.ingest_status_reports([late])
        await h.engine.settle()

        lembrete = (await h.messages(run.id))[0]  # the SMS went after the failure
        assert (lembrete.step, lembrete.status) == ("lembrete", MessageStatus.FAILED)
        ignored = await h.engine.store.list_events(
            run_id=run.id, kind_prefix="message.report_ignored", limit=5
        )

    assert [e.data["reason"] for e in ignored] == [
        "message is already failed: a `delivered` report after it changes nothing "
        "(a failure is final)"
    ]
