"""Contact-context rules: pure functions of a step's ``Rules`` and ``RuleFacts``.

Each ``check_*`` function judges one rule and returns a ``Decision`` with a stable
reason code and the facts it used (so ``disparo why`` can answer "why was this not
sent?"). A rule the flow does not set passes with reason ``not_configured``.

``decide`` composes them in this order, stopping at the first ``skip`` or ``defer``:

1. opt-out (always on, never overridable): ``opted_out`` (or ``phone_opted_out``) -> skip;
2. ``in_attendance``: a live agent attends the contact -> skip, defer or send;
3. ``quiet_hours``: local time inside the range -> defer to its end;
4. ``max_per_day``: the daily cap is reached -> defer to the next local midnight;
5. ``recent_contact``: an outbound within N -> skip;
6. ``inactivity``: an interaction within N -> defer to N after it (or skip);
7. ``window``: the WhatsApp 24 h window is closed -> template, skip or ignore.

A deferral is not a promise to send at ``until``: the dispatcher runs ``decide``
again at that time, so a message deferred out of quiet hours (or to the next day
by the cap) is checked again for attendance, cap, recent contact, inactivity and
the window then. ``Verdict.decisions`` holds opt-out plus every configured rule
evaluated up to the deciding one, in order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from engine.flow.model import InactivityRule, Rules, to_timedelta
from engine.models import Contact
from engine.quiet_hours import first_local_after, parse_quiet_hours

RuleName = Literal[
    "window",
    "inactivity",
    "recent_contact",
    "in_attendance",
    "quiet_hours",
    "max_per_day",
    "opt_out",
]
Outcome = Literal["pass", "skip", "defer", "template"]
WINDOW = timedelta(hours=24)
# A deferred send looks at the attendance again after this long, or at its end when
# that comes first: agents rarely close attendances explicitly, one that has an end
# may be closed early (attendance_ended), and re-checking is cheap.
ATTENDANCE_RECHECK = timedelta(minutes=15)
NOT_CONFIGURED = "not_configured"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One rule's judgement: its outcome, a stable reason code and the facts it used."""

    rule: RuleName
    outcome: Outcome
    reason: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    until: datetime | None = None  # aware UTC; set for ``defer``

    def as_event_data(self) -> dict[str, Any]:
        """The JSON-serialisable body of the ``decision`` event (``until`` only when set)."""
        data: dict[str, Any] = {
            "rule": self.rule,
            "outcome": self.outcome,
            "reason": self.reason,
            "facts": dict(self.facts),
        }
        if self.until is not None:
            data["until"] = _iso(self.until)
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleFacts:
    """What the rules may look at; gathered by the caller, never read from a clock here.

    ``last_outbound_at`` is the outbound ``recent_contact`` counts. Pass the last
    outbound of *other* runs to keep a flow's own follow-ups (lembrete -> SMS two
    hours later) from being skipped by its own first message.
    """

    contact: Contact
    channel: Literal["whatsapp", "sms", "email"]
    now: datetime  # aware UTC
    timezone: ZoneInfo  # contact.timezone, else the flow's, else the settings default
    has_template: bool  # the step has a template to fall back on
    template_only: bool = False  # the step's content is an approved template and nothing else
    sent_today: int = 0  # outbound to the contact since local midnight, all flows
    last_outbound_at: datetime | None = None
    # Another contact with the phone that opted out before this one was created
    # (``engine.phone_opt_out``): the person said stop, whatever record this is.
    phone_opt_out: Contact | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What to do with the message, and every decision that led there."""

    action: Literal["send", "send_template", "skip", "defer"]
    decisions: tuple[Decision, ...]
    until: datetime | None = None  # for defer
    reason: str = ""  # the deciding decision's reason code; ``all_passed`` for a plain send


def _unset(rule: RuleName) -> Decision:
    return Decision(rule=rule, outcome="pass", reason=NOT_CONFIGURED)


def check_opt_out(facts: RuleFacts) -> Decision:
    """Skip (``opted_out``) whenever the contact has opted out, and (``phone_opted_out``)
    when its phone had opted out before it existed; nothing overrides it."""
    opted = facts.contact.opted_out_at
    data: dict[str, Any] = {"opted_out_at": _iso(opted)}
    if opted is not None:
        return Decision(rule="opt_out", outcome="skip", reason="opted_out", facts=data)
    other = facts.phone_opt_out
    if other is not None:
        data = {"opted_out_at": _iso(other.opted_out_at), "opted_out_contact": other.id}
        return Decision(rule="opt_out", outcome="skip", reason="phone_opted_out", facts=data)
    return Decision(rule="opt_out", outcome="pass", reason="not_opted_out", facts=data)


def check_in_attendance(rules: Rules, facts: RuleFacts) -> Decision:
    """A live agent attends the contact now: skip, defer (to the attendance's end or
    ``ATTENDANCE_RECHECK`` from now, whichever comes first) or send anyway."""
    if rules.in_attendance is None:
        return _unset("in_attendance")
    attendance = facts.contact.attendance
    if attendance is None or not attendance.active_at(facts.now):
        data = {"attendance_since": _iso(attendance.since) if attendance else None}
        return Decision(
            rule="in_attendance", outcome="pass", reason="not_in_attendance", facts=data
        )
    data = {
        "attendant": attendance.attendant,
        "attendance_since": _iso(attendance.since),
        "attendance_until": _iso(attendance.until),
    }
    if rules.in_attendance == "send":
        return Decision(
            rule="in_attendance", outcome="pass", reason="in_attendance_send", facts=data
        )
    if rules.in_attendance == "skip":
        return Decision(rule="in_attendance", outcome="skip", reason="in_attendance", facts=data)
    recheck = facts.now + ATTENDANCE_RECHECK
    until = min(attendance.until or recheck, recheck).astimezone(UTC)
    return Decision(
        rule="in_attendance", outcome="defer", reason="in_attendance", facts=data, until=until
    )


def check_quiet_hours(rules: Rules, facts: RuleFacts) -> Decision:
    """Inside the local quiet range: defer to the first instant outside it.

    Quiet hours that never end (``00:00-24:00`` every day) skip with
    ``quiet_hours_never_end`` rather than defer forever.
    """
    if rules.quiet_hours is None:
        return _unset("quiet_hours")
    quiet = parse_quiet_hours(rules.quiet_hours)
    data: dict[str, Any] = {
        "range": quiet.text,
        "timezone": facts.timezone.key,
        "local_time": facts.now.astimezone(facts.timezone).isoformat(),
    }
    if not isinstance(rules.quiet_hours, str) and rules.quiet_hours.days:
        data["days"] = list(rules.quiet_hours.days)
    if not quiet.contains(facts.now, facts.timezone):
        return Decision(
            rule="quiet_hours", outcome="pass", reason="outside_quiet_hours", facts=data
        )
    until = quiet.quiet_until(facts.now, facts.timezone)
    if until is None:
        return Decision(
            rule="quiet_hours", outcome="skip", reason="quiet_hours_never_end", facts=data
        )
    data["quiet_until"] = _iso(until)
    return Decision(
        rule="quiet_hours", outcome="defer", reason="quiet_hours", facts=data, until=until
    )


def next_local_midnight(now: datetime, tz: ZoneInfo) -> datetime:
    """The first instant (aware UTC) of the next local day in ``tz``; DST-safe, after ``now``."""
    tomorrow = now.astimezone(tz).date() + timedelta(days=1)
    return first_local_after(tomorrow, 0, after=now, tz=tz)


def check_max_per_day(rules: Rules, facts: RuleFacts) -> Decision:
    """``sent_today`` reached the cap: defer to the next local midnight."""
    if rules.max_per_day is None:
        return _unset("max_per_day")
    data: dict[str, Any] = {"sent_today": facts.sent_today, "max_per_day": rules.max_per_day}
    if facts.sent_today < rules.max_per_day:
        return Decision(rule="max_per_day", outcome="pass", reason="under_daily_cap", facts=data)
    until = next_local_midnight(facts.now, facts.timezone)
    data["next_day_at"] = _iso(until)
    return Decision(
        rule="max_per_day", outcome="defer", reason="max_per_day_reached", facts=data, until=until
    )


def check_recent_contact(rules: Rules, facts: RuleFacts) -> Decision:
    """An outbound less than N ago (``now < last_outbound_at + N``): skip."""
    if rules.recent_contact is None:
        return _unset("recent_contact")
    span = to_timedelta(rules.recent_contact)
    last = facts.last_outbound_at
    data: dict[str, Any] = {
        "last_outbound_at": _iso(last),
        "recent_contact_seconds": span.total_seconds(),
    }
    if last is None or facts.now >= last + span:
        return Decision(
            rule="recent_contact", outcome="pass", reason="no_recent_contact", facts=data
        )
    data["contact_allowed_at"] = _iso(last + span)
    return Decision(rule="recent_contact", outcome="skip", reason="contacted_recently", facts=data)


def check_inactivity(rules: Rules, facts: RuleFacts) -> Decision:
    """An interaction with the bot less than N ago: defer until N after it, or skip
    when the rule says ``otherwise: skip``."""
    if rules.inactivity is None:
        return _unset("inactivity")
    setting = rules.inactivity
    quiet_for, otherwise = (
        (setting.for_, setting.otherwise)
        if isinstance(setting, InactivityRule)
        else (setting, "defer")
    )
    span = to_timedelta(quiet_for)
    last = facts.contact.last_interaction_at
    data: dict[str, Any] = {
        "last_interaction_at": _iso(last),
        "inactivity_seconds": span.total_seconds(),
    }
    if last is None or facts.now >= last + span:
        return Decision(
            rule="inactivity", outcome="pass", reason="inactive_long_enough", facts=data
        )
    until = (last + span).astimezone(UTC)
    data["inactive_at"] = _iso(until)
    if otherwise == "skip":
        return Decision(rule="inactivity", outcome="skip", reason="inactive_recently", facts=data)
    return Decision(
        rule="inactivity", outcome="defer", reason="inactive_recently", facts=data, until=until
    )


def window_closes_at(last_inbound_at: datetime | None) -> datetime | None:
    """When the WhatsApp customer-service window opened by the last inbound closes."""
    return last_inbound_at + WINDOW if last_inbound_at is not None else None


def check_window(rules: Rules, facts: RuleFacts) -> Decision:
    """The 24 h window is open iff ``now < last_inbound_at + 24h - window_margin``.

    Closed: ``template`` sends the step's template (skip with
    ``window_closed_no_template`` when it has none), ``skip`` skips, ``ignore``
    passes. A step that sends only an approved template is sent under ``template``
    and ``skip`` alike: WhatsApp lets a template open a conversation, so the window
    never stops it. Not applied to sms and email (pass, ``not_whatsapp``).
    """
    if rules.window is None:
        return _unset("window")
    if facts.channel != "whatsapp":
        return Decision(
            rule="window", outcome="pass", reason="not_whatsapp", facts={"channel": facts.channel}
        )
    margin = to_timedelta(rules.window_margin) if rules.window_margin is not None else timedelta()
    last = facts.contact.last_inbound_at
    closes = window_closes_at(last)
    data: dict[str, Any] = {
        "last_inbound_at": _iso(last),
        "window_closes_at": _iso(closes),
        "window_margin_seconds": margin.total_seconds(),
    }
    if closes is not None and facts.now < closes - margin:
        return Decision(rule="window", outcome="pass", reason="window_open", facts=data)
    if rules.window == "ignore":
        return Decision(rule="window", outcome="pass", reason="window_closed_ignored", facts=data)
    if rules.window == "skip" and not facts.template_only:
        return Decision(rule="window", outcome="skip", reason="window_closed", facts=data)
    if facts.has_template:
        return Decision(
            rule="window", outcome="template", reason="window_closed_template", facts=data
        )
    return Decision(rule="window", outcome="skip", reason="window_closed_no_template", facts=data)


def _decisions(rules: Rules, facts: RuleFacts) -> Iterator[Decision]:
    """Opt-out, then every configured rule, in the documented order, one at a time."""
    yield check_opt_out(facts)
    checks = (
        check_in_attendance,
        check_quiet_hours,
        check_max_per_day,
        check_recent_contact,
        check_inactivity,
        check_window,
    )
    for check in checks:
        decision = check(rules, facts)
        if decision.reason != NOT_CONFIGURED:
            yield decision


def decide(rules: Rules, facts: RuleFacts) -> Verdict:
    """Compose the rules in the documented order into one ``Verdict``.

    The first ``skip`` or ``defer`` decides and ends evaluation; otherwise a
    ``template`` decision makes it ``send_template`` and all passes make it ``send``.
    """
    evaluated: list[Decision] = []
    for decision in _decisions(rules, facts):
        evaluated.append(decision)
        if decision.outcome == "skip":
            return Verdict(action="skip", decisions=tuple(evaluated), reason=decision.reason)
        if decision.outcome == "defer":
            return Verdict(
                action="defer",
                decisions=tuple(evaluated),
                until=decision.until,
                reason=decision.reason,
            )
    template = next((d for d in evaluated if d.outcome == "template"), None)
    if template is not None:
        return Verdict(action="send_template", decisions=tuple(evaluated), reason=template.reason)
    return Verdict(action="send", decisions=tuple(evaluated), reason="all_passed")
