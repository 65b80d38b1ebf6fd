"""A trigger's `audience:`/`unless:` expression, compiled once and evaluated per contact.

A sweep or a fan-out evaluates the same expression for thousands of contacts: the
expression is compiled once, ``now`` is converted once per time zone, and each
contact gets only the variables a template would see. On any failure (a missing
variable, a forbidden attribute) the expression runs again through
``engine.render.is_true`` with a full ``RenderScope``, so the error says the same
words as everywhere else.

A bare flag of the contact's context (``contact.context.pago``, ``not
context.vip``) that a contact does not have is false, as a flag never set is: the
documented ``unless: "contact.context.pago"`` re-engages the contacts that never
paid instead of leaving every one of them out. Any other expression that reads a
missing value still cannot be decided for that contact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import TemplateSyntaxError
from jinja2.runtime import Undefined

from engine.errors import RenderError
from engine.flow.model import Flow
from engine.models import Contact
from engine.render import RenderScope, compile_expression, is_true, scope_variables
from engine.scope import contact_timezone

_FLAG = re.compile(r"\s*(not\s+)?(?:contact\.)?context((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*")


class ContactFilter:
    """``holds(contact)``: whether ``expression`` is true for the contact (Python truth);
    ``RenderError`` when it cannot be decided."""

    def __init__(
        self, expression: str, *, field: str, flow: Flow, now: datetime, default_timezone: str
    ) -> None:
        self.expression, self.field = expression, field
        self.flow, self.now, self.default_timezone = flow, now, default_timezone
        self._run = {"flow": flow.flow}
        self._zones: dict[str | None, tuple[ZoneInfo, datetime]] = {}
        flag = _FLAG.fullmatch(expression)
        self._flag = (bool(flag.group(1)), flag.group(2)[1:].split(".")) if flag else None
        try:
            self._compiled: Any = compile_expression(expression)
        except TemplateSyntaxError as exc:
            self._compiled = None
            self._syntax = str(exc.message)

    def holds(self, contact: Contact) -> bool:
        if self._compiled is None:
            raise RenderError(self._syntax, flow=self.flow.flow, step="triggers", field=self.field)
        zone, local_now = self._zone(contact)
        variables = scope_variables(
            contact, contact.context, self._run, self.now, zone, local_now=local_now
        )
        try:
            result = self._compiled(variables)
        except Exception:
            return self._slow(contact, zone)
        if isinstance(result, Undefined):
            return self._slow(contact, zone)
        return bool(result)

    def _unset_flag(self, contact: Contact) -> bool | None:
        """What a bare context flag the contact lacks says (false, or true under
        ``not``); None when the expression is no bare flag or the contact has it."""
        if self._flag is None:
            return None
        negated, path = self._flag
        value: Any = contact.context
        for key in path:
            if not isinstance(value, Mapping) or key not in value:
                return negated
            value = value[key]
        return None

    def _zone(self, contact: Contact) -> tuple[ZoneInfo, datetime]:
        found = self._zones.get(contact.timezone)
        if found is None:
            zone = contact_timezone(contact, self.flow, self.default_timezone)
            found = self._zones[contact.timezone] = (zone, self.now.astimezone(zone))
        return found

    def _slow(self, contact: Contact, zone: ZoneInfo) -> bool:
        """The general path (raises the error in its usual words)."""
        unset = self._unset_flag(contact)
        if unset is not None:
            return unset
        scope = RenderScope(
            contact=contact, context=contact.context, run=self._run, now=self.now, timezone=zone
        )
        flow = self.flow.flow
        return is_true(self.expression, scope, flow=flow, step="triggers", field=self.field)
