"""Inbound times clamped to their arrival, and how the skew is told."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from engine.event_times import FUTURE_TOLERANCE, WARN_EVERY, ArrivalClamp, describe, too_far_ahead
from engine.models import ContactEvent, MessageStatus, StatusReport

NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def test_only_what_is_further_ahead_than_the_tolerance_counts() -> None:
    assert too_far_ahead(NOW + FUTURE_TOLERANCE, NOW) is None
    assert too_far_ahead(NOW - timedelta(days=1), NOW) is None
    assert too_far_ahead(NOW + timedelta(hours=3), NOW) == timedelta(hours=3)


@pytest.mark.parametrize(
    ("ahead", "words"),
    [
        (timedelta(minutes=12, seconds=59), "12 min"),
        (timedelta(hours=3), "3 h 00 min"),
        (timedelta(days=1, minutes=5), "24 h 05 min"),
        (timedelta(days=1120, hours=21), "1120 days"),
    ],
)
def test_a_skew_reads_in_hours_and_minutes(ahead: timedelta, words: str) -> None:
    assert describe(ahead) == words


def test_times_ahead_are_clamped_and_each_source_warned_again_only_after_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clamp = ArrivalClamp()
    ahead = NOW + timedelta(hours=3)
    reply = ContactEvent(type="reply", at=ahead, contact_id="c-1", source="robbu")
    kept = ContactEvent(type="reply", at=NOW - timedelta(seconds=5), contact_id="c-1")
    report = StatusReport(provider="altu", status=MessageStatus.READ, at=ahead)

    first = clamp.clamp([reply, kept], NOW)
    clamp.clamp([reply], NOW + timedelta(minutes=1))  # robbu again: no second warning
    clamp.clamp([report], NOW + timedelta(minutes=1))  # another source warns
    clamp.clamp([reply], NOW + WARN_EVERY + timedelta(seconds=1))  # a while later: again

    assert [e.at for e in first] == [NOW, kept.at]
    warned = [r.getMessage().split(" is dated")[0] for r in caplog.records]
    assert warned == ["a reply from robbu", "a read report from altu", "a reply from robbu"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    # The second warning of robbu says one more was clamped while it kept quiet.
    assert "(1 more clamped since the last warning)" in caplog.records[2].getMessage()
    assert "since the last warning" not in caplog.records[0].getMessage()
