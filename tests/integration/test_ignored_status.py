"""A status the run ignores is applied as it is stored; one it reacts to goes through
the dispatcher. Either way the run's history reads as it always did."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from engine.models import MessageStatus, RunStatus, StatusReport
from tests.integration.engine_kit import Harness, harness, settings_for

QUIET_SANDBOX = {"sandbox": {"delivered_after": None, "read_after": None}}


def status(message_key: str, value: MessageStatus, at_: datetime) -> StatusReport:
    return StatusReport(provider="sandbox", status=value, at=at_, idempotency_key=message_key)


def counted(h: Harness, value: str) -> float:
    """``disparo_messages_total`` for the sandbox and ``value``, from /metrics' text."""
    text = h.engine.metrics.render().decode()
    wanted = f'disparo_messages_total{{provider="sandbox",status="{value}"}} '
    lines = [line for line in text.splitlines() if line.startswith(wanted)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


async def test_delivered_is_applied_at_once_and_read_moves_the_run(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path, provider_changes=QUIET_SANDBOX)) as h:
        run = await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})
        (reminder,) = await h.messages(run.id)
        assert reminder.status == MessageStatus.SENT

        # `lembrete` routes read, not delivered: nothing for the dispatcher to do.
        outcomes = await h.engine.ingest_status_reports(
            [status(reminder.idempotency_key, MessageStatus.DELIVERED, h.clock.now())]
        )
        assert outcomes == ["applied"]
        (reminder,) = await h.messages(run.id)
        assert reminder.status == MessageStatus.DELIVERED  # before any dispatcher turn
        assert counted(h, "delivered") == 1.0
        assert (await h.kinds(run.id))[-2:] == ["status.delivered", "run.event_ignored"]

        outcomes = await h.engine.ingest_status_reports(
            [status(reminder.idempotency_key, MessageStatus.READ, h.clock.now())]
        )
        assert outcomes == ["queued"]
        await h.engine.settle()
        (reminder,) = await h.messages(run.id)
        assert reminder.status == MessageStatus.READ
        assert counted(h, "read") == 1.0
        assert (await h.run(run.id)).step == "aguardando_resposta"


async def test_a_report_implying_a_step_the_run_routes_is_not_applied_at_once(
    tmp_path: Path,
) -> None:
    async with harness(settings_for(tmp_path, provider_changes=QUIET_SANDBOX)) as h:
        run = await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})
        (reminder,) = await h.messages(run.id)

        # `read` straight after `sent` implies delivered, then read: read is routed.
        outcomes = await h.engine.ingest_status_reports(
            [status(reminder.idempotency_key, MessageStatus.READ, h.clock.now())]
        )
        assert outcomes == ["queued"]
        await h.engine.settle()
        assert (await h.run(run.id)).step == "aguardando_resposta"


async def test_a_report_for_a_finished_run_is_applied_at_once(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path, provider_changes=QUIET_SANDBOX)) as h:
        run = await h.start("cobranca_boleto", context={"valor": 1670, "vencimento": "2026-11-30"})
        await h.engine.cancel_run(run.id)
        assert (await h.run(run.id)).status == RunStatus.CANCELLED
        (reminder,) = await h.messages(run.id)

        outcomes = await h.engine.ingest_status_reports(
            [status(reminder.idempotency_key, MessageStatus.READ, h.clock.now())]
        )

        assert outcomes == ["applied"]
        (reminder,) = await h.messages(run.id)
        assert reminder.status == MessageStatus.READ
        assert (await h.run(run.id)).status == RunStatus.CANCELLED
