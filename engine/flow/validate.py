"""Checks across the steps of a flow, all reported in one pass with file:line:col.

The model (``engine.flow.model``) checks each piece; this module checks how they fit,
following the runner's semantics (``engine.runner``, ``engine.step_routes``):

- ``start`` and every ``next``, ``goto``, ``else``, ``on:`` target and ``timeout.goto``
  must name a step (with a did-you-mean).
- Every step must be reachable from ``start``; an unreachable step is an error.
- A loop made only of steps that do not wait (``branch``, ``set``, ``handoff``) would
  spin forever: it needs a ``send`` or a ``wait``.
- A flow needs no ``end`` step: a run that reaches a step with nowhere to go
  completes (an ``end`` step only picks another status). Not checked.
- A ``branch`` needs no ``else``: when no case matches the run follows ``next:``, and
  without ``next:`` the run fails with a reason ``disparo why`` shows. Not an error;
  an ``else`` that is not the last case is (the cases after it are never tried).
- ``on:`` events must be able to happen for the step: ``button.<id>`` needs a button
  with that id (any id when the send has only a template, whose quick replies live in
  config/templates.yaml), ``choice.<id>`` a list row with that id, ``read`` on a
  ``wait`` only when it waits for ``read``/``delivered``, ``on: timeout`` a timer.
  ``on:`` and ``timeout:`` on steps that never wait, and ``next:`` on ``end``, are
  never used and are errors.
- A WhatsApp send whose rules (defaults merged with the step's) say
  ``window: template`` needs a ``template:`` for when the 24 h window is closed.
- A send needs a provider (its own or ``defaults.provider``); given ``providers``,
  it must be one of them.
- Time zones must exist; cron expressions have five fields.
- ``valid_for`` must be longer than zero (zero would fail every message unsent).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

from engine.errors import Problem
from engine.flow.model import Flow, QuietHoursRule, Rules, Step, WaitFor, to_timedelta
from engine.flow.problems import did_you_mean, timezone_problem
from engine.flow.yaml_source import DocPath, SourceMap, format_path
from engine.rules import WINDOW

_INSTANT = frozenset({"branch", "set", "handoff", "end"})  # never wait for events


@dataclass(frozen=True, slots=True)
class Locator:
    """Turns a document path into a positioned ``Problem`` for one flow file."""

    filename: str
    source_map: SourceMap | None

    def problem(self, path: DocPath, message: str, *, at_key: bool = False) -> Problem:
        if self.source_map is not None:
            return self.source_map.problem(path, message, at_key=at_key)
        return Problem(message=message, file=self.filename, path=format_path(path) or None)

    def problem_on_line(self, path: DocPath, line: int, what: str, why: str) -> Problem:
        """``what: why`` on line ``line`` of the text at ``path``: at that very file
        line when the text is a literal block (``|``), else at the text, naming the line."""
        where = self.source_map.line_of(path, line) if self.source_map is not None else None
        if where is None:
            return self.problem(path, f"{what}: line {line}: {why}")
        return Problem(
            message=f"{what}: {why}",
            file=self.filename,
            line=where[0],
            column=where[1],
            path=format_path(path) or None,
        )


FlowCheck = Callable[[Flow, Locator], Iterable[Problem]]


def validate_flow(
    flow: Flow,
    positions: SourceMap | None,
    filename: str,
    *,
    providers: Mapping[str, object] | None = None,
    extra_checks: Iterable[FlowCheck] = (),
    salvaged: Collection[str] | None = None,
) -> list[Problem]:
    """Every cross-step problem of ``flow``, sorted by position.

    ``providers`` maps the configured provider names (to anything, e.g. their
    capabilities); when given, a send through another provider is an error.
    ``extra_checks`` run after the built-in ones, with a ``Locator`` to position their
    problems. ``salvaged`` means the flow was salvaged from a file with structural
    errors and names the steps that are stand-ins for broken ones: their references
    are checked, their content is not, and checks a salvage would get wrong
    (reachability, providers) are skipped.
    """
    at = Locator(filename, positions)
    skip = frozenset(salvaged or ())
    problems = [
        *_references(flow, at),
        *_loops(flow, at),
        *_events(flow, at, skip),
        *_branches(flow, at),
        *_windows(flow, at, skip),
        *_zones_and_crons(flow, at),
        *_validity(flow, at),
    ]
    if salvaged is None:
        problems += [*_unreachable(flow, at), *_providers(flow, at, providers)]
    for check in extra_checks:
        problems.extend(check(flow, at))
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


# ------------------------------------------------------------------ references and graph


def _refs(flow: Flow) -> Iterator[tuple[str, DocPath, str]]:
    """(what points, where, target) for every step reference in the flow."""
    yield "`start`", ("start",), flow.start
    for sid, step in flow.steps.items():
        base = ("steps", sid)
        for i, case in enumerate(step.branch or []):
            if case.else_ is not None:
                yield f"`else` in step `{sid}`", (*base, "branch", i, "else"), case.else_
            elif case.goto is not None:
                yield f"case {i + 1} of step `{sid}`", (*base, "branch", i, "goto"), case.goto
        for event, target in (step.on or {}).items():
            yield f"`on: {event}` in step `{sid}`", (*base, "on", event), target
        if step.timeout is not None:
            yield f"`timeout` in step `{sid}`", (*base, "timeout", "goto"), step.timeout.goto
        if step.next is not None:
            yield f"`next` in step `{sid}`", (*base, "next"), step.next


def _references(flow: Flow, at: Locator) -> Iterator[Problem]:
    for who, path, target in _refs(flow):
        if target not in flow.steps:
            hint = did_you_mean(target, flow.steps) or "; steps: " + ", ".join(flow.steps)
            yield at.problem(path, f"{who} goes to `{target}`, which is not a step{hint}")


def _edges(flow: Flow) -> dict[str, list[str]]:
    """The moves the runner can make from each step (unused ``on:``/``next:`` left out)."""
    out: dict[str, list[str]] = {}
    for sid, step in flow.steps.items():
        targets = [target for _, target in flow.successors(sid)]
        if step.kind == "end":
            targets = []
        elif step.kind in _INSTANT:
            targets = [case.else_ or case.goto or "" for case in step.branch or []]
            targets.append(step.next or "")
        out[sid] = [t for t in targets if t in flow.steps]
    return out


def _unreachable(flow: Flow, at: Locator) -> Iterator[Problem]:
    if flow.start not in flow.steps:
        return
    edges = _edges(flow)
    seen = {flow.start}
    todo = [flow.start]
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    for sid in flow.steps:
        if sid not in seen:
            yield at.problem(
                ("steps", sid),
                f"step `{sid}` is never reached: no path from `start` (`{flow.start}`) "
                "leads to it; link it with next, goto or on, or remove it",
                at_key=True,
            )


def _loops(flow: Flow, at: Locator) -> Iterator[Problem]:
    """Strongly connected groups of steps that never wait (iterative Tarjan)."""
    instant = {sid for sid, step in flow.steps.items() if step.kind in _INSTANT}
    edges = {sid: [t for t in targets if t in instant] for sid, targets in _edges(flow).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in (sid for sid in flow.steps if sid in instant):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, pos = work.pop()
            if pos == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges[node]
            if pos < len(targets):
                work.append((node, pos + 1))
                target = targets[pos]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(group)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    order = list(flow.steps)
    for group in groups:
        if len(group) == 1 and group[0] not in edges[group[0]]:
            continue
        members = sorted(group, key=order.index)
        names = ", ".join(f"`{m}`" for m in members)
        what = (
            f"step {names} leads back to itself" if len(members) == 1 else (f"steps {names} loop")
        )
        yield at.problem(
            ("steps", members[0]),
            f"{what} without a `send` or `wait` step, so a run would spin forever; "
            "add a `wait:` step to the loop",
            at_key=True,
        )


# ------------------------------------------------------------------ events and branches


def _wait_events(step: Step) -> str:
    """The events a ``wait`` step can get, as listed in messages."""
    names = ["reply", "button.<id>", "choice.<id>"]
    if isinstance(step.wait, WaitFor) and step.wait.for_ in ("read", "delivered"):
        names += ["read", "delivered"] if step.wait.for_ == "delivered" else ["read"]
    return ", ".join([*names, "timeout"])


def _event_problem(sid: str, step: Step, event: str) -> str | None:
    """Why ``on: event`` can never fire for this step, or None when it can."""
    never = f"`on: {event}` in step `{sid}` never happens"
    if event == "timeout":
        if step.send is not None:
            if step.timeout is None:
                return f"{never}: the step has no `timeout: {{after: ..., goto: ...}}`"
            return (
                f"`on: timeout` in step `{sid}` is never used: `timeout.goto` decides where "
                "a timeout goes; keep one of them"
            )
        timed = not isinstance(step.wait, WaitFor) or step.wait.up_to or step.timeout
        return None if timed else f"{never}: the wait has no `up_to:`, so it never times out"
    kind, _, wanted = event.partition(".")
    send = step.send
    if send is not None and kind == "button":
        if not send.buttons:
            return None if send.template is not None else f"{never}: the step sends no buttons"
        ids = [b.id for b in send.buttons]
        if wanted in ids or any("{{" in i for i in ids):
            return None
        listed = ", ".join(f"`{i}`" for i in ids)
        return f"{never}: its buttons are {listed}{did_you_mean(wanted, ids)}"
    if send is not None and kind == "choice":
        if send.list_ is None:
            return f"{never}: the step sends no list"
        ids = [row.id for section in send.list_.sections for row in section.rows]
        if wanted in ids or any("{{" in i for i in ids):
            return None
        listed = ", ".join(f"`{i}`" for i in ids)
        return f"{never}: its list rows are {listed}{did_you_mean(wanted, ids)}"
    if send is not None or kind in ("button", "choice", "reply"):
        return None
    # A wait for read/delivered also takes those statuses of the message sent before it.
    takes = {"read": ("read", "delivered"), "delivered": ("delivered",)}
    if isinstance(step.wait, WaitFor) and step.wait.for_ in takes.get(event, ()):
        return None
    return f"{never}: a `wait` step gets {_wait_events(step)}"


def _events(flow: Flow, at: Locator, skip: frozenset[str]) -> Iterator[Problem]:
    for sid, step in flow.steps.items():
        if sid in skip:
            continue
        base = ("steps", sid)
        if step.send is None and step.rules is not None:
            yield at.problem(
                (*base, "rules"),
                f"`rules:` in step `{sid}` is never used: rules decide when a step's message "
                f"goes out, and a `{step.kind}` step sends none; put them on a `send` step "
                "(or in `defaults.rules`)",
                at_key=True,
            )
        if step.kind in _INSTANT:
            does = (
                "an `end` step finishes the run"
                if step.kind == "end"
                else (f"a `{step.kind}` step moves on at once")
            )
            for key, present in (("on", step.on), ("timeout", step.timeout)):
                if present is not None:
                    yield at.problem(
                        (*base, key),
                        f"`{key}:` in step `{sid}` is never used: {does} and gets no events",
                        at_key=True,
                    )
            if step.kind == "end" and step.next is not None:
                yield at.problem(
                    (*base, "next"),
                    f"`next:` in step `{sid}` is never used: an `end` step finishes the run",
                    at_key=True,
                )
            continue
        if step.wait is not None and not isinstance(step.wait, WaitFor) and step.timeout:
            yield at.problem(
                (*base, "timeout"),
                f"`timeout:` in step `{sid}` is never used: `wait: {step.wait}` moves on by "
                "`on: timeout` or `next` when the time is up",
                at_key=True,
            )
        if (
            isinstance(step.wait, WaitFor)
            and step.wait.up_to
            and step.timeout
            and to_timedelta(step.wait.up_to) != to_timedelta(step.timeout.after)
        ):  # the same time twice is only redundant
            yield at.problem(
                (*base, "timeout", "after"),
                f"`timeout.after` ({step.timeout.after}) in step `{sid}` is never used: the "
                f"wait ends after `up_to: {step.wait.up_to}`; give the time once, in `up_to`, "
                "and keep `timeout.goto` (or `on: timeout`) for where it goes",
            )
        for event in step.on or {}:
            why = _event_problem(sid, step, event)
            if why is not None:
                yield at.problem((*base, "on", event), why, at_key=True)


def _branches(flow: Flow, at: Locator) -> Iterator[Problem]:
    for sid, step in flow.steps.items():
        cases = step.branch or []
        for i, case in enumerate(cases[:-1]):
            if case.else_ is not None:
                yield at.problem(
                    ("steps", sid, "branch", i + 1),
                    f"case {i + 2} of step `{sid}` is never tried: it comes after `else`, "
                    "which always matches; move `else` to the end",
                )
                break


# ------------------------------------------------------------------ sends, rules, triggers


def _windows(flow: Flow, at: Locator, skip: frozenset[str]) -> Iterator[Problem]:
    for sid, step in flow.steps.items():
        send = step.send
        if (
            sid in skip
            or send is None
            or send.template is not None
            or flow.channel_for(sid) != "whatsapp"
        ):
            continue
        if flow.rules_for(sid).window == "template":
            yield at.problem(
                ("steps", sid, "send"),
                f"step `{sid}` sends free-form content with `window: template` but has no "
                "`template:` to send when the 24 h window is closed",
                at_key=True,
            )


def _providers(
    flow: Flow, at: Locator, providers: Mapping[str, object] | None
) -> Iterator[Problem]:
    configured = sorted(providers) if providers is not None else None

    def unknown(name: str) -> str | None:
        if configured is None or name in configured:
            return None
        listed = ", ".join(configured) if configured else "none"
        return f"provider `{name}` is not configured{did_you_mean(name, configured)}; " + (
            f"configured: {listed}"
        )

    default = flow.defaults.provider
    default_used = False
    for sid, step in flow.steps.items():
        if step.send is None:
            continue
        own = step.send.provider
        if own is None and default is None:
            yield at.problem(
                ("steps", sid, "send"),
                f"step `{sid}` has no provider; set `provider:` in its `send:` or in `defaults:`",
                at_key=True,
            )
        elif own is not None and (why := unknown(own)) is not None:
            yield at.problem(("steps", sid, "send", "provider"), why)
        default_used = default_used or own is None
    if default is not None and default_used and (why := unknown(default)) is not None:
        yield at.problem(("defaults", "provider"), why)


def _validity(flow: Flow, at: Locator) -> Iterator[Problem]:
    places: list[tuple[DocPath, Rules | None]] = [(("defaults", "rules"), flow.defaults.rules)]
    places += [(("steps", sid, "rules"), step.rules) for sid, step in flow.steps.items()]
    blanks = at.source_map.blanks if at.source_map is not None else frozenset()
    for sid, step in flow.steps.items():
        for name in sorted(step.rules.model_fields_set if step.rules else ()):
            # `timezone` is refused under a step whatever its value (_zones_and_crons).
            if name != "timezone" and ("steps", sid, "rules", name) in blanks:
                # `null` turns the default off; an unfinished edit must not, unseen.
                yield at.problem(
                    ("steps", sid, "rules", name),
                    f"`{name}` in step `{sid}` has no value; write `null` to turn the "
                    "default off for this step, or give it a value",
                )
    for path, rules in places:
        quiet = rules.quiet_hours if rules is not None else None
        if isinstance(quiet, QuietHoursRule) and quiet.days == []:
            yield at.problem(
                (*path, "quiet_hours", "days"),
                "`days: []` of `quiet_hours` names no day; name the days, leave `days` out "
                "for every day, or write `quiet_hours: null` for none",
            )
        margin = rules.window_margin if rules is not None else None
        if margin is not None and to_timedelta(margin) >= WINDOW:
            yield at.problem(
                (*path, "window_margin"),
                f"`window_margin: {margin}` closes the 24 h window before it opens: every "
                "WhatsApp send would be taken as outside it; write less than 24h, like 1h",
            )
        valid_for = rules.valid_for if rules is not None else None
        if valid_for is not None and to_timedelta(valid_for) <= timedelta(0):
            yield at.problem(
                (*path, "valid_for"),
                f"`valid_for: {valid_for}` would fail every message before it is "
                "sent; write how long a message stays worth sending, like 2h, or remove it",
            )


def _zones_and_crons(flow: Flow, at: Locator) -> Iterator[Problem]:
    zones: list[tuple[DocPath, str | None]] = [(("timezone",), flow.timezone)]
    if flow.defaults.rules is not None:
        zones.append((("defaults", "rules", "timezone"), flow.defaults.rules.timezone))
    for path, zone in zones:
        if zone is not None and (why := timezone_problem(zone)) is not None:
            yield at.problem(path, why)
    rules_zone = flow.defaults.rules.timezone if flow.defaults.rules else None
    if flow.timezone and rules_zone and flow.timezone != rules_zone:
        # Cron reads `timezone` first and the rules `defaults.rules.timezone` first: two
        # zones would run a 09:00 campaign into its own quiet hours.
        yield at.problem(
            ("defaults", "rules", "timezone"),
            f"`defaults.rules.timezone` ({rules_zone}) differs from the flow's `timezone` "
            f"({flow.timezone}); cron triggers and the rules must read one zone: keep one "
            "of the two (contacts with a `timezone` of their own keep theirs)",
        )
    for sid, step in flow.steps.items():
        if step.rules is not None and "timezone" in step.rules.model_fields_set:
            yield at.problem(
                ("steps", sid, "rules", "timezone"),
                f"`timezone` is set for the whole flow, not per step (step `{sid}`); move it "
                "to `defaults.rules` or the flow's `timezone`",
                at_key=True,
            )
    for i, trigger in enumerate(flow.triggers):
        cron = getattr(trigger, "cron", None)
        if isinstance(cron, str) and len(cron.split()) != 5:
            yield at.problem(
                ("triggers", i, "cron"),
                f"`cron` of trigger {i + 1} has {len(cron.split())} fields; write five "
                '(minute hour day month weekday), like "0 9 * * 1-5"',
            )
