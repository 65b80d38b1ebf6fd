"""Processes sharing a PostgreSQL database count leases, timers and Interflow's rate
window in their own wall time. A host whose clock is off (NTP stopped, a VM resumed
from a snapshot) takes over work another process is still doing, as soon as that
lease looks expired by its own clock. The operator must hear of it from the process
itself, before the ambiguous messages and resends pile up: a WARNING that says by
how much and what to do, and ``disparo_clock_skew_seconds`` to alert on.

The process's clock is the injectable one, set off from the database server's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.contract.conftest import fresh_postgres_schema, postgres_dsn_or_skip
from tests.integration.engine_kit import running_engine, settings_for, until

pytestmark = pytest.mark.postgres


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    async for fresh in fresh_postgres_schema(postgres_dsn_or_skip()):
        yield fresh


def _skew_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "clock" in r.getMessage() and "database" in r.getMessage()]


def _gauge(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("disparo_clock_skew_seconds "):
            return float(line.split()[1])
    raise AssertionError(f"no disparo_clock_skew_seconds in:\n{text}")


@pytest.mark.parametrize(("offset", "word"), [(45, "ahead of"), (-45, "behind")])
async def test_a_clock_off_from_the_databases_is_a_warning_with_the_skew(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture, offset: int, word: str
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(tmp_path, storage=dsn)
    started = datetime.now(UTC)
    at = started + timedelta(seconds=offset)

    async with running_engine(settings, at=at) as (engine, _):
        await until(lambda: bool(_skew_lines(caplog)), "a word about the clock")
        # The process's clock stands still at ``at`` while the database's runs on:
        # the skew told is 45 s give or take the start-up's real time.
        start_up = (datetime.now(UTC) - started).total_seconds()
        gauge = _gauge(engine.metrics.render().decode())

    line = _skew_lines(caplog)[0]
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert f"{word} the database's" in message
    told = re.search(r"clock is (\d+\.\d) s ", message)
    assert told is not None, message
    assert abs(float(told[1]) - 45) <= start_up + 0.1, message
    assert "NTP" in message
    assert "dispatcher.lease_seconds" in message
    assert abs(abs(gauge) - 45) < 5
    assert (gauge > 0) == (offset > 0)


async def test_a_clock_in_step_with_the_database_says_nothing(
    tmp_path: Path, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(tmp_path, storage=dsn)

    async with running_engine(settings, at=datetime.now(UTC)) as (engine, _):
        await until(
            lambda: "disparo_clock_skew_seconds " in engine.metrics.render().decode(),
            "the skew measured",
        )
        gauge = _gauge(engine.metrics.render().decode())

    assert abs(gauge) < 1
    assert not [r for r in _skew_lines(caplog) if r.levelno >= logging.WARNING]
