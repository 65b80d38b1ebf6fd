"""Re-engagement sweeps of `since: context.<key>` with the timestamps real data holds:
a value that is not a time, Unix seconds and milliseconds (also in the message that
prints them), and a timestamp written after it came due."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import ContactUpsert, RunStatus
from tests.integration.engine_kit import Harness, harness, settings_with_flows
from tests.integration.test_triggers import MONDAY_10H, kinds, runs_of, sp

DUE = """\
flow: vencimento
triggers:
  - after: 1d
    since: context.vence_em
start: aviso
steps:
  aviso:
    send:
      channel: sms
      provider: sandbox_sms
      text: "Seu boleto de {{ context.vence_em | date('%d/%m %H:%M') }} venceu"
    next: fim
  fim: {end: completed}
"""

# 2026-11-24T08:00:00-03:00, comes due 2026-11-25 08:00 in São Paulo
DUE_AT = "2026-11-24T08:00:00-03:00"
DUE_AT_SECONDS = 1795518000
DUE_AT_MILLISECONDS = 1795518000000


def due_settings(tmp_path: Path, sweep_interval: float) -> Any:
    return settings_with_flows(tmp_path, DUE, triggers={"sweep_interval": sweep_interval})


async def write(h: Harness, contact_id: str, **context: Any) -> None:
    await h.engine.upsert_contact(
        ContactUpsert(id=contact_id, phone="+5511999990011", context=context)
    )


async def texts(h: Harness) -> dict[str, list[str]]:
    """The texts each contact was sent by `vencimento`."""
    out: dict[str, list[str]] = {}
    for run in await runs_of(h, "vencimento"):
        out[run.contact_id] = [str(m.payload.get("body")) for m in await h.messages(run.id)]
    return out


# ------------------------------------------------------------------ values that are no time


async def test_a_value_that_is_not_a_time_leaves_that_contact_out_and_sweeps_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(due_settings(tmp_path, 600), at=MONDAY_10H) as h:
        await write(h, "a-huge", vence_em=1e20)
        await write(h, "b-9999", vence_em="9999-12-31T23:59:59-03:00")
        await write(h, "c-ok", vence_em=DUE_AT)
        with caplog.at_level(logging.WARNING):
            await h.engine.run_until(sp(25, 8, 5))
        runs = await runs_of(h, "vencimento")
        swept = await kinds(h, "trigger.swept")

    assert [r.contact_id for r in runs] == ["c-ok"]
    assert runs[0].status == RunStatus.COMPLETED
    # Every sweep counts the two, like the contacts an `audience` cannot decide about.
    assert swept
    assert all(e["errors"] == 2 for e in swept)
    assert [e["started"] for e in swept].count(1) == 1
    assert swept[0]["first_error"].startswith(
        "contact a-huge: context.vence_em: the number is past the year 9999"
    )
    # Logged once per sweep, naming the contact; the sweep itself never failed.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(swept)
    assert "left 2 contacts out on errors; the first: contact a-huge" in warnings[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_unix_milliseconds_are_read_as_milliseconds(tmp_path: Path) -> None:
    async with harness(due_settings(tmp_path, 600), at=MONDAY_10H) as h:
        await write(h, "a-ms", vence_em=DUE_AT_MILLISECONDS)  # JavaScript's Date.now()
        await write(h, "b-iso", vence_em=DUE_AT)
        await h.engine.run_until(sp(25, 7, 55))
        early = await runs_of(h, "vencimento")
        await h.engine.run_until(sp(25, 12))
        runs = await runs_of(h, "vencimento")
        sent = await texts(h)

    assert early == []
    assert sorted(r.contact_id for r in runs) == ["a-ms", "b-iso"]
    assert all(sp(25, 8) <= r.created_at < sp(25, 8, 10) for r in runs)  # the same sweep
    assert sent == {
        "a-ms": ["Seu boleto de 24/11 08:00 venceu"],
        "b-iso": ["Seu boleto de 24/11 08:00 venceu"],
    }


async def test_unix_seconds_the_sweep_accepts_are_printed_by_the_date_filter(
    tmp_path: Path,
) -> None:
    async with harness(due_settings(tmp_path, 600), at=MONDAY_10H) as h:
        await write(h, "c-1", vence_em=DUE_AT_SECONDS)
        await h.engine.run_until(sp(25, 12))
        (run,) = await runs_of(h, "vencimento")
        sent = await texts(h)

    assert run.status == RunStatus.COMPLETED
    assert sent == {"c-1": ["Seu boleto de 24/11 08:00 venceu"]}  # in São Paulo time


# ------------------------------------------------------------------ written after it came due


async def test_a_timestamp_written_after_it_came_due_is_swept(tmp_path: Path) -> None:
    async with harness(due_settings(tmp_path, 60), at=sp(25, 9, 55)) as h:
        await h.engine.run_until(sp(25, 10))
        # Came due at 25/11 09:59:30; written 30 s later, after the 10:00 sweep.
        await write(h, "late", vence_em="2026-11-24T09:59:30-03:00")
        await h.engine.run_until(sp(25, 12))
        runs = await runs_of(h, "vencimento")
        swept = await kinds(h, "trigger.swept")

    assert [r.contact_id for r in runs] == ["late"]
    assert sp(25, 10) <= runs[0].created_at <= sp(25, 10, 1)  # by the next sweep
    assert [(e["matched"], e["started"], e["late"]) for e in swept] == [(1, 1, 1)]


async def test_a_bulk_import_of_overdue_timestamps_starts_each_once(tmp_path: Path) -> None:
    async with harness(due_settings(tmp_path, 60), at=sp(25, 7, 55)) as h:
        await write(h, "on-time", vence_em=DUE_AT)
        await h.engine.run_until(sp(25, 10))
        # A nightly import: overdue by hours, in the contact's local time and in UTC.
        await write(h, "late-local", vence_em="2026-11-24T03:00:00")
        await write(h, "late-utc", vence_em="2026-11-24T12:00:00Z")
        await h.engine.run_until(sp(25, 11))
        # Everyone is written again (a CRM sync): nobody is started a second time.
        for contact_id in ("on-time", "late-local", "late-utc"):
            await h.engine.upsert_contact(ContactUpsert(id=contact_id, name="Maria"))
        await write(h, "late-utc", vence_em="2026-11-24T12:00:00Z", valor=10)
        await h.engine.run_until(sp(25, 12))
        runs = await runs_of(h, "vencimento")
        swept = await kinds(h, "trigger.swept")

    assert sorted(r.contact_id for r in runs) == ["late-local", "late-utc", "on-time"]
    assert [(e["started"], e["late"]) for e in swept] == [(1, 0), (2, 2)]


async def test_a_timestamp_written_long_after_it_came_due_is_counted_not_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(due_settings(tmp_path, 60), at=sp(25, 9, 55)) as h:
        await h.engine.run_until(sp(25, 10))
        # Historic data: boletos that came due days ago are not blasted.
        await write(h, "old-1", vence_em="2026-11-20T10:00:00-03:00")
        await write(h, "old-2", vence_em="2026-11-01")
        # Came due 23 h ago: within the day a late timestamp is still started.
        await write(h, "recent", vence_em="2026-11-23T11:00:00-03:00")
        with caplog.at_level(logging.INFO, logger="disparo.triggers"):
            await h.engine.run_until(sp(25, 12))
        runs = await runs_of(h, "vencimento")
        swept = await kinds(h, "trigger.swept")

    assert [r.contact_id for r in runs] == ["recent"]
    assert [(e["started"], e["late"], e["too_old"]) for e in swept] == [(1, 1, 2)]
    said = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
    assert len(said) == 1
    assert "did not start 2 contacts changed since the last sweep" in said[0]
    assert "context.vence_em came due more than 1d before" in said[0]


async def test_a_new_trigger_does_not_sweep_contacts_written_before_it(tmp_path: Path) -> None:
    without_trigger = DUE.replace("  - after: 1d\n    since: context.vence_em\n", "  - api: {}\n")
    async with harness(settings_with_flows(tmp_path, without_trigger), at=MONDAY_10H) as h:
        await write(h, "before", vence_em="2026-11-22T09:00:00-03:00")
    # The trigger is added an hour later. "before" came due at 23/11 09:00 and was not
    # written since: existing data is not swept. "after" is written once it exists.
    later = MONDAY_10H + timedelta(hours=1)
    async with harness(due_settings(tmp_path, 60), at=later) as h:
        await write(h, "after", vence_em="2026-11-22T09:00:00-03:00")
        await h.engine.run_until(later + timedelta(hours=1))
        runs = await runs_of(h, "vencimento")

    assert [r.contact_id for r in runs] == ["after"]
