"""The Jinja sandbox message templates run in: what it refuses, and what it cannot.

Protected:

- Python internals: ``ImmutableSandboxedEnvironment`` from jinja2 >= 3.1.6, which
  carries the fixes for the published escapes (``str.format``, ``format_map``,
  indirect ``format``, ``|attr``); underscore attributes and the mutating methods
  of dicts, lists and sets are refused.
- Only what a message needs compiles: text, ``{{ }}``, ``{% if %}``, ``{% for %}``,
  ``{% set x = ... %}`` and ``{% with %}``. Macros, call/filter/set blocks,
  ``block``/``extends``/``include``/``import``, ``autoescape`` and ``self`` are
  refused at compile time; so are unknown filters and tests (with a suggestion).
- Globals are ``range`` (jinja caps it at 100,000 items) and ``dict`` only: no
  ``lipsum``, ``cycler``, ``joiner`` or ``namespace``.
- Size: no string a template builds may pass ``MAX_TEXT`` characters, no collection
  ``MAX_ITEMS`` items, no integer ``MAX_INT_BITS`` bits. ``*`` and ``**``,
  width-like arguments (``center``, ``ljust``, ``indent``, ``batch``, ``slice``,
  printf and ``str.format`` widths) and ``replace``/``join`` growth are checked
  *before* computing; ``+``, ``%``, ``~``, every call and every filter result after.
  A collection about to become text (``{{ }}``, ``~``, ``%``, ``str.format`` and
  every filter but the list ones such as ``length``) is counted first
  (``engine.printed_size``): 100,000 references to one long text hold little but
  print as gigabytes, in one call no later check could stop.

- Work: one render may run at most ``MAX_LOOP_ITERATIONS`` ``{% for %}`` iterations
  in all, nested loops included (each loop's iterable is wrapped at compile time).
  A template renders on the engine's event loop: without this budget, nested loops
  over ``range(100000)`` would spin for hours and stall every send and webhook.

- Time and memory of a whole render (``engine.render_budget``): filter chains such as
  ``map``/``select`` run outside ``{% for %}``, and one filter (``urlize`` of a long
  text) can be slow. Every step (a filter, a test, a call, an operator, a loop
  iteration) checks that the render has run under ``MAX_RENDER_SECONDS`` and that the
  texts and collections it built add up to under ``MAX_PRODUCED`` characters and
  items; past either, the message fails with a pointed error instead of stalling
  every send and webhook. ``sum`` checks each partial total (lists summed onto
  ``start=[]`` grow quadratically inside one call).

Not protected: preemption. A single step is not interrupted, only bounded by the
limits above. Templates come from flow files reviewed like code, and contact data
is only ever data, never template source; to run templates from untrusted authors,
render in a child process with ``RLIMIT_AS`` and a timeout.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import tzinfo
from string import Formatter
from typing import Any, NoReturn

from jinja2 import (
    StrictUndefined,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
    pass_context,
    pass_environment,
    pass_eval_context,
)
from jinja2 import filters as jinja_filters
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from engine.printed_size import CONTAINERS, printed_size
from engine.render_budget import TooLarge, TooMuchWork, spend

MAX_TEXT = 65_536  # characters: the longest string or output a template may build
MAX_ITEMS = 100_000  # jinja's own MAX_RANGE
MAX_INT_BITS = 4_096
# Loop iterations one render may run, all loops together: a real message loops over
# a few order items or menu rows; this is far above that and renders in milliseconds.
MAX_LOOP_ITERATIONS = 10_000
_LOOPS_RUN = "_disparo_loop_iterations"  # the count, kept on the render's Context
_TZINFO_ATTRIBUTES = frozenset({"key", "utcoffset", "tzname", "dst"})

# Scope only wraps other statements (the parser's autoescape block); those are checked.
_ALLOWED_STATEMENTS = (nodes.Output, nodes.If, nodes.For, nodes.Assign, nodes.With, nodes.Scope)
_TAGS = {
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.FilterBlock: "{% filter %}",
    nodes.AssignBlock: "{% set %}...{% endset %}",
    nodes.Block: "{% block %}",
    nodes.Extends: "{% extends %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.ScopedEvalContextModifier: "{% autoescape %}",
}
# Filters that take a collection as one and never print it, and ``join``, which
# counts its items itself: their arguments are not counted as one text
# (``{{ orders | length }}`` of any size is fine).
_LIST_FILTERS = frozenset(
    {
        *("attr", "batch", "count", "d", "default", "dictsort", "first", "groupby", "items"),
        *("join", "last", "length", "list", "map", "max", "min", "random", "reject"),
        *("rejectattr", "reverse", "select", "selectattr", "slice", "sort", "sum", "unique"),
    }
)
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class UnprintableValue(Exception):
    """A ``{{ }}`` printed ``None`` or a function: a message never says "None" or
    "<built-in method ...>" to a contact."""


class MissingValue(UndefinedError):
    """A template used a name or key that does not exist; carries what was looked up."""

    def __init__(self, message: str, *, name: Any, obj: Any) -> None:
        super().__init__(message)
        self.name, self.obj = name, obj


class StrictMissing(StrictUndefined):
    """``StrictUndefined`` that raises ``MissingValue``, so errors can name the path."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        if self._undefined_exception is not UndefinedError:  # the sandbox's SecurityError
            raise self._undefined_exception(self._undefined_message)
        raise MissingValue(
            self._undefined_message, name=self._undefined_name, obj=self._undefined_obj
        )


