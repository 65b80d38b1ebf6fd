"""What a message says and whether it may go now: the rules' verdict on it, the
content the provider gets, and the flow facts a provider can enforce itself.

Pure functions of the flow, the message and the contact as read; ``Sender``
(``engine.sending``) records what they decide and calls the provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.content import build_content
from engine.flow.model import Flow, InactivityRule, Rules, to_timedelta
from engine.models import Contact, Message, NewEvent, Template
from engine.rules import Decision, RuleFacts, Verdict, decide
from engine.scope import render_scope
from engine.template_catalog import TemplateCatalog


def provider_hints(rules: Rules, flow: Flow, step: str) -> dict[str, Any]:
    """Flow facts a vendor can enforce as a second guard (Robbu discardSettings, Altu)."""
    hints: dict[str, Any] = {}
    if rules.recent_contact is not None:
        hints["recent_contact_hours"] = to_timedelta(rules.recent_contact).total_seconds() / 3600
    if rules.in_attendance is not None:
        hints["in_attendance"] = rules.in_attendance
    if rules.inactivity is not None:
        value = (
            rules.inactivity.for_
            if isinstance(rules.inactivity, InactivityRule)
            else rules.inactivity
        )
        hints["inactivity_minutes"] = to_timedelta(value).total_seconds() / 60
    following = flow.steps[step].next
    handoff = flow.steps[following].handoff if following in flow.steps else None
    if handoff is not None and handoff.attendant:
        hints["attendant"] = handoff.attendant  # Robbu assigns the contact on send
    return hints


class UnknownTemplate(Exception):
    """The step's template has no id for the message's provider in the catalogue."""


def judge(
    flow: Flow,
    message: Message,
    contact: Contact,
    now: datetime,
    tz: ZoneInfo,
    *,
    sent_today: int = 0,
    last_outbound_at: datetime | None = None,
) -> tuple[Verdict, list[NewEvent]]:
    """The rules' verdict on sending ``message`` now, and its ``decision`` events."""
    step = flow.steps[message.step]
    assert step.send is not None
    verdict = decide(
        flow.rules_for(message.step),
        RuleFacts(
            contact=contact,
            channel=message.channel,
            now=now,
            timezone=tz,
            has_template=step.send.template is not None,
            template_only=step.send.kind == "template",
            sent_today=sent_today,
            last_outbound_at=last_outbound_at,
        ),
    )
    return verdict, [decision_event(decision, message, now) for decision in verdict.decisions]


def message_event(message: Message, kind: str, at: datetime, data: dict[str, Any]) -> NewEvent:
    """An audit event about ``message``, filed under its contact and its run."""
    return NewEvent(
        kind=kind,
        at=at,
        contact_id=message.contact_id,
        run_id=message.run_id,
        message_id=message.id,
        data=data,
    )


def decision_event(decision: Decision, message: Message, at: datetime) -> NewEvent:
    """The ``decision`` event of a rule's verdict on sending ``message``."""
    return message_event(
        message, "decision", at, {**decision.as_event_data(), "step": message.step}
    )


def message_content(
    flow: Flow,
    message: Message,
    contact: Contact,
    now: datetime,
    tz: ZoneInfo,
    verdict: Verdict,
    templates: TemplateCatalog | None,
    run_vars: Mapping[str, Any] | None = None,
) -> Any:
    """The message's content as the provider gets it: rendered, checked, and a
    template named by its catalogue id. Raises ``RenderError``, ``ContentError``
    or ``UnknownTemplate``."""
    step = flow.steps[message.step]
    assert step.send is not None
    scope = render_scope(
        contact=contact,
        run_id=message.run_id,
        flow=flow,
        step=message.step,
        run_vars=run_vars or {},
        now=now,
        timezone=tz,
    )
    content = build_content(
        step.send,
        scope,
        flow=flow.flow,
        step=message.step,
        use_template=verdict.action == "send_template",
        channel=message.channel,
    )
    if isinstance(content, Template) and templates is not None:
        known = templates.resolve(content.name, message.provider)
        if known is None:
            raise UnknownTemplate(
                f"template {content.name!r} has no id for provider {message.provider!r} "
                "in the template catalogue; add it to config/templates.yaml"
            )
        order = templates.templates[content.name].params
        params = content.params
        if isinstance(params, dict):  # the catalogue's order is the positional order
            rank = {name: i for i, name in enumerate(order)}
            ordered = sorted(params, key=lambda k: (rank.get(k, len(order)), k))
            params = {k: params[k] for k in ordered}
        content = content.model_copy(
            update={
                "name": known.id,
                "language": content.language or known.language,
                "params": params,
            }
        )
    return content
