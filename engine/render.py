"""Rendering flow templates and evaluating flow expressions, in the sandbox.

Every string of a ``send:`` block and every ``set:`` value is a Jinja template;
``when:``, ``audience:`` and ``unless:`` are Jinja expressions. They see ``contact``,
``context``, ``run`` and ``now`` and the pt-BR filters ``brl``, ``date``,
``first_name`` and ``phone`` (plus jinja's builtins: ``upper``, ``title``, ...).

Promises:

- A missing variable is an error naming flow, step, field and the path, never an
  empty string; so is a ``{{ }}`` that prints ``None``. Contact fields that are not
  set (``contact.email`` with no e-mail) are missing, not ``None``.
- Every failure is a ``RenderError``: syntax, sandbox refusals ("not allowed in
  templates"), filter errors, anything else a template raises.
- No output is longer than ``MAX_TEXT`` (65,536) characters; see engine.sandbox
  for what the sandbox protects and what it does not.
- Text is not escaped: messages are not HTML. Only an e-mail body with ``html: true``
  is rendered with autoescape (``html=True``): values are escaped, the author's
  markup is not, and ``| safe`` opts a value out.
- Templates and expressions are compiled once per source (LRU caches); rendering a
  cached template copies nothing but the top-level variables.
- Lines holding only a ``{% %}`` tag leave no blank line (trim_blocks, lstrip_blocks);
  one trailing newline is dropped, as jinja does.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateSyntaxError, nodes, pass_context
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.runtime import Context, Undefined
from jinja2.utils import consume, missing

from engine.errors import RenderError
from engine.models import Contact
from engine.printed_size import printed_size
from engine.pt_br import (
    DEFAULT_DATE_FORMAT,
    FormatError,
    brl,
    first_name,
    format_date,
    phone,
)
from engine.render_budget import MAX_PRODUCED, TooLarge, render_budget
from engine.render_redact import REDACTED, is_value, scope_values, without_values
from engine.sandbox import MAX_TEXT, MessageSandbox, MissingValue

NAMES = ("contact", "context", "run", "now")
_TZ = "disparo.timezone"  # a dot keeps it out of reach of template code
_SINGLE_EXPRESSION = re.compile(r"\A\{\{(.*)\}\}\Z", re.DOTALL)
_PATH_SEARCH_LIMIT = 5_000


@pass_context
def _date(context: Context, value: Any, fmt: str = DEFAULT_DATE_FORMAT) -> str:
    return format_date(value, fmt, context.parent[_TZ])


_FILTERS: dict[str, Callable[..., Any]] = {
    "brl": brl,
    "date": _date,
    "first_name": first_name,
    "phone": phone,
}
_TEXT = MessageSandbox(autoescape=False, filters=_FILTERS)
_HTML = MessageSandbox(autoescape=True, filters=_FILTERS)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderScope:
    """What one render sees. ``context`` is the contact's context merged with the
    run's vars (the caller decides how); ``run`` holds id, flow, step and vars;
    ``now`` is aware and is shown in ``timezone``, which ``date`` also converts to."""

    contact: Contact
    context: Mapping[str, Any]
    run: Mapping[str, Any]
    now: datetime
    timezone: tzinfo
    variables: Mapping[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("RenderScope.now must be timezone-aware")
        variables = scope_variables(self.contact, self.context, self.run, self.now, self.timezone)
        object.__setattr__(self, "variables", variables)


def scope_variables(
    contact: Contact,
    context: Mapping[str, Any],
    run: Mapping[str, Any],
    now: datetime,
    timezone: tzinfo,
    local_now: datetime | None = None,
) -> dict[str, Any]:
    """What a template or expression sees (``RenderScope.variables``); ``local_now`` is
    ``now`` in ``timezone`` when the caller already has it (a sweep converts it once)."""
    return {
        "contact": _contact_fields(contact),
        "context": context,
        "run": run,
        "now": now.astimezone(timezone) if local_now is None else local_now,
        _TZ: timezone,
    }


def _contact_fields(contact: Contact) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": contact.id, "tags": contact.tags, "context": contact.context}
    for key in ("phone", "email", "name", "timezone"):
        value = getattr(contact, key)
        if value and value.strip():
            fields[key] = value
    if "name" in fields:
        fields["first_name"] = first_name(fields["name"])
    return fields


# ------------------------------------------------------------------ compile (cached)


@lru_cache(maxsize=2048)
def _template(source: str, html: bool) -> Template:
    return (_HTML if html else _TEXT).from_string(source)


@lru_cache(maxsize=1024)
def _expression(source: str) -> TemplateExpression:
    return _TEXT.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=1024)
def _whole_expression(source: str) -> TemplateExpression | None:
    """The expression of a string that is exactly one ``{{ expression }}``, else None."""
    match = _SINGLE_EXPRESSION.match(source)
    if match is None:
        return None
    try:
        return _expression(match[1])
    except TemplateSyntaxError:  # e.g. "{{ a }} e {{ b }}": a template, not one expression
        return None


def compile_expression(source: str) -> Callable[[Mapping[str, Any]], Any]:
    """``source`` compiled once (cached), to call with ``scope_variables``; a syntax
    error raises ``TemplateSyntaxError``. Its result may be ``Undefined``: the caller
    decides what a missing value means (``is_true`` reports it).

    The callable keeps one jinja ``Context`` and gives it each call's variables
    (``Context.parent``), instead of building a context per call as jinja's
    ``TemplateExpression`` does: a sweep evaluates one expression for thousands of
    contacts. Not reentrant: evaluate one call at a time (rendering never awaits).
    Each call has a render's budget of time and built text (``render_budget``).
    """
    return _ReusedContext(_expression_template(source))


@lru_cache(maxsize=1024)
def _expression_template(source: str) -> Template:
    """``{% set result = <source> %}``, parsed as one expression, as jinja's own
    ``compile_expression`` does (so nothing after the expression can be a tag)."""
    parser = Parser(_TEXT, source, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError(
            "chunk after expression", parser.stream.current.lineno, None, None
        )
    expression.set_environment(_TEXT)
    body = [nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)]
    return _TEXT.from_string(nodes.Template(body, lineno=1))


class _ReusedContext:
    __slots__ = ("_context", "_globals", "_root")

    def __init__(self, template: Template) -> None:
        self._root = template.root_render_func
        self._globals = dict(template.globals)
        self._context = template.new_context({})

    def __call__(self, variables: Mapping[str, Any]) -> Any:
        context = self._context
        context.parent = {**self._globals, **variables}
        context.vars = {}
        with render_budget():  # each call its own time and text budget, as a render
            consume(self._root(context))
        return context.vars["result"]


def check_template_syntax(source: str, *, html: bool = False) -> str | None:
    """None when ``source`` compiles, else the problem with its line in the template."""
    found = template_syntax_error(source, html=html)
    return None if found is None else f"line {found[0]}: {found[1]}"


def template_syntax_error(source: str, *, html: bool = False) -> tuple[int, str] | None:
    """None when ``source`` compiles, else the line of the template and the problem."""
    try:
        _template(source, html)
    except TemplateSyntaxError as exc:
        return exc.lineno, str(exc.message)
    return None


def check_expression_syntax(expression: str) -> str | None:
    """None when ``expression`` (a `when:`, `audience:` or `unless:`) compiles, else why."""
    try:
        _expression(expression)
    except TemplateSyntaxError as exc:
        return str(exc.message)
    return None


# ------------------------------------------------------------------ render / evaluate


def render_string(
    source: str, scope: RenderScope, *, flow: str, step: str, field: str, html: bool = False
) -> str:
    """``source`` rendered for ``scope``; any failure is a RenderError naming the field."""
    try:
        template = _template(source, html)
    except TemplateSyntaxError as exc:
        raise RenderError(
            f"line {exc.lineno}: {exc.message}", flow=flow, step=step, field=field
        ) from exc
    parts: list[str] = []
    size = 0
    try:
        # Streamed, so a loop printing too much stops at the limit, not at memory's end.
        with render_budget():
            for chunk in template.generate(scope.variables):
                size += len(chunk)
                if size > MAX_TEXT:
                    raise TooLarge(
                        f"the output is over the template limit of {MAX_TEXT:,} characters"
                    )
                parts.append(chunk)
    except Exception as exc:
        raise _render_error(exc, source, scope, flow=flow, step=step, field=field) from exc
    return "".join(parts)


def evaluate(expression: str, scope: RenderScope, *, flow: str, step: str, field: str) -> Any:
    """The value of a Jinja expression; a missing variable is a RenderError, not None."""
    try:
        compiled = _expression(expression)
    except TemplateSyntaxError as exc:
        raise RenderError(str(exc.message), flow=flow, step=step, field=field) from exc
    return _run_expression(compiled, expression, scope, flow=flow, step=step, field=field)


def is_true(expression: str, scope: RenderScope, *, flow: str, step: str, field: str) -> bool:
    """Whether a ``when:``/``audience:``/``unless:`` expression holds (Python truth)."""
    return bool(evaluate(expression, scope, flow=flow, step=step, field=field))


def render_value(value: Any, scope: RenderScope, *, flow: str, step: str, field: str) -> Any:
    """``value`` with every string rendered, mappings and lists walked, other scalars as is.

    A string that is exactly one ``{{ expression }}`` keeps the expression's type, as
    plain JSON values (``{{ context.tentativas + 1 }}`` stores 2, not "2"; tuples become
    lists, dates ISO strings); any other string renders to text. A value whose text
    (what a store writes) would pass ``MAX_PRODUCED`` characters is a RenderError.
    """
    if isinstance(value, str):
        compiled = _whole_expression(value)
        if compiled is None:
            return render_string(value, scope, flow=flow, step=step, field=field)
        result = _run_expression(compiled, value, scope, flow=flow, step=step, field=field)
        if printed_size(result, MAX_PRODUCED) > MAX_PRODUCED:
            raise RenderError(
                f"this value is over the limit of {MAX_PRODUCED:,} characters as text; "
                "keep less in it",
                flow=flow,
                step=step,
                field=field,
            )
        return _plain(result)
    if isinstance(value, Mapping):
        return {
            key: render_value(item, scope, flow=flow, step=step, field=f"{field}.{key}")
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            render_value(item, scope, flow=flow, step=step, field=f"{field}[{index}]")
            for index, item in enumerate(value)
        ]
    return value


def _run_expression(
    compiled: TemplateExpression,
    source: str,
    scope: RenderScope,
    *,
    flow: str,
    step: str,
    field: str,
) -> Any:
    try:
        with render_budget():
            result = compiled(scope.variables)
        if isinstance(result, Undefined):
            str(result)  # raises MissingValue (or SecurityError) naming what is missing
    except Exception as exc:
        raise _render_error(
            exc, source, scope, flow=flow, step=step, field=field, expression=True
        ) from exc
    return result


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)  # drops Markup
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, Iterable):
        return [_plain(item) for item in value]
    return str(value)


# ------------------------------------------------------------------ errors in plain words


def _render_error(
    exc: Exception,
    source: str,
    scope: RenderScope,
    *,
    flow: str,
    step: str,
    field: str,
    expression: bool = False,
) -> RenderError:
    # An expression is one line built as a syntax tree: its "line" would be a line of
    # the Python jinja generated, which means nothing to the designer.
    where = "" if expression else _line(exc)
    values = scope_values(scope.variables)  # kept out of the message: see render_redact
    if isinstance(exc, MissingValue):  # names and paths the flow spells: no values
        return RenderError(
            _describe_missing(exc, source, scope.variables, values),
            flow=flow,
            step=step,
            field=field,
        )
    if isinstance(exc, TooLarge | FormatError):  # ours, written without values
        message = f"{where}{exc}"
    elif isinstance(exc, SecurityError):
        message = f"{where}{str(exc).rstrip('.')}: not allowed in templates"
    elif isinstance(exc, TemplateSyntaxError):
        message = f"line {exc.lineno}: {exc.message}"
    else:  # Python's or jinja's: may quote a value (`'x' is not in list`)
        message = f"{where}{without_values(str(exc), values) or type(exc).__name__}"
    return RenderError(message, flow=flow, step=step, field=field)


def _line(exc: BaseException) -> str:
    # jinja rewrites tracebacks so template frames carry the template's line numbers.
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"line {line}: " if line is not None else ""


def _describe_missing(
    exc: MissingValue, source: str, variables: Mapping[str, Any], values: frozenset[str]
) -> str:
    name = exc.name
    if exc.obj is missing:
        return f"`{name}` is not defined; templates can use {', '.join(NAMES)}"
    path = _path_of(exc.obj, name, source, variables)
    if path is None:
        return f"`{name}` is not defined ({without_values(str(exc), values)})"
    # A key that is the contact's data (``context.precos[contact.phone]``) is not shown.
    full = f"{path}[{REDACTED}]" if is_value(name, values) else _child_path(path, name)
    root = re.split(r"[.\[]", full, maxsplit=1)[0]
    whose = {"contact": " for this contact", "context": " for this contact", "run": " for this run"}
    return f"`{full}` is not defined{whose.get(root, '')}"


def _child_path(parent: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{parent}.{key}"
    return f"{parent}[{key!r}]"


def _path_of(target: Any, name: Any, source: str, variables: Mapping[str, Any]) -> str | None:
    """Where ``target`` sits among the variables, preferring a path the source spells.

    Runs only on the error path: a breadth-first search by identity, bounded."""
    found: list[str] = []
    queue: deque[tuple[str, Any]] = deque((key, variables[key]) for key in NAMES)
    visited = 0
    while queue and visited < _PATH_SEARCH_LIMIT:
        path, value = queue.popleft()
        visited += 1
        if value is target:
            found.append(path)
        if isinstance(value, Mapping):
            queue.extend((_child_path(path, key), item) for key, item in value.items())
        elif isinstance(value, list | tuple):
            queue.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    for path in found:
        spelled = rf"(?<![\w.]){re.escape(path)}\s*(\.\s*{re.escape(str(name))}\b|\[)"
        if re.search(spelled, source):
            return path
    containers = isinstance(target, Mapping | list | tuple)
    return found[0] if found and containers else None
