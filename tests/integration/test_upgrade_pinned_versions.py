"""Runs in flight on a flow version an earlier release accepted, after an upgrade.

Each run is pinned to the flow version it started with, stored as its text. Checks
added since (a step rule written with no value is now a problem instead of the rule
turned off) must not strand those runs: the earlier release ran that version, so its
runs go on with it as that release read it, while the flow file is fixed for new runs.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from engine.flow.loader import flow_version
from engine.models import MessageStatus, RunStatus
from engine.serve import warn_open_runs
from tests.integration.engine_kit import harness, settings_with_flows

# What the earlier release took: `recent_contact:` with no value turned the rule off.
EARLIER = """\
flow: confirma
defaults: {provider: sandbox_sms, rules: {recent_contact: 4h}}
start: pergunta
steps:
  pergunta:
    send: {channel: sms, text: "Confirma?"}
    next: espera
  espera:
    wait: {for: reply, up_to: 30m}
    on: {reply: ok, timeout: fim}
  ok:
    send: {channel: sms, text: "Obrigado"}
    rules:
      recent_contact:
    next: fim
  fim: {end: completed}
"""
TODAY = EARLIER.replace("      recent_contact:\n", "      recent_contact: null\n")
# A zone the earlier release's host had a file for, and this host has not.
ZONED = TODAY.replace("flow: confirma\n", "flow: confirma\ntimezone: posix/Gone/Zone\n")


@pytest.mark.parametrize(
    ("earlier", "problem"),
    [
        (EARLIER, "`recent_contact` in step `ok` has no value"),
        (ZONED, "`posix/Gone/Zone` is not a time zone"),
    ],
    ids=["blank-rule", "non-iana-zone"],
)
async def test_a_run_pinned_to_a_version_today_s_checks_refuse_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, earlier: str, problem: str
) -> None:
    settings = settings_with_flows(tmp_path, TODAY)
    old = flow_version(earlier)
    async with harness(settings) as h:
        run = await h.start("confirma")
        await h.advance(timedelta(seconds=5))
    # As the earlier release left it: the run pinned to the version it started with.
    with sqlite3.connect(tmp_path / "disparo.db") as db:
        db.execute(
            "INSERT INTO flow_versions (flow, version, source) VALUES ('confirma', ?, ?)",
            (old, earlier),
        )
        db.execute("UPDATE runs SET flow_version = ? WHERE id = ?", (old, run.id))

    async with harness(settings) as h:
        with caplog.at_level(logging.WARNING):
            await warn_open_runs(h.engine)  # what `disparo serve` logs at start
            await h.event("reply", text="sim")
            await h.advance(timedelta(seconds=5))

        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        sent = [m for m in await h.messages(run.id) if m.step == "ok"]
        assert [m.status for m in sent] == [MessageStatus.DELIVERED]
    # The operator is told, but not to cancel runs that go on.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    told = [r.getMessage() for r in caplog.records if r.name == "disparo.serve"]
    assert len(told) == 1, told
    assert problem in told[0]
    assert "cancel" not in told[0].lower()
