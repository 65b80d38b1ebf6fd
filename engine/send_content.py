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
from engine.flow.model import Flow
from engine.models import Contact, Message, NewEvent, Template
from engine.rules import Decision, RuleFacts, Verdict, decide
from engine.scope import render_scope
from engine.template_catalog import TemplateCatalog
from engine.wording import counted


class UnknownTemplate(Exception):
    """The step's template has no id for the message's provider in the catalogue, or
    the step's params are not the ones the catalogue says it takes."""


def judge(
    flow: Flow,
    message: Message,
    contact: Contact,
    now: datetime,
    tz: ZoneInfo,
    *,
    sent_today: int = 0,
    last_outbound_at: datetime | None = None,
    phone_opt_out: Contact | None = None,
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
            phone_opt_out=phone_opt_out,
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
    flow_version: str | None = None,
) -> Any:
    """The message's content as the provider gets it: rendered, checked, and a
    template named by its catalogue id with exactly the catalogue's params in its
    order. Raises ``RenderError``, ``ContentError`` or ``UnknownTemplate``.
    ``flow_version``: the run's, named in errors a catalogue change causes."""
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
                f"in the template catalogue; add it to {templates.where}"
                + _pinned_hint(flow, message.step, flow_version)
            )
        wanted = templates.templates[content.name].params
        _check_params(content, wanted, flow, message.step, flow_version, templates.where)
        params = content.params
        if isinstance(params, dict):  # the catalogue's order is the positional order
            params = {name: params[name] for name in wanted}
        content = content.model_copy(
            update={
                "name": known.id,
                "language": content.language or known.language,
                "params": params,
            }
        )
    return content


def _check_params(
    content: Template,
    wanted: list[str],
    flow: Flow,
    step: str,
    flow_version: str | None,
    where: str,
) -> None:
    """``UnknownTemplate`` unless the rendered params are exactly the catalogue's:
    providers take them by position, so any other set would put values in the wrong
    places (a run pinned to a flow version written for an older catalogue)."""
    params = content.params
    if isinstance(params, dict):
        if set(params) == set(wanted) and len(params) == len(wanted):
            return
        given = ", ".join(params) or "no parameters"
    elif len(params) == len(wanted):
        return
    else:
        given = counted(len(params), "positional parameter")
    takes = f"the parameters {', '.join(wanted)}" if wanted else "no parameters"
    raise UnknownTemplate(
        f"template {content.name!r} takes {takes} "
        f"({where}) but step `{step}` of flow {flow.flow!r} gives {given}; nothing was "
        "sent rather than values in the wrong places" + _pinned_hint(flow, step, flow_version)
    )


def _pinned_hint(flow: Flow, step: str, flow_version: str | None) -> str:
    """Why a step checked against the catalogue when its flow was loaded no longer
    fits it: the catalogue changed under a run pinned to that flow version."""
    send = flow.steps[step].send
    spec = send.template if send is not None else None
    if flow_version is None or spec is None or "{" in spec.name:
        return ""  # a rendered template name is only known at send time: never checked
    return (
        f". The run is pinned to version {flow_version} of the flow, which predates this "
        "change to the template catalogue; restore the template's old entry for the runs "
        "still on that version, or cancel them"
    )
