"""`disparo why` lines: when, which run and step, what happened and why."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from engine.models import Event
from engine.why_text import why_lines
from engine.wording import local_time

SP = ZoneInfo("America/Sao_Paulo")
AT = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def event(kind: str, **data: object) -> Event:
    return Event(
        id=1, contact_id="c-1", run_id="1f2e3d4c-aaaa", message_id=None, kind=kind, at=AT, data=data
    )


def test_a_decision_line_says_the_rule_its_outcome_and_until_when_in_local_time() -> None:
    (line,) = why_lines(
        [
            event(
                "decision",
                step="lembrete",
                rule="quiet_hours",
                outcome="defer",
                reason="quiet_hours",
                until="2026-11-24T11:00:00+00:00",
                facts={"range": "20:00-08:00"},
            )
        ],
        SP,
    )
    assert line == (
        "2026-11-23 10:00:00  run 1f2e3d4c  lembrete       decision           "
        "quiet_hours: defer (quiet_hours) until 2026-11-24 08:00:00, range=20:00-08:00"
    )


def test_other_events_say_why_and_a_long_step_keeps_its_column_apart() -> None:
    finished, entered = why_lines(
        [
            event("run.finished", status="cancelled", reason="the contact opted out"),
            event("run.step", step="aguardando_resposta"),
        ],
        SP,
    )
    assert finished.endswith("run.finished       the contact opted out, status=cancelled")
    assert "aguardando_resposta run.step" in entered
    # The kind column lines up under a step id longer than the usual column.
    assert finished.index("run.finished") == entered.index("run.step")


def test_the_hour_a_zone_repeats_reads_apart_by_its_offset() -> None:
    lisbon = ZoneInfo("Europe/Lisbon")  # clocks go back at 02:00 WEST on 2026-10-25

    first = local_time(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), lisbon)
    second = local_time(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), lisbon)

    assert (first, second) == (
        "2026-10-25 01:30:00 (UTC+01:00)",
        "2026-10-25 01:30:00 (UTC+00:00)",
    )
    assert local_time(datetime(2026, 10, 25, 3, 0, tzinfo=UTC), lisbon) == "2026-10-25 03:00:00"
    assert local_time(AT, SP) == "2026-11-23 10:00:00"


def test_the_times_and_spans_a_decision_used_read_in_the_same_zone_as_the_line() -> None:
    (line,) = why_lines(
        [
            event(
                "decision",
                step="lembrete",
                rule="recent_contact",
                outcome="skip",
                reason="contacted_recently",
                facts={
                    "last_outbound_at": "2026-11-23T12:30:00.123456+00:00",
                    "recent_contact_seconds": 14400.0,
                    "contact_allowed_at": "2026-11-23T16:30:00.123456+00:00",
                },
            )
        ],
        SP,
    )
    # One clock for the whole line: the auditor compares 10:00 with 13:30, not with
    # a UTC time and a number of seconds.
    assert line.endswith(
        "recent_contact: skip (contacted_recently), last_outbound_at=2026-11-23 09:30:00, "
        "recent_contact=4h, contact_allowed_at=2026-11-23 13:30:00"
    )
