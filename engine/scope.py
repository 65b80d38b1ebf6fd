"""What templates and expressions see while a run is handled."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.effects import merge_patch
from engine.flow.model import Flow
from engine.models import Contact, Run
from engine.render import RenderScope, is_true, render_value
from engine.runner import RUN_CONTEXT
from engine.zones import is_iana_zone, stored_contact_zone


def contact_timezone(contact: Contact, flow: Flow, default: str) -> ZoneInfo:
    """The contact's own timezone, else the flow's rules or flow timezone, else the default."""
    rules_tz = flow.defaults.rules.timezone if flow.defaults.rules else None
    own = stored_contact_zone(contact.id, contact.timezone)
    # A flow version an earlier release accepted may name a zone that is no IANA name
    # (runs go on with it, engine.flows): it is read as naming none, as a contact's is.
    flows = [zone for zone in (rules_tz, flow.timezone) if zone and is_iana_zone(zone)]
    return ZoneInfo(own or (flows[0] if flows else default))


def render_scope(
    *,
    contact: Contact,
    run_id: str,
    flow: Flow,
    step: str | None,
    run_vars: Mapping[str, Any],
    now: datetime,
    timezone: ZoneInfo,
    context_patch: Mapping[str, Any] | None = None,
) -> RenderScope:
    context = dict(contact.context)
    own = run_vars.get(RUN_CONTEXT)
    if isinstance(own, Mapping):
        context.update(own)  # the run's own keys, whole: never mixed with the contact's
    if context_patch:
        # Deep copies: merging must not reach into the contact's (or run's) own dicts.
        context = merge_patch(copy.deepcopy(context), context_patch)
    return RenderScope(
        contact=contact,
        context=context,
        run={"id": run_id, "flow": flow.flow, "step": step, "vars": dict(run_vars)},
        now=now,
        timezone=timezone,
    )


class RunnerScope:
    """The runner's ``Scope``: evaluates `when:` and `set:` against the run's contact."""

    def __init__(
        self,
        *,
        contact: Contact,
        run_id: str,
        flow: Flow,
        run_vars: Mapping[str, Any],
        now: datetime,
        timezone: ZoneInfo,
    ) -> None:
        self._contact, self._run_id, self._flow = contact, run_id, flow
        self._vars, self._now, self._tz = run_vars, now, timezone

    @classmethod
    def for_run(
        cls, run: Run, contact: Contact, flow: Flow, now: datetime, tz: ZoneInfo
    ) -> RunnerScope:
        return cls(
            contact=contact, run_id=run.id, flow=flow, run_vars=run.vars, now=now, timezone=tz
        )

    def _scope(self, step: str, patch: Mapping[str, Any]) -> RenderScope:
        return render_scope(
            contact=self._contact,
            run_id=self._run_id,
            flow=self._flow,
            step=step,
            run_vars=self._vars,
            now=self._now,
            timezone=self._tz,
            context_patch=patch,
        )

    def test(self, expression: str, *, step: str, context_patch: Mapping[str, Any]) -> bool:
        return is_true(
            expression,
            self._scope(step, context_patch),
            flow=self._flow.flow,
            step=step,
            field="when",
        )

    def value(self, value: Any, *, step: str, context_patch: Mapping[str, Any]) -> Any:
        return render_value(
            value, self._scope(step, context_patch), flow=self._flow.flow, step=step, field="set"
        )
