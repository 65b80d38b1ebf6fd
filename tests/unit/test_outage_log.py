"""A store outage logs its start, a summary a minute, and its end: not a line per
failed request."""

from __future__ import annotations

import logging

import pytest

from engine.outage_log import OutageLog


def test_an_outage_logs_its_start_a_summary_a_minute_and_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    outage = OutageLog(
        logging.getLogger("disparo.test"),
        "requests answer 503",
        "requests answered 503",
        clock=lambda: now[0],
    )
    caplog.set_level(logging.INFO, logger="disparo.test")
    outage.succeeded()  # nothing to say while the store answers
    for _ in range(50):
        outage.failed("cannot reach the database")
        now[0] += 1
    outage.failed("cannot reach the database")
    now[0] += 10
    outage.succeeded()
    outage.succeeded()

    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO"]
    assert lines[0][1] == (
        "store unavailable: cannot reach the database; requests answer 503 until it is "
        "back (summed up here once a minute)"
    )
    assert lines[1][1] == (
        "store answers again after 60s unavailable (51 requests answered 503 meanwhile)"
    )

    caplog.clear()
    for _ in range(130):  # a second outage, of over two minutes
        outage.failed("down")
        now[0] += 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert (
        warnings[1] == "store still unavailable after 60s (61 requests answered 503 so far): down"
    )
    assert outage.down
