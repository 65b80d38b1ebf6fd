"""The pure parts of triggers: cron fire times (crontab semantics, time zones), misfire
decisions, sweep timing, context timestamps, keyword/regex matching and the checks
`disparo check` runs on triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.context_time import NotATime
from engine.errors import FlowError
from engine.flow.loader import load_flow_text
from engine.flow.model import EventTrigger, Flow
from engine.models import Contact, ContactEvent, DueKind
from engine.scheduler import CronSchedule, cron_problem
from engine.sweep_context import context_timestamp
from engine.triggers import opt_out_keyword_triggers, trigger_problems, trigger_rows
from engine.triggers_cron import cron_run_key, missed_reason, plan_firing
from engine.triggers_inbound import MAX_REGEX_TEXT, compile_trigger, event_run_key
from engine.triggers_sweep import after_run_key, next_sweep_at

SAO_PAULO = "America/Sao_Paulo"


def sp(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A São Paulo wall time as UTC (UTC-3 all year since 2019)."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(SAO_PAULO)).astimezone(UTC)


def fire_times(expression: str, start: datetime, count: int, zone: str = SAO_PAULO) -> list:
    schedule = CronSchedule(expression, zone)
    out, moment = [], start
    for _ in range(count):
        moment = schedule.next_after(moment)
        out.append(moment)
    return out


# ------------------------------------------------------------------ fire times


def test_weekdays_are_read_as_crontab_reads_them_monday_to_friday() -> None:
    friday_at_nine = sp(2026, 11, 20, 9)

    found = fire_times("0 9 * * 1-5", friday_at_nine, 3)

    # Not Saturday: APScheduler 3 alone would read 1-5 as Tuesday-Saturday.
    assert found == [sp(2026, 11, 23, 9), sp(2026, 11, 24, 9), sp(2026, 11, 25, 9)]


def test_sunday_is_both_zero_and_seven_and_steps_count_from_sunday() -> None:
    monday = sp(2026, 11, 23)

    assert fire_times("0 8 * * 0", monday, 1) == [sp(2026, 11, 29, 8)]
    assert fire_times("0 8 * * 7", monday, 1) == [sp(2026, 11, 29, 8)]
    assert fire_times("0 8 * * 5-7", monday, 3) == [
        sp(2026, 11, 27, 8),
        sp(2026, 11, 28, 8),
        sp(2026, 11, 29, 8),
    ]
    # */2 over weekdays: Sunday, Tuesday, Thursday, Saturday.
    assert [
        t.astimezone(ZoneInfo(SAO_PAULO)).strftime("%a")
        for t in fire_times("0 8 * * */2", monday, 4)
    ] == ["Tue", "Thu", "Sat", "Sun"]


def test_day_of_month_and_weekday_both_set_fire_on_either() -> None:
    found = fire_times("0 9 1 * 1", sp(2026, 11, 24), 3)

    assert found == [sp(2026, 11, 30, 9), sp(2026, 12, 1, 9), sp(2026, 12, 7, 9)]


def test_sao_paulo_has_no_daylight_saving_nine_is_always_noon_utc() -> None:
    # January used to be summer time (UTC-2) until 2019; it no longer is.
    for day in (datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC)):
        (fire,) = fire_times("0 9 * * *", day, 1)
        assert fire.hour == 12
        assert fire.tzinfo == UTC


def test_a_zone_with_daylight_saving_keeps_the_local_hour() -> None:
    before = fire_times("0 9 * * *", datetime(2026, 3, 7, tzinfo=UTC), 2, "America/New_York")

    assert before == [
        datetime(2026, 3, 7, 14, tzinfo=UTC),  # 09:00 EST
        datetime(2026, 3, 8, 13, tzinfo=UTC),  # 09:00 EDT, after the clocks moved
    ]


def test_next_after_is_strictly_after_and_next_from_includes_the_moment() -> None:
    schedule = CronSchedule("0 9 * * *", SAO_PAULO)
    nine = sp(2026, 11, 23, 9)

    assert schedule.next_from(nine) == nine
    assert schedule.next_after(nine) == sp(2026, 11, 24, 9)


def local_fires(expression: str, zone: str, start: datetime, count: int) -> list[str]:
    """The first ``count`` fire times after ``start``, as local ISO times; each one is
    also its own ``next_from`` (what coalescing misfires relies on)."""
    schedule = CronSchedule(expression, zone)
    out, moment = [], start
    for _ in range(count):
        found = schedule.next_after(moment)
        assert found is not None
        assert schedule.next_from(found) == found
        out.append(found.astimezone(ZoneInfo(zone)).isoformat())
        moment = found
    return out


NY = "America/New_York"
NY_FALLS_BACK = datetime(2026, 10, 31, 12, tzinfo=UTC)  # 02:00 EDT -> 01:00 EST on Nov 1
NY_SPRINGS = datetime(2026, 3, 7, 12, tzinfo=UTC)  # 02:00 EST -> 03:00 EDT on Mar 8


@pytest.mark.parametrize(
    ("expression", "zone", "start", "expected"),
    [
        # Some hours named: each local time fires once, a repeated one the first time.
        (
            "30 1 * * *",
            NY,
            NY_FALLS_BACK,
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
        (
            "0 1,2 * * *",
            NY,
            NY_FALLS_BACK,
            ["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-02T01:00:00-05:00"],
        ),
        (
            "*/20 1 * * *",
            NY,
            NY_FALLS_BACK,
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:20:00-04:00",
                "2026-11-01T01:40:00-04:00",
                "2026-11-02T01:00:00-05:00",
            ],
        ),
        (
            "0 */2 * * *",
            NY,
            datetime(2026, 11, 1, 3, tzinfo=UTC),
            ["2026-11-01T00:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T04:00:00-05:00"],
        ),
        (  # Berlin repeats 02:00-02:59
            "30 2 * * *",
            "Europe/Berlin",
            datetime(2026, 10, 24, 12, tzinfo=UTC),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        (  # Santiago goes from midnight back to 23:00: 23:00 of Apr 4 happens twice
            "0 23 * * *",
            "America/Santiago",
            datetime(2026, 4, 4, 12, tzinfo=UTC),
            ["2026-04-04T23:00:00-03:00", "2026-04-05T23:00:00-04:00"],
        ),
        # Every hour named: elapsed time, both 01:00 hours fire.
        (
            "0 * * * *",
            NY,
            datetime(2026, 11, 1, 4, 30, tzinfo=UTC),
            ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"],
        ),
        (
            "*/30 * * * *",
            NY,
            datetime(2026, 11, 1, 4, 50, tzinfo=UTC),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
            ],
        ),
    ],
)
def test_a_local_time_the_clocks_repeat_fires_once_unless_every_hour_fires(
    expression: str, zone: str, start: datetime, expected: list[str]
) -> None:
    assert local_fires(expression, zone, start, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "start", "expected"),
    [
        # Some hours named: skipped local times fire once, when the clocks jump.
        ("30 2 * * *", NY, NY_SPRINGS, ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        (
            "*/15 2 * * *",
            NY,
            NY_SPRINGS,
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"],
        ),
        (
            "30 2,3 * * *",
            NY,
            NY_SPRINGS,
            ["2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        ("0 2,3 * * *", NY, NY_SPRINGS, ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]),
        (
            "0 2 8 3 *",
            NY,
            datetime(2026, 3, 1, tzinfo=UTC),
            ["2026-03-08T03:00:00-04:00", "2027-03-08T02:00:00-05:00"],
        ),
        (
            "30 1 * * *",
            "Europe/Lisbon",
            datetime(2026, 3, 28, 12, tzinfo=UTC),
            ["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"],
        ),
        (  # Lord Howe moves half an hour: 02:00 -> 02:30
            "15 2 * * *",
            "Australia/Lord_Howe",
            datetime(2026, 10, 3, tzinfo=UTC),
            ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
        ),
        # Every hour named: a local time that does not exist is not caught up.
        (
            "30 * * * *",
            NY,
            datetime(2026, 3, 8, 5, tzinfo=UTC),
            ["2026-03-08T00:30:00-05:00", "2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"],
        ),
    ],
)
def test_a_local_time_the_clocks_skip_fires_when_they_jump_unless_every_hour_fires(
    expression: str, zone: str, start: datetime, expected: list[str]
) -> None:
    assert local_fires(expression, zone, start, len(expected)) == expected


def test_next_from_at_the_jump_or_in_the_repeated_hour_keeps_to_the_rules() -> None:
    jump = datetime(2026, 3, 8, 7, tzinfo=UTC)  # 03:00 EDT
    skipped = CronSchedule("30 2 * * *", NY)
    one_ten_est = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # after 01:30 EDT already passed

    assert skipped.next_from(jump) == jump
    assert skipped.next_after(jump) == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)
    assert CronSchedule("30 1 * * *", NY).next_from(one_ten_est) == datetime(
        2026, 11, 2, 6, 30, tzinfo=UTC
    )
    assert CronSchedule("30 * * * *", NY).next_from(one_ten_est) == datetime(
        2026, 11, 1, 6, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("61 * * * *", "minute '61': the last value (61) is higher than the maximum value (59)"),
        ("0 25 * * *", "hour '25'"),
        ("0 9 0 * *", "day of month '0'"),
        ("0 9 * 13 *", "month '13'"),
        ("0 9 * * 8", "day of week '8': use 0-7 (0 and 7 are Sunday)"),
        ("0 9 * * 5-1", "the range goes backwards"),
        ("x 9 * * *", "minute 'x': not a number, range (1-5), list (1,15), step (*/10) or *"),
        ("0 9 30 2 *", "it never fires"),
        ("0 9 * *", "4 fields; write five"),
    ],
)
def test_a_bad_cron_expression_names_the_field(expression: str, says: str) -> None:
    problem = cron_problem(expression)

    assert problem is not None
    assert says in problem


# ------------------------------------------------------------------ misfires


def test_a_firing_handled_on_time_fires_and_moves_to_the_next() -> None:
    schedule = CronSchedule("0 9 * * *", SAO_PAULO)
    nine = sp(2026, 11, 23, 9)

    plan = plan_firing(schedule, nine, nine, timedelta(minutes=10))

    assert (plan.fire, plan.missed, plan.next_fire) == (nine, None, sp(2026, 11, 24, 9))


def test_a_firing_late_within_grace_fires_once() -> None:
    schedule = CronSchedule("0 9 * * *", SAO_PAULO)
    nine = sp(2026, 11, 23, 9)

    plan = plan_firing(schedule, nine, nine + timedelta(minutes=10), timedelta(minutes=10))

    assert plan.fire == nine
    assert plan.missed is None


def test_a_firing_late_beyond_grace_is_skipped_and_reported() -> None:
    schedule = CronSchedule("0 9 * * *", SAO_PAULO)
    nine = sp(2026, 11, 23, 9)

    plan = plan_firing(schedule, nine, nine + timedelta(minutes=11), timedelta(minutes=10))

    assert plan.fire is None
    assert plan.missed == nine
    assert plan.next_fire == sp(2026, 11, 24, 9)


def test_missed_fire_times_are_coalesced_into_the_newest_within_grace() -> None:
    schedule = CronSchedule("*/5 * * * *", SAO_PAULO)
    due = sp(2026, 11, 23, 9)
    now = sp(2026, 11, 23, 11, 7)

    plan = plan_firing(schedule, due, now, timedelta(minutes=30))

    assert plan.fire == sp(2026, 11, 23, 11, 5)
    assert plan.missed == due
    assert plan.next_fire == sp(2026, 11, 23, 11, 10)


def test_a_row_not_yet_due_does_nothing() -> None:
    schedule = CronSchedule("0 9 * * *", SAO_PAULO)
    nine = sp(2026, 11, 23, 9)

    plan = plan_firing(schedule, nine, nine - timedelta(seconds=1), timedelta(hours=1))

    assert (plan.fire, plan.missed, plan.next_fire) == (None, None, nine)


def test_a_skipped_local_time_fires_when_the_clocks_jump_and_not_again_that_day() -> None:
    schedule = CronSchedule("30 2 * * *", NY)
    jump = datetime(2026, 3, 8, 7, tzinfo=UTC)  # 03:00 EDT

    plan = plan_firing(schedule, jump, jump, timedelta(hours=1))

    assert (plan.fire, plan.missed) == (jump, None)
    assert plan.next_fire == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)


def test_a_row_due_at_an_instant_the_schedule_no_longer_gives_still_fires_as_stored() -> None:
    # Earlier releases stored 03:30 EDT for 02:30 on the spring-forward day.
    schedule = CronSchedule("30 2 * * *", NY)
    stored = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)

    plan = plan_firing(schedule, stored, stored + timedelta(minutes=1), timedelta(hours=1))

    assert (plan.fire, plan.missed) == (stored, None)
    assert plan.next_fire == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)


def test_a_misfire_says_how_late_it_was_and_it_is_always_more_than_the_grace() -> None:
    jump = datetime(2026, 3, 8, 7, tzinfo=UTC)
    hour = timedelta(hours=1)
    nine = sp(2026, 11, 23, 9)
    barely = nine + timedelta(seconds=3600.4)
    coalescing = CronSchedule("*/5 * * * *", SAO_PAULO)
    now = sp(2026, 11, 23, 11, 7)

    down = plan_firing(CronSchedule("30 2 * * *", NY), jump, jump + 2 * hour, hour)
    late = plan_firing(CronSchedule("0 9 * * *", SAO_PAULO), nine, barely, hour)
    coalesced = plan_firing(coalescing, sp(2026, 11, 23, 9), now, timedelta(minutes=30))

    assert missed_reason(down, jump + 2 * hour, hour) == (
        "7200s late, over the misfire grace of 3600s"
    )
    assert missed_reason(late, barely, hour) == "3601s late, over the misfire grace of 3600s"
    assert missed_reason(coalesced, now, timedelta(minutes=30)) == (
        "coalesced into the fire time 2026-11-23T14:05:00+00:00"
    )


# ------------------------------------------------------------------ sweeps


def test_the_next_sweep_waits_for_the_earliest_timestamp_to_come_due() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    minute, day = timedelta(minutes=1), timedelta(hours=23)

    # Nothing pending: the earliest anything written from now on can come due.
    assert next_sweep_at(now, interval=minute, after=day, earliest=None) == now + day
    # A contact wrote 2 h ago: due 21 h from now.
    two_hours_ago = now - timedelta(hours=2)
    assert next_sweep_at(now, interval=minute, after=day, earliest=two_hours_ago) == (
        two_hours_ago + day
    )
    # Already due: not sooner than the interval.
    old = now - timedelta(days=2)
    assert next_sweep_at(now, interval=minute, after=day, earliest=old) == now + minute


def test_context_timestamps_are_read_from_iso_dates_and_unix_times() -> None:
    zone = ZoneInfo(SAO_PAULO)
    contact = Contact(
        id="c-1",
        context={
            "vence": "2026-11-30",
            "pago_em": "2026-11-23T10:00:00-03:00",
            "local": "2026-11-23T10:00:00",
            "epoch": 1795608000,
            "epoch_ms": 1795608000000,  # JavaScript's Date.now()
            "boleto": {"emitido": "2026-11-20T12:00:00Z"},
            "nulo": None,
            "vazio": "  ",
        },
    )

    assert context_timestamp(contact, "vence", zone) == datetime(2026, 11, 30, 3, tzinfo=UTC)
    assert context_timestamp(contact, "pago_em", zone) == datetime(2026, 11, 23, 13, tzinfo=UTC)
    assert context_timestamp(contact, "local", zone) == datetime(2026, 11, 23, 13, tzinfo=UTC)
    assert context_timestamp(contact, "epoch", zone) == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert context_timestamp(contact, "epoch_ms", zone) == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert context_timestamp(contact, "boleto.emitido", zone) == datetime(
        2026, 11, 20, 12, tzinfo=UTC
    )
    for missing in ("nulo", "vazio", "nada", "boleto.nada", "vence.dia"):
        assert context_timestamp(contact, missing, zone) is None


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (True, "a boolean is not a time"),
        ("amanhã", "the string is not an ISO-8601 time"),
        (20261130, "the number is too small for a Unix time"),
        (1e20, "the number is past the year 9999"),
        ("9999-12-31T23:59:59-03:00", "out of the range of times"),
        (float("nan"), "a number that is not finite (NaN, infinity) is not a time"),
        ({"dia": 30}, "an object is not a time"),
    ],
)
def test_a_context_value_that_is_not_a_time_says_why(value: Any, says: str) -> None:
    contact = Contact(id="c-1", context={"vence": value})

    with pytest.raises(NotATime) as info:
        context_timestamp(contact, "vence", ZoneInfo(SAO_PAULO))

    assert says in str(info.value)
    assert str(value) not in str(info.value)  # the contact's data stays out of logs


def test_run_keys_name_the_trigger_the_moment_and_the_contact() -> None:
    at = datetime(2026, 11, 24, 12, tzinfo=UTC)
    local = at.astimezone(ZoneInfo(SAO_PAULO))

    assert cron_run_key("campanha", 1, local, "c-1") == (
        "cron:campanha:1:2026-11-24T12:00:00+00:00:c-1"
    )
    assert after_run_key("volta", 0, "c-1", local) == "after:volta:0:c-1:2026-11-24T12:00:00+00:00"


# ------------------------------------------------------------------ replies


def test_keywords_match_the_whole_message_ignoring_case_accents_and_punctuation() -> None:
    trigger = compile_trigger(
        "promo", 0, EventTrigger(event="reply", keyword=["promoção", "quero desconto"])
    )

    assert trigger.matches("PROMOCAO")
    assert trigger.matches("  Promoção! ")
    assert trigger.matches("Quero desconto.")
    assert not trigger.matches("quero a promoção")
    assert not trigger.matches("desconto")


def test_a_regex_is_searched_ignoring_case_and_anchors_when_asked() -> None:
    loose = compile_trigger("p", 0, EventTrigger(event="reply", regex=r"pedido\s*\d+"))
    anchored = compile_trigger("p", 1, EventTrigger(event="reply", regex=r"^pedido\s*\d+$"))

    assert loose.matches("Meu PEDIDO 123 atrasou")
    assert anchored.matches("pedido 123")
    assert not anchored.matches("meu pedido 123")
    assert not loose.matches("pedido")


def test_a_reply_longer_than_the_regex_limit_is_never_searched() -> None:
    # `\d+x` is searched from every position: over a 1 MB reply of digits that is
    # hours of one CPU, on the event loop every webhook is answered from.
    trigger = compile_trigger("p", 0, EventTrigger(event="reply", regex=r"\d+x|boleto"))
    keyword = compile_trigger("p", 1, EventTrigger(event="reply", keyword="boleto"))

    assert trigger.matches("x" * (MAX_REGEX_TEXT - 6) + "boleto")
    assert not trigger.matches("x" * (MAX_REGEX_TEXT - 5) + "boleto")
    assert not trigger.matches("1" * 1_000_000)
    assert keyword.matches(" " * MAX_REGEX_TEXT + "boleto")  # keywords are linear


def test_an_event_key_is_the_same_for_every_delivery_of_the_event() -> None:
    at = datetime(2026, 11, 23, 13, tzinfo=UTC)
    keyed = ContactEvent(type="reply", at=at, contact_id="c-1", text="promo", dedupe_key="w:9")
    bare = ContactEvent(type="reply", at=at, contact_id="c-1", text="promo")
    other = ContactEvent(type="reply", at=at, contact_id="c-2", text="promo")

    assert event_run_key("promo", 0, keyed) == "event:promo:0:w:9"
    assert event_run_key("promo", 0, bare) == event_run_key("promo", 0, bare)
    assert event_run_key("promo", 0, bare) != event_run_key("promo", 0, other)


# ------------------------------------------------------------------ checks and rows

HEAD = "flow: f\nstart: a\nsteps:\n  a: {wait: 1h}\ntriggers:\n"


def problems(triggers_yaml: str) -> list[str]:
    with pytest.raises(FlowError) as caught:
        load_flow_text(HEAD + triggers_yaml, "f.yaml", extra_checks=[trigger_problems])
    return [str(p) for p in caught.value.problems]


def test_a_cron_value_out_of_range_points_at_its_line() -> None:
    (found,) = problems('  - cron: "0 24 * * *"\n')

    assert found.startswith("f.yaml:6:")
    assert "`cron` of trigger 1: hour '24'" in found


def test_an_event_trigger_without_keyword_or_regex_says_what_to_add() -> None:
    (found,) = problems("  - api: {}\n  - event: reply\n")

    assert found.startswith("f.yaml:7:")
    assert "trigger 2 needs `keyword:` or `regex:`" in found


def test_a_regex_that_does_not_compile_and_an_empty_keyword_are_reported() -> None:
    found = problems('  - event: reply\n    regex: "pedido ("\n    keyword: ["ok", " "]\n')

    assert any(p.startswith("f.yaml:7:") and "`regex` does not compile" in p for p in found)
    assert any(p.startswith("f.yaml:8:") and "an empty keyword" in p for p in found)


def flow(triggers: list[dict[str, object]]) -> Flow:
    return Flow.model_validate(
        {"flow": "f", "start": "a", "steps": {"a": {"wait": "1h"}}, "triggers": triggers}
    )


def test_trigger_rows_are_keyed_by_definition_so_a_restart_finds_the_same_rows() -> None:
    now = sp(2026, 11, 23, 10)
    triggers: list[dict[str, object]] = [
        {"api": {}},
        {"cron": "0 9 * * 1-5", "audience": "contact.context.vip"},
        {"after": "23h", "since": "last_inbound"},
    ]
    rows = trigger_rows([flow(triggers)], now=now, default_timezone=SAO_PAULO, misfire_grace=60)
    later = trigger_rows(
        [flow(triggers)], now=now + timedelta(hours=5), default_timezone=SAO_PAULO, misfire_grace=60
    )
    edited = trigger_rows(
        [flow([triggers[0], {**triggers[1], "cron": "0 10 * * 1-5"}, triggers[2]])],
        now=now,
        default_timezone=SAO_PAULO,
        misfire_grace=60,
    )

    assert set(rows) == set(later)
    sweep_key, cron_key = sorted(rows)
    assert cron_key.startswith("cron:f:1:")
    assert sweep_key.startswith("after:f:2:")
    assert rows[cron_key].kind == DueKind.CRON
    assert rows[cron_key].due_at == sp(2026, 11, 24, 9)
    assert rows[sweep_key].kind == DueKind.SWEEP
    assert rows[sweep_key].due_at == now
    assert rows[sweep_key].payload["watermark"] == (now - timedelta(hours=23)).isoformat()
    assert cron_key not in edited
    assert sweep_key in edited


def test_a_trigger_keyword_that_opts_the_contact_out_is_refused() -> None:
    # A reply `sair` opts the contact out: the flow it starts could never send.
    check = opt_out_keyword_triggers(["SAIR", "PARAR"])
    with pytest.raises(FlowError) as caught:
        load_flow_text(
            HEAD + "  - event: reply\n    keyword: [oi, Sair!]\n", "f.yaml", extra_checks=[check]
        )

    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:7:19: keyword `Sair!` is an opt-out keyword (opt_out_keywords: SAIR, PARAR): "
        "the reply opts the contact out, and the flow it starts could never send; remove it"
    ]
    assert load_flow_text(
        HEAD + "  - event: reply\n    keyword: oi\n", "f.yaml", extra_checks=[check]
    )


@pytest.mark.parametrize(
    "regex", [r"(a+)+$", r"^(\w+\s?)+$", r"(x*)*y", r"((ab)*c?)+d", r"(?:\d+,?){2,}$"]
)
def test_a_regex_whose_repeats_nest_is_refused_as_a_redos_risk(regex: str) -> None:
    (found,) = problems(f"  - event: reply\n    regex: '{regex}'\n")

    assert found.startswith("f.yaml:7:")
    assert "a repeat inside a repeat" in found


@pytest.mark.parametrize(
    "regex", [r"^pedido\s*\d+$", r"quero (boleto|pix)", r"(ab){2,5}", r"(?:a+)++$", r"(?>\w+\s?)+$"]
)
def test_regexes_without_nested_repeats_are_accepted(regex: str) -> None:
    load_flow_text(
        HEAD + f"  - event: reply\n    regex: '{regex}'\n",
        "f.yaml",
        extra_checks=[trigger_problems],
    )


def test_a_regex_nested_past_pythons_stack_is_a_problem_not_a_crash() -> None:
    deep = "(" * 1000 + "a" + ")" * 1000
    (found,) = problems(f"  - event: reply\n    regex: '{deep}'\n")

    assert found.startswith("f.yaml:7:")
    assert "`regex` is nested too deeply" in found