# StrictUndefined aliases every dunder to the base method; point them at ours. repr
# too: a list holding a missing value must not print "[Undefined]".
for _attr in dir(StrictUndefined):
    if (
        _attr == "__repr__"
        or getattr(StrictUndefined, _attr) is Undefined._fail_with_undefined_error
    ):
        setattr(StrictMissing, _attr, StrictMissing._fail_with_undefined_error)


def checked_size(value: Any) -> Any:
    """``value`` unchanged, unless it is a string or collection past the limits, or
    the render has used up its budget."""
    if isinstance(value, str | bytes):
        _at_most("a text", len(value))
        spend(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        _at_most("a collection", len(value), MAX_ITEMS, " items")
        spend(len(value))  # each item a reference held: memory, as a character is
    else:
        spend(0)
    return value


def check_printed(value: Any, limit: int = MAX_TEXT) -> Any:
    """``value`` unchanged, unless it is a collection whose text would pass ``limit``:
    counted before ``str()`` builds it (``engine.printed_size``)."""
    if isinstance(value, CONTAINERS) and printed_size(value, limit, lambda: spend(0)) > limit:
        raise TooLarge(
            f"a collection printed as text is over the template limit of {limit:,} characters"
        )
    return value


def _check_printed_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    for arg in (*args, *kwargs.values()):
        check_printed(arg)


def _at_most(what: str, size: int, limit: int = MAX_TEXT, unit: str = " characters") -> None:
    if size > limit:
        raise TooLarge(f"{what} of {size:,}{unit} is over the template limit of {limit:,}{unit}")


def _check_printf(fmt: str) -> None:
    total = 0
    for match in _PRINTF.finditer(fmt):
        for part in match.groups():
            if part == "*":
                raise SecurityError("`*` widths in % formats")
            total += int(part or 0)
    _at_most("format widths", total)


def _check_format_spec(fmt: str) -> None:
    total = 0
    for _, _, spec, _ in Formatter().parse(fmt):
        if spec and "{" in spec:
            raise SecurityError("nested `{}` in a format spec")
        total += sum(int(digits) for digits in re.findall(r"\d+", spec or ""))
    _at_most("format widths", total)


def _check_replace(s: Any, old: Any, new: Any, count: Any) -> None:
    if not isinstance(s, str | bytes) or not isinstance(old, str | bytes):
        return
    hits = s.count(old) if old else len(s) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    _at_most("a replaced text", len(s) + hits * (len(new) - len(old)))


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(items, list | tuple) and isinstance(separator, str | bytes):
        total = sum(len(item) for item in items if isinstance(item, str | bytes))
        total += len(separator) * max(len(items) - 1, 0)
        for item in items:  # a list or number joined is printed first
            if total > MAX_TEXT:
                break
            if not isinstance(item, str | bytes):
                total += printed_size(item, MAX_TEXT - total, tick=lambda: spend(0))
        _at_most("a joined text", total)


def _check_text_method(
    owner: str | bytes, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _at_most(f"`{name}` width", args[0])
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        size = size if isinstance(size, int) else 8
        tab: Any = "\t" if isinstance(owner, str) else b"\t"
        _at_most("an expanded text", len(owner) + owner.count(tab) * size)
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args:
        _check_join(owner, args[0])


# -------------------------------------------------------------- guarded filters


def _center(value: Any, width: int = 80) -> str:
    _at_most("`center` width", width)
    return jinja_filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    unit = len(width) if isinstance(width, str) else width
    _at_most("an indented text", len(text) + (text.count("\n") + 1) * unit)
    return jinja_filters.do_indent(text, width, first, blank)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    _at_most("`batch` size", linecount, MAX_ITEMS, "")
    return jinja_filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    _at_most("`slice` count", slices, MAX_ITEMS, "")
    return jinja_filters.sync_do_slice(value, slices, fill_with)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value))
    return jinja_filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    _check_replace(str(s), str(old), str(new), count)
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is None:
        _check_join(d, items)
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


