"""Two processes on one database whose flow files differ (a rolling deploy half
done, a host restarted from an old image): each start and SIGHUP makes the stored
triggers those of the process's own files, so the process with the older files
unschedules the cron campaign the other one scheduled. That is how triggers follow
the files, but it must not happen in silence: the process that unscheduled a
trigger says which, and why (its files lack that flow or that trigger), at WARNING,
or an operator learns of it only when the campaign does not go out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.clock import VirtualClock
from engine.runtime import Engine, open_store
from tests.integration.engine_kit import settings_with_flows
from tests.integration.test_triggers import CAMPAIGN, MONDAY_10H, SMS_STEP

API_ONLY = "flow: avulso\ntriggers:\n  - api: {}\n" + SMS_STEP


def _unscheduled(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "unscheduled" in r.getMessage()]


async def test_a_process_without_the_campaigns_flow_says_it_unscheduled_it(
    tmp_path: Path, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="disparo")
    for folder in ("newer", "older"):
        (tmp_path / folder).mkdir()
    newer = settings_with_flows(tmp_path / "newer", CAMPAIGN, API_ONLY, storage=storage)
    older = settings_with_flows(tmp_path / "older", API_ONLY, storage=storage)
    migrating = open_store(storage)
    await migrating.migrate()
    await migrating.close()
    clock = VirtualClock(MONDAY_10H)

    async with Engine(newer, clock=clock, run_loop=False) as one:
        scheduled = [t.key for t in await one.store.stored_triggers()]
        assert not _unscheduled(caplog)
        async with Engine(older, clock=clock, run_loop=False) as two:
            left = [t.key for t in await two.store.stored_triggers()]

    assert [key.split(":")[:3] for key in scheduled] == [["cron", "campanha", "0"]]
    assert left == []  # the documented outcome: triggers follow the last files loaded
    lines = _unscheduled(caplog)
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    message = lines[0].getMessage()
    assert scheduled[0] in message
    assert "campanha" in message
    assert "not among this process's flow files" in message
    assert "same flow files" in message
