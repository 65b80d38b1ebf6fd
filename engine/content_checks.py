"""`disparo check` applies the channel rules and WhatsApp limits of ``engine.content``
to every ``send`` step, so content that would fail at send time is refused first.

The content is built the way the sender builds it (``engine.content.assemble_content``)
and checked by the same ``check_limits``, with one difference: nothing is rendered. A
string written out in the flow file stands for itself (less the one trailing newline
Jinja drops). A templated string (``{{ }}``, ``{% %}``) is only known at send time, so
it stands in as the text it prints whatever the values: the fixed text outside every
``{% %}`` block (``Pagar com Pix, {{ nome }}`` is at least ``Pagar com Pix, ``), a
lower bound on its length, and its line breaks. Without such text it stands in as one
distinct character (``0`` for a coordinate) that breaks no rule. Two templated strings
may render equal or not, so a duplicate involving one is left to send time; so are
its exact length, emptiness and value. Counts (buttons,
rows, sections), duplicate literal ids, literal lengths, fields that would not reach
the contact and content the channel cannot carry are all decided from the file. A
free-form WhatsApp send with a ``template:`` is checked both ways: the window decides
at send time which one goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from jinja2 import Environment, TemplateSyntaxError, nodes

from engine.content import assemble_content
from engine.errors import ContentError, ContentViolation, Problem
from engine.flow.model import Flow, SendSpec
from engine.flow.problems import lookup
from engine.flow.validate import Locator
from engine.flow.yaml_source import DocPath, parse_path
from engine.media_links import NOT_A_LINK
from engine.models import Channel

_JINJA = ("{{", "{%", "{#")
_STAND_INS = 0xE000  # Unicode private use area: never written in a flow


_PARSER = Environment(trim_blocks=True, lstrip_blocks=True)  # as engine.sandbox lexes


def fixed_text(source: str) -> str:
    """The text a template prints whatever its values: the literal parts of its
    top-level output, outside every ``{% %}`` block; empty when it does not parse."""
    try:
        body = _PARSER.parse(source).body
    except TemplateSyntaxError:
        return ""
    return "".join(
        part.data
        for node in body
        if isinstance(node, nodes.Output)
        for part in node.nodes
        if isinstance(part, nodes.TemplateData)
    )


def _static(source: str, field: str, seen: dict[str, str]) -> str:
    """A string as check time knows it: a literal as itself (less the one trailing
    newline Jinja drops); a templated one as its fixed text, else a stand-in that
    breaks no rule of its own (one distinct character, or 0 for a coordinate)."""
    if not any(mark in source for mark in _JINJA):
        return source.removesuffix("\n")
    if field.endswith(("latitude", "longitude")):
        stand_in = "0"
    else:
        fixed = fixed_text(source)
        stand_in = fixed if fixed.strip() else chr(_STAND_INS + len(seen) + 1)
    seen[field] = stand_in
    return stand_in


def _undecided(violation: ContentViolation, seen: dict[str, str]) -> bool:
    """A violation only the rendered value decides: a duplicate id or title that a
    templated string is part of (rendered, the two may differ), or the web address a
    templated URL renders to (``{{ base }}/b.pdf``)."""
    if violation.message.endswith(NOT_A_LINK):
        return violation.field in seen
    if not violation.message.endswith("must be unique"):
        return False
    return violation.field in seen or any(
        violation.message.startswith(f"`{value}` ") for value in seen.values()
    )


def _violations(spec: SendSpec, channel: Channel, *, use_template: bool) -> list[ContentViolation]:
    seen: dict[str, str] = {}
    try:
        assemble_content(
            spec,
            lambda source, field: _static(source, field, seen),
            use_template=use_template,
            channel=channel,
        )
    except ContentError as exc:
        return [v for v in exc.violations if not _undecided(v, seen)]
    return []


def content_limits(flow: Flow, at: Locator) -> Iterable[Problem]:
    """Every send's content fits its channel and, on WhatsApp, its limits."""
    for sid, step in flow.steps.items():
        spec = step.send
        if spec is None:
            continue
        channel = cast(Channel, flow.channel_for(sid))
        ways = [False]
        if spec.template is not None and channel == "whatsapp":
            ways.append(True)  # the 24 h window closed: the template goes instead
        found: dict[tuple[str, str], ContentViolation] = {}
        for use_template in ways:
            for violation in _violations(spec, channel, use_template=use_template):
                found.setdefault((violation.field, violation.message), violation)
        data = spec.model_dump(by_alias=True, exclude_none=True)
        for violation in found.values():
            inside = parse_path(violation.field)
            path: DocPath = ("steps", sid, *inside)
            value = lookup(data, inside[1:])
            yield at.problem(
                path,
                f"{violation.field} in step `{sid}`: {violation.message}",
                at_key=isinstance(value, dict | list),
            )