@pass_environment
def _sum(environment: Environment, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    # Python's sum() is one step: lists summed onto ``start=[]`` grow quadratically
    # with no check until the end. Here every partial total is checked.
    if attribute is not None:
        iterable = map(jinja_filters.make_attrgetter(environment, attribute), iterable)
    total = start
    for item in iterable:
        total = checked_size(total + item)
    return total


_GUARDED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "batch": _batch,
    "slice": _slice,
    "format": _format,
    "replace": _replace,
    "join": _join,
    "sum": _sum,
}


def _sized(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    prints = name not in _LIST_FILTERS

    # functools.wraps copies jinja's pass_* marker along with the name.
    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if prints:
            _check_printed_args(args, kwargs)
        return checked_size(func(*args, **kwargs))

    return checked


def _budgeted_test(func: Any) -> Any:
    # ``select``/``reject`` run a test per item inside one filter call: without a
    # check per test, ``select('in', long_list)`` runs to the end, minutes, unchecked.
    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        spend(0)
        return func(*args, **kwargs)

    return checked


def _printable(value: Any) -> Any:
    if isinstance(value, Undefined):
        return value  # printing it raises the precise error
    if value is None:
        raise UnprintableValue(
            "printed an empty value (None); give it a default, e.g. `{{ x | default('-', true) }}`"
        )
    if callable(value):
        raise UnprintableValue("printed a function, not a value; call it with `()`")
    return check_printed(value)


@pass_context
def _budgeted_loop(context: Context, iterable: Any) -> Iterator[Any]:
    """Yield from ``iterable``, counting every iteration of the render against the
    budget. Compiled around each ``{% for %}`` iterable by ``MessageSandbox``."""
    for item in iterable:
        done = context.__dict__.get(_LOOPS_RUN, 0) + 1
        if done > MAX_LOOP_ITERATIONS:
            raise TooMuchWork(
                f"the loops of this template are over the template limit of "
                f"{MAX_LOOP_ITERATIONS:,} iterations in one message (nested loops multiply); "
                "loop over fewer items"
            )
        context.__dict__[_LOOPS_RUN] = done
        spend(0)
        yield item


def _wrapped(attribute: str, node: nodes.Node, lineno: int) -> nodes.Call:
    """``environment.<attribute>(node)``, spliced into a template's syntax tree."""
    function = nodes.EnvironmentAttribute(attribute, lineno=lineno)
    return nodes.Call(function, [node], [], None, None, lineno=lineno)


class _SizedConcat(CodeGenerator):
    """Compiles ``a ~ b`` to a size-checked join."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_size(")
        super().visit_Concat(node, frame)
        self.write(")")


class MessageSandbox(ImmutableSandboxedEnvironment):
    """The environment every message template and flow expression compiles in."""

    code_generator_class = _SizedConcat
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool, filters: Mapping[str, Callable[..., Any]]) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=StrictMissing,
            finalize=_printable,
            # A message reads like its source: a line holding only a tag leaves no blank line.
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.globals = {"range": safe_range, "dict": dict}
        merged = {**self.filters, **_GUARDED_FILTERS, **filters}
        self.filters = {name: _sized(name, func) for name, func in merged.items()}
        self.tests = {name: _budgeted_test(func) for name, func in self.tests.items()}

    checked_size = staticmethod(checked_size)
    check_printed = staticmethod(check_printed)
    budgeted_loop = staticmethod(_budgeted_loop)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        self._refuse_unneeded(source)
        for loop in source.find_all(nodes.For):
            loop.iter = _wrapped("budgeted_loop", loop.iter, loop.lineno)
        for concat in source.find_all(nodes.Concat):  # each operand counted before `~`
            concat.nodes = [_wrapped("check_printed", part, concat.lineno) for part in concat.nodes]
        return super()._generate(source, name, filename, defer_init)

    def _refuse_unneeded(self, tree: nodes.Template) -> None:
        for node in tree.find_all((nodes.Stmt, nodes.Name, nodes.Filter, nodes.Test)):
            if isinstance(node, nodes.Stmt) and not isinstance(node, _ALLOWED_STATEMENTS):
                tag = _TAGS.get(type(node), f"`{type(node).__name__}`")
                raise TemplateSyntaxError(
                    f"{tag} is not available in message templates", node.lineno
                )
            if isinstance(node, nodes.Name) and node.name == "self":
                raise TemplateSyntaxError(
                    "`self` is not available in message templates", node.lineno
                )
            if isinstance(node, nodes.Filter | nodes.Test):
                known = self.filters if isinstance(node, nodes.Filter) else self.tests
                if node.name not in known:
                    kind = "filter" if isinstance(node, nodes.Filter) else "test"
                    close = difflib.get_close_matches(node.name, list(known), n=1)
                    hint = f"; did you mean `{close[0]}`?" if close else ""
                    raise TemplateSyntaxError(f"no {kind} named `{node.name}`{hint}", node.lineno)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                    text = isinstance(seq, str | bytes)
                    limit, unit = (MAX_TEXT, " characters") if text else (MAX_ITEMS, " items")
                    _at_most("a repeated value", len(seq) * max(times, 0), limit, unit)
            if isinstance(left, int) and isinstance(right, int):
                bits = left.bit_length() + right.bit_length()
                _at_most("a number", bits, MAX_INT_BITS, " bits")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1:
                _at_most("a number", right * abs(left).bit_length(), MAX_INT_BITS, " bits")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left)
            check_printed(right)
        return checked_size(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__
        inner = wrapper

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_spec(fmt)
            _check_printed_args(args, kwargs)
            result: str = checked_size(inner(*args, **kwargs))
            return result

        return checked

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # A time zone (``now.tzinfo``) answers what a message needs; its class methods
        # (``clear_cache``, ``no_cache``) would reach process-wide state.
        if isinstance(obj, tzinfo) and attr not in _TZINFO_ATTRIBUTES:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call(
        __self,  # jinja's own positional-only convention
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes):
            _check_text_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return checked_size(super().call(__context, __obj, *args, **kwargs))
