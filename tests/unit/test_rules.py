"""Contact-context rules: each rule at its boundaries, the composition order, and
properties of deferral times (never in the past, never inside quiet hours)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.flow.model import Rules
from engine.models import Attendance, Contact
from engine.quiet_hours import WEEKDAYS, first_local_after, parse_quiet_hours
from engine.rules import (
    ATTENDANCE_RECHECK,
    RuleFacts,
    check_in_attendance,
    check_inactivity,
    check_max_per_day,
    check_opt_out,
    check_quiet_hours,
    check_recent_contact,
    check_window,
    decide,
    next_local_midnight,
)

SP = ZoneInfo("America/Sao_Paulo")  # UTC-3 all year since 2019
NY = ZoneInfo("America/New_York")
# Monday 2026-01-05 12:00 UTC = 09:00 in São Paulo.
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def rules(**fields: Any) -> Rules:
    return Rules.model_validate(fields)


def facts(
    *,
    now: datetime = NOW,
    tz: ZoneInfo = SP,
    channel: Any = "whatsapp",
    has_template: bool = True,
    sent_today: int = 0,
    last_outbound_at: datetime | None = None,
    **contact: Any,
) -> RuleFacts:
    return RuleFacts(
        contact=Contact(id="c1", **contact),
        channel=channel,
        now=now,
        timezone=tz,
        has_template=has_template,
        sent_today=sent_today,
        last_outbound_at=last_outbound_at,
    )


def sp(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A São Paulo wall time as an aware UTC instant."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SP).astimezone(UTC)


def ny(year: int, month: int, day: int, hour: int) -> datetime:
    """A New York wall time (first occurrence) as an aware UTC instant."""
    return datetime(year, month, day, hour, tzinfo=NY).astimezone(UTC)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ------------------------------------------------------------------ window


@pytest.mark.parametrize(
    ("rule", "channel", "last_inbound", "has_template", "outcome", "reason"),
    [
        ("template", "whatsapp", NOW - timedelta(hours=23, minutes=59, seconds=59), True,
         "pass", "window_open"),
        ("template", "whatsapp", NOW - timedelta(hours=24), True, "template",
         "window_closed_template"),
        ("template", "whatsapp", NOW - timedelta(hours=24), False, "skip",
         "window_closed_no_template"),
        ("template", "whatsapp", None, True, "template", "window_closed_template"),
        ("skip", "whatsapp", NOW - timedelta(hours=30), True, "skip", "window_closed"),
        ("ignore", "whatsapp", NOW - timedelta(hours=30), True, "pass", "window_closed_ignored"),
        ("skip", "sms", None, False, "pass", "not_whatsapp"),
        ("template", "email", NOW - timedelta(days=9), False, "pass", "not_whatsapp"),
    ],
)  # fmt: skip
def test_window_is_open_strictly_less_than_24_hours_after_the_last_inbound(
    rule: str,
    channel: str,
    last_inbound: datetime | None,
    has_template: bool,
    outcome: str,
    reason: str,
) -> None:
    decision = check_window(
        rules(window=rule),
        facts(channel=channel, last_inbound_at=last_inbound, has_template=has_template),
    )
    assert (decision.outcome, decision.reason) == (outcome, reason)


@pytest.mark.parametrize(
    ("ago", "outcome"),
    [
        (timedelta(hours=22, minutes=59, seconds=59), "pass"),
        (timedelta(hours=23), "template"),  # exactly at the margin: treated as closed
        (timedelta(hours=23, minutes=30), "template"),
    ],
)
def test_window_margin_closes_the_window_early(ago: timedelta, outcome: str) -> None:
    decision = check_window(
        rules(window="template", window_margin="1h"), facts(last_inbound_at=NOW - ago)
    )
    assert decision.outcome == outcome


def test_window_decision_records_its_facts_as_iso_strings() -> None:
    last = NOW - timedelta(hours=2)
    decision = check_window(
        rules(window="template", window_margin="10m"), facts(last_inbound_at=last)
    )
    assert decision.facts == {
        "last_inbound_at": "2026-01-05T10:00:00+00:00",
        "window_closes_at": "2026-01-06T10:00:00+00:00",
        "window_margin_seconds": 600.0,
    }


# ------------------------------------------------------------------ inactivity


@pytest.mark.parametrize(
    ("setting", "ago", "outcome", "until"),
    [
        ("10m", timedelta(minutes=9, seconds=59), "defer", NOW + timedelta(seconds=1)),
        ("10m", timedelta(minutes=3), "defer", NOW + timedelta(minutes=7)),
        ("10m", timedelta(minutes=10), "pass", None),
        ("10m", None, "pass", None),
        ({"for": "10m", "otherwise": "skip"}, timedelta(minutes=3), "skip", None),
        ({"for": "10m"}, timedelta(minutes=3), "defer", NOW + timedelta(minutes=7)),
    ],
)
def test_inactivity_defers_until_n_after_the_last_interaction(
    setting: Any, ago: timedelta | None, outcome: str, until: datetime | None
) -> None:
    last = NOW - ago if ago is not None else None
    decision = check_inactivity(rules(inactivity=setting), facts(last_interaction_at=last))
    assert (decision.outcome, decision.until) == (outcome, until)
    if outcome != "pass":
        assert decision.reason == "inactive_recently"


# ------------------------------------------------------------------ recent contact


@pytest.mark.parametrize(
    ("ago", "outcome"),
    [
        (timedelta(hours=3, minutes=59), "skip"),
        (timedelta(hours=4), "pass"),
        (None, "pass"),
    ],
)
def test_recent_contact_skips_within_n_of_the_last_outbound(
    ago: timedelta | None, outcome: str
) -> None:
    last = NOW - ago if ago is not None else None
    decision = check_recent_contact(rules(recent_contact="4h"), facts(last_outbound_at=last))
    assert decision.outcome == outcome


def test_recent_contact_counts_the_outbound_the_caller_passes_not_the_contacts() -> None:
    # The caller passes the last outbound of *other* runs; the run's own first
    # message (on the contact record) must not block its follow-up.
    own_first_message = NOW - timedelta(hours=2)
    decision = check_recent_contact(
        rules(recent_contact="4h"),
        replace(
            facts(last_outbound_at=None),
            contact=Contact(id="c1", last_outbound_at=own_first_message),
        ),
    )
    assert decision.outcome == "pass"


# ------------------------------------------------------------------ in attendance


ACTIVE_UNTIL = Attendance(
    attendant="Ana", since=NOW - timedelta(hours=1), until=NOW + timedelta(hours=2)
)
ACTIVE_OPEN = Attendance(attendant="Ana", since=NOW - timedelta(hours=1))
ENDING = Attendance(
    attendant="Ana", since=NOW - timedelta(hours=1), until=NOW + timedelta(minutes=5)
)
ENDED = Attendance(attendant="Ana", since=NOW - timedelta(hours=3), until=NOW)
FUTURE = Attendance(attendant="Ana", since=NOW + timedelta(minutes=1))


@pytest.mark.parametrize(
    ("setting", "attendance", "outcome", "reason", "until"),
    [
        ("skip", ACTIVE_UNTIL, "skip", "in_attendance", None),
        # Looked at again in 15 min, not at the end 2 h away: it may end early.
        ("defer", ACTIVE_UNTIL, "defer", "in_attendance", NOW + ATTENDANCE_RECHECK),
        ("defer", ENDING, "defer", "in_attendance", NOW + timedelta(minutes=5)),
        ("defer", ACTIVE_OPEN, "defer", "in_attendance", NOW + ATTENDANCE_RECHECK),
        ("send", ACTIVE_UNTIL, "pass", "in_attendance_send", None),
        ("skip", ENDED, "pass", "not_in_attendance", None),  # until is exclusive
        ("skip", FUTURE, "pass", "not_in_attendance", None),
        ("skip", None, "pass", "not_in_attendance", None),
    ],
)
def test_in_attendance_acts_only_while_the_attendance_is_active(
    setting: str, attendance: Attendance | None, outcome: str, reason: str, until: datetime | None
) -> None:
    decision = check_in_attendance(rules(in_attendance=setting), facts(attendance=attendance))
    assert (decision.outcome, decision.reason, decision.until) == (outcome, reason, until)


# ------------------------------------------------------------------ quiet hours


@pytest.mark.parametrize(
    ("spec", "now", "until"),
    [
        ("20:00-08:00", sp(2026, 1, 5, 19, 59, 59), None),
        ("20:00-08:00", sp(2026, 1, 5, 20), sp(2026, 1, 6, 8)),
        ("20:00-08:00", sp(2026, 1, 5, 23, 30), sp(2026, 1, 6, 8)),
        ("20:00-08:00", sp(2026, 1, 6, 0), sp(2026, 1, 6, 8)),
        ("20:00-08:00", sp(2026, 1, 6, 3), sp(2026, 1, 6, 8)),
        ("20:00-08:00", sp(2026, 1, 6, 7, 59, 59), sp(2026, 1, 6, 8)),
        ("20:00-08:00", sp(2026, 1, 6, 8), None),
        ("12:00-14:00", sp(2026, 1, 5, 13), sp(2026, 1, 5, 14)),
        ("12:00-14:00", sp(2026, 1, 5, 14), None),
        ("22:00-00:00", sp(2026, 1, 5, 23), sp(2026, 1, 6, 0)),
        ("08:00-08:00", sp(2026, 1, 5, 8), None),  # equal ends: an empty range
        # 2026-01-09 is a Friday; the night belongs to the day it starts on.
        ({"range": "20:00-08:00", "days": ["fri"]}, sp(2026, 1, 9, 21), sp(2026, 1, 10, 8)),
        ({"range": "20:00-08:00", "days": ["fri"]}, sp(2026, 1, 10, 2), sp(2026, 1, 10, 8)),
        ({"range": "20:00-08:00", "days": ["fri"]}, sp(2026, 1, 9, 2), None),
        ({"range": "20:00-08:00", "days": ["fri"]}, sp(2026, 1, 10, 21), None),
        # Whole quiet days in a row: deferred past all of them.
        ({"range": "00:00-24:00", "days": ["sat", "sun"]}, sp(2026, 1, 10, 10), sp(2026, 1, 12, 0)),
        ({"range": "00:00-24:00", "days": ["sat", "sun"]}, sp(2026, 1, 9, 23, 59), None),
    ],
)  # fmt: skip
def test_quiet_hours_defer_to_the_end_of_the_local_range(
    spec: Any, now: datetime, until: datetime | None
) -> None:
    decision = check_quiet_hours(rules(quiet_hours=spec), facts(now=now))
    if until is None:
        assert (decision.outcome, decision.reason) == ("pass", "outside_quiet_hours")
    else:
        assert (decision.outcome, decision.reason, decision.until) == (
            "defer",
            "quiet_hours",
            until,
        )


def test_quiet_hours_that_never_end_skip_instead_of_deferring_forever() -> None:
    decision = check_quiet_hours(rules(quiet_hours="00:00-24:00"), facts())
    assert (decision.outcome, decision.reason) == ("skip", "quiet_hours_never_end")


def test_quiet_hours_decision_names_the_range_timezone_and_local_time() -> None:
    decision = check_quiet_hours(rules(quiet_hours="20:00-08:00"), facts(now=sp(2026, 1, 5, 22)))
    assert decision.facts == {
        "range": "20:00-08:00",
        "timezone": "America/Sao_Paulo",
        "local_time": "2026-01-05T22:00:00-03:00",
        "quiet_until": "2026-01-06T11:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("spec", "now", "until"),
    [
        # Spring forward, Sunday 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        ("20:00-08:00", ny(2026, 3, 7, 21), utc(2026, 3, 8, 12)),
        # 02:30 never happens that night; quiet hours end when the clock jumps past it.
        ("22:00-02:30", ny(2026, 3, 7, 23), utc(2026, 3, 8, 7)),
        # Fall back, Sunday 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
        ("00:00-01:30", utc(2026, 11, 1, 5, 15), utc(2026, 11, 1, 5, 30)),
        ("00:00-01:30", utc(2026, 11, 1, 6, 15), utc(2026, 11, 1, 6, 30)),
        ("20:00-08:00", ny(2026, 10, 31, 21), utc(2026, 11, 1, 13)),
    ],
)
def test_quiet_hours_follow_the_wall_clock_across_dst(
    spec: str, now: datetime, until: datetime
) -> None:
    decision = check_quiet_hours(rules(quiet_hours=spec), facts(now=now, tz=NY))
    assert decision.until == until


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("25:00-08:00", "is not a time of day"),
        ("20:60-08:00", "is not a time of day"),
        ("20:00-24:30", "is not a time of day"),
        ("24:00-08:00", "cannot start at 24:00"),
        ("20:00", "is not a time range; write it like 20:00-08:00"),
    ],
)
def test_impossible_quiet_hours_are_rejected_with_the_reason(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_quiet_hours(bad)


def test_quiet_until_outside_quiet_hours_is_now() -> None:
    now = sp(2026, 1, 5, 12)
    assert parse_quiet_hours("20:00-08:00").quiet_until(now, SP) == now


def test_first_local_after_refuses_a_wall_time_already_past() -> None:
    with pytest.raises(ValueError, match="is not after"):
        first_local_after(date(2026, 1, 5), 8 * 3600, after=sp(2026, 1, 5, 9), tz=SP)


# ------------------------------------------------------------------ max per day


@pytest.mark.parametrize(
    ("sent_today", "outcome", "until"),
    [
        (2, "pass", None),
        (3, "defer", sp(2026, 1, 6, 0)),
        (7, "defer", sp(2026, 1, 6, 0)),
    ],
)
def test_max_per_day_defers_to_the_next_local_midnight(
    sent_today: int, outcome: str, until: datetime | None
) -> None:
    decision = check_max_per_day(rules(max_per_day=3), facts(sent_today=sent_today))
    assert (decision.outcome, decision.until) == (outcome, until)


@pytest.mark.parametrize(
    ("zone", "now", "midnight"),
    [
        ("America/New_York", ny(2026, 3, 7, 22), utc(2026, 3, 8, 5)),
        ("America/New_York", ny(2026, 3, 8, 12), utc(2026, 3, 9, 4)),
        ("America/New_York", ny(2026, 10, 31, 12), utc(2026, 11, 1, 4)),
        # Chile skips 00:00 on 2026-09-06 (clocks jump to 01:00): the day starts then.
        ("America/Santiago", utc(2026, 9, 5, 20), utc(2026, 9, 6, 4)),
    ],
)
def test_next_local_midnight_is_dst_safe(zone: str, now: datetime, midnight: datetime) -> None:
    assert next_local_midnight(now, ZoneInfo(zone)) == midnight


# ------------------------------------------------------------------ opt-out & composition


def test_opt_out_skips_and_cannot_be_overridden() -> None:
    verdict = decide(
        rules(in_attendance="send", window="ignore", quiet_hours="20:00-08:00"),
        facts(opted_out_at=NOW - timedelta(days=1), last_inbound_at=NOW),
    )
    assert (verdict.action, verdict.reason) == ("skip", "opted_out")
    assert [d.rule for d in verdict.decisions] == ["opt_out"]
    assert check_opt_out(facts()).outcome == "pass"


ALL_RULES = {
    "window": "template",
    "inactivity": "10m",
    "recent_contact": "4h",
    "in_attendance": "skip",
    "quiet_hours": "20:00-08:00",
    "max_per_day": 3,
}


def test_decide_evaluates_every_configured_rule_in_the_documented_order() -> None:
    verdict = decide(rules(**ALL_RULES), facts(last_inbound_at=NOW - timedelta(hours=1)))
    assert verdict.action == "send"
    assert verdict.reason == "all_passed"
    assert [d.rule for d in verdict.decisions] == [
        "opt_out",
        "in_attendance",
        "quiet_hours",
        "max_per_day",
        "recent_contact",
        "inactivity",
        "window",
    ]


def test_unconfigured_rules_are_not_recorded() -> None:
    verdict = decide(rules(), facts())
    assert (verdict.action, [d.rule for d in verdict.decisions]) == ("send", ["opt_out"])
    assert check_window(rules(), facts()).reason == "not_configured"


@pytest.mark.parametrize(
    ("contact", "now", "action", "reason", "rules_seen"),
    [
        # Attendance is judged before quiet hours.
        ({"attendance": ACTIVE_OPEN}, sp(2026, 1, 5, 22), "skip", "in_attendance",
         ["opt_out", "in_attendance"]),
        # A deferral ends evaluation: recent contact is judged when the deferral ends.
        ({"last_interaction_at": NOW}, sp(2026, 1, 5, 22), "defer", "quiet_hours",
         ["opt_out", "in_attendance", "quiet_hours"]),
        ({"last_interaction_at": NOW - timedelta(minutes=1)}, NOW, "defer", "inactive_recently",
         ["opt_out", "in_attendance", "quiet_hours", "max_per_day", "recent_contact",
          "inactivity"]),
        ({}, NOW, "send_template", "window_closed_template",
         ["opt_out", "in_attendance", "quiet_hours", "max_per_day", "recent_contact",
          "inactivity", "window"]),
    ],
)  # fmt: skip
def test_decide_stops_at_the_first_skip_or_deferral(
    contact: dict[str, Any], now: datetime, action: str, reason: str, rules_seen: list[str]
) -> None:
    verdict = decide(rules(**ALL_RULES), facts(now=now, **contact))
    assert (verdict.action, verdict.reason) == (action, reason)
    assert [d.rule for d in verdict.decisions] == rules_seen


def test_recent_contact_is_judged_before_inactivity_and_the_window() -> None:
    verdict = decide(
        rules(**ALL_RULES),
        facts(last_outbound_at=NOW - timedelta(hours=1), last_interaction_at=NOW),
    )
    assert (verdict.action, verdict.reason) == ("skip", "contacted_recently")


def test_a_deferral_carries_its_time_and_events_are_json() -> None:
    verdict = decide(rules(**ALL_RULES), facts(now=sp(2026, 1, 5, 22)))
    assert verdict.until == sp(2026, 1, 6, 8)
    data = verdict.decisions[-1].as_event_data()
    assert data["until"] == "2026-01-06T11:00:00+00:00"
    assert json.loads(json.dumps(data)) == data
    assert "until" not in verdict.decisions[0].as_event_data()


# ------------------------------------------------------------------ properties

ZONES = ["America/Sao_Paulo", "America/New_York", "America/Santiago", "Australia/Lord_Howe",
         "Europe/London", "Asia/Kolkata", "UTC"]  # fmt: skip
clock_times = st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 45])).map(
    lambda hm: f"{hm[0]:02d}:{hm[1]:02d}"
)
quiet_specs = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", clock_times, st.one_of(clock_times, st.just("24:00"))),
    st.builds(
        lambda a, b, days: {"range": f"{a}-{b}", "days": days},
        clock_times,
        st.one_of(clock_times, st.just("24:00")),
        st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True),
    ),
)
instants = st.datetimes(
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001 - hypothesis attaches the timezone
    max_value=datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=400, deadline=None)
@given(spec=quiet_specs, now=instants, zone=st.sampled_from(ZONES))
def test_quiet_hours_deferral_is_never_past_never_quiet_and_the_first_allowed_instant(
    spec: Any, now: datetime, zone: str
) -> None:
    tz = ZoneInfo(zone)
    rule = rules(quiet_hours=spec)
    quiet = parse_quiet_hours(rule.quiet_hours)  # type: ignore[arg-type]
    decision = check_quiet_hours(rule, facts(now=now, tz=tz))
    if decision.outcome == "pass":
        assert not quiet.contains(now, tz)
    elif decision.outcome == "defer":
        assert decision.until is not None
        assert decision.until > now
        assert not quiet.contains(decision.until, tz)
        just_before = decision.until - timedelta(seconds=1)
        assert just_before < now or quiet.contains(just_before, tz)
    else:
        assert decision.reason == "quiet_hours_never_end"
        assert quiet.quiet_until(now, tz) is None


@settings(max_examples=300, deadline=None)
@given(
    spec=quiet_specs,
    now=instants,
    zone=st.sampled_from(ZONES),
    sent_today=st.integers(0, 5),
    interaction_ago=st.one_of(st.none(), st.integers(0, 3600)),
)
def test_every_deferral_is_in_the_future(
    spec: Any, now: datetime, zone: str, sent_today: int, interaction_ago: int | None
) -> None:
    last = now - timedelta(seconds=interaction_ago) if interaction_ago is not None else None
    verdict = decide(
        rules(quiet_hours=spec, max_per_day=3, inactivity="30m", in_attendance="defer"),
        facts(now=now, tz=ZoneInfo(zone), sent_today=sent_today, last_interaction_at=last,
              attendance=ACTIVE_OPEN if sent_today == 5 else None),
    )  # fmt: skip
    if verdict.action == "defer":
        assert verdict.until is not None
        assert verdict.until > now


@settings(max_examples=300, deadline=None)
@given(now=instants, zone=st.sampled_from(ZONES))
def test_next_local_midnight_starts_the_next_local_day(now: datetime, zone: str) -> None:
    tz = ZoneInfo(zone)
    midnight = next_local_midnight(now, tz)
    assert midnight > now
    assert midnight.astimezone(tz).date() == now.astimezone(tz).date() + timedelta(days=1)
    assert (midnight - timedelta(seconds=1)).astimezone(tz).date() == now.astimezone(tz).date()
