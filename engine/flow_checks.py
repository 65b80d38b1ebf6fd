"""Checks that need more than the flow file: Jinja syntax, the configured providers'
capabilities, and the template catalogue. Run by `disparo check` and at engine start,
so a flow that would fail at send time is refused before any run starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from engine.errors import Problem
from engine.flow.model import Flow, Step, TemplateSpec
from engine.flow.problems import did_you_mean
from engine.flow.validate import FlowCheck, Locator
from engine.flow.yaml_source import DocPath
from engine.render import check_expression_syntax, template_syntax_error
from engine.template_catalog import TemplateCatalog
from engine.template_fields import stray_braces, unknown_fields
from providers.base import Capabilities, language_problem

# Data, not templates: a base64 payload is never rendered.
_NOT_TEMPLATES = frozenset({"base64", "provider", "channel", "kind"})


def _strings(value: Any, path: DocPath) -> Iterator[tuple[DocPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in _NOT_TEMPLATES:
                yield from _strings(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def template_syntax(flow: Flow, at: Locator) -> Iterable[Problem]:
    """Every Jinja template and expression of the flow compiles."""
    for sid, step in flow.steps.items():
        texts = list(_strings(step.set_ or {}, ("steps", sid, "set")))
        if step.send is not None:
            spec = step.send.model_dump(by_alias=True, exclude_none=True)
            texts = [*_strings(spec, ("steps", sid, "send")), *texts]
        for path, text in texts:
            found = template_syntax_error(text)
            if found is not None:
                yield at.problem_on_line(path, found[0], "template does not compile", found[1])
                continue
            for line, why in unknown_fields(text):
                yield at.problem_on_line(path, line, "unknown field", why)
            for line, why in stray_braces(text):
                yield at.problem_on_line(path, line, "stray braces", why)
        for index, case in enumerate(step.branch or []):
            if case.when is not None:
                yield from _expression_problems(
                    case.when, ("steps", sid, "branch", index, "when"), at
                )
    for index, trigger in enumerate(flow.triggers):
        for key in ("audience", "unless"):
            expression = getattr(trigger, key, None)
            if isinstance(expression, str):
                yield from _expression_problems(expression, ("triggers", index, key), at)


def _expression_problems(expression: str, path: DocPath, at: Locator) -> Iterator[Problem]:
    why = check_expression_syntax(expression)
    if why is not None:
        yield at.problem(path, f"expression does not compile: {why}")
        return
    for _, unknown in unknown_fields(expression, expression=True):
        yield at.problem(path, unknown)


_WORDS = {
    "buttons": "reply buttons",
    "list": "list menus",
    "media": "files",
    "location": "locations",
    "template": "approved templates",
    "email": "e-mail",
}
_INSTEAD = {
    "buttons": "use a template with quick replies",
    "list": "use a template with quick replies or numbered text options",
    "media": "send a link in the text",
    "location": "send the address in the text",
}


def provider_capabilities(capabilities: Mapping[str, Capabilities]) -> FlowCheck:
    """Each send's provider can carry its channel and content, and reports what `on:` waits for."""

    def check(flow: Flow, at: Locator) -> Iterable[Problem]:
        for sid, step in flow.steps.items():
            if step.send is None:
                continue
            name = flow.provider_for(sid)
            caps = capabilities.get(name or "")
            if caps is None:
                continue  # an unknown or missing provider is reported by validate_flow
            where: DocPath = ("steps", sid, "send")
            channel = flow.channel_for(sid)
            if channel not in caps.channels:
                can = ", ".join(sorted(caps.channels))
                yield at.problem(
                    (*where, "channel") if step.send.channel else where,
                    f"provider `{name}` cannot send {channel} (it sends: {can}); "
                    "pick another provider for this step",
                    at_key=step.send.channel is None,
                )
            kinds = {step.send.kind}
            if step.send.template is not None:
                kinds.add("template")
            for needed in sorted(kinds):
                if needed not in caps.content_types:
                    others = [
                        other
                        for other, c in sorted(capabilities.items())
                        if needed in c.content_types and channel in c.channels
                    ]
                    instead = _INSTEAD.get(needed, "change the content")
                    if others:
                        instead += f", or use a provider that can: {', '.join(others)}"
                    yield at.problem(
                        (*where, needed),
                        f"provider `{name}` can't send {_WORDS.get(needed, needed)}; {instead}",
                        at_key=True,
                    )
            yield from _content_details(step, caps, name or "", where, at)
            if not caps.webhooks and step.on:
                # `failed` still happens: a send the provider refuses, or content that
                # cannot be built, fails the message at send time (engine.sending).
                for event in ("delivered", "read"):
                    if event in step.on:
                        yield at.problem(
                            ("steps", sid, "on", event),
                            f"provider `{name}` reports no statuses after `sent`, so "
                            f"`{event}` never happens here; use `sent` or a `timeout:` "
                            "(`failed` still catches a send the provider refuses)",
                            at_key=True,
                        )
            elif step.on and "read" in step.on and (channel == "sms" or not caps.read_receipts):
                who = f"provider `{name}` reports" if not caps.read_receipts else "SMS has"
                yield at.problem(
                    ("steps", sid, "on", "read"),
                    f"{who} no read receipts, so `read` never happens here; use `delivered` "
                    "or a `timeout:`",
                    at_key=True,
                )

            if caps.attendant_conflicts_with_in_attendance:
                yield from _attendant_conflict(flow, at, sid, name or "")

    return check


def _content_details(
    step: Step, caps: Capabilities, name: str, where: DocPath, at: Locator
) -> Iterable[Problem]:
    """What a provider refuses inside a content type it otherwise sends."""
    spec = step.send
    assert spec is not None
    media = spec.media
    if media is not None and media.kind not in caps.media_kinds:
        yield at.problem(
            (*where, "media", "kind"),
            f"provider `{name}` can't send a {media.kind}; it sends "
            f"{', '.join(sorted(caps.media_kinds))}",
        )
    if media is not None and media.base64 is not None and caps.media_by_url_only:
        yield at.problem(
            (*where, "media", "base64"),
            f"provider `{name}` takes files by URL only; publish the file and give `url:`",
            at_key=True,
        )
    if spec.buttons is not None and spec.header is not None and not caps.buttons_text_header:
        yield at.problem(
            (*where, "header"),
            f"provider `{name}` can't show a text header on reply buttons; put it in the text",
            at_key=True,
        )
    if spec.location is not None and spec.location.url is not None and not caps.location_url:
        yield at.problem(
            (*where, "location", "url"),
            f"provider `{name}` can't send a location's `url`; put the link in a text of its own",
            at_key=True,
        )
    template = spec.template
    if template is None:
        return
    if template.header_media is not None and caps.files_per_template < 1:
        yield at.problem(
            (*where, "template", "header_media"),
            f"provider `{name}` can't send a file with a template",
            at_key=True,
        )
    if caps.template_params_named and isinstance(template.params, list) and template.params:
        yield at.problem(
            (*where, "template", "params"),
            f"provider `{name}` needs named template parameters: "
            "`params: {Name: value, ...}` as the catalogue names them",
        )


def _attendant_conflict(flow: Flow, at: Locator, sid: str, provider: str) -> Iterable[Problem]:
    """A send followed by a handoff to a named attendant assigns the contact to that
    attendant; with `in_attendance: skip|defer` Robbu refuses it ("message not sent:
    contact in attendance")."""
    step = flow.steps[sid]
    following = flow.steps.get(step.next) if step.next else None
    handoff = following.handoff if following is not None else None
    guard = flow.rules_for(sid).in_attendance
    if handoff is None or not handoff.attendant or guard not in ("skip", "defer"):
        return
    own = step.rules is not None and step.rules.in_attendance is not None
    path: DocPath = (
        ("steps", sid, "rules", "in_attendance") if own else ("defaults", "rules", "in_attendance")
    )
    yield at.problem(
        path,
        f"provider `{provider}` refuses a send that assigns attendant `{handoff.attendant}` "
        f"(the handoff after step `{sid}`) while `in_attendance: {guard}` discards attended "
        'contacts ("message not sent: contact in attendance"); set `rules: '
        f"{{in_attendance: send}}` on step `{sid}`",
    )


def _language_problems(
    spec: TemplateSpec,
    catalogued: str | None,
    provider: str,
    capabilities: Mapping[str, Capabilities] | None,
    catalog_where: str,
    where: DocPath,
    at: Locator,
) -> Iterator[Problem]:
    """A provider that passes the template's language to WhatsApp (Interflow) needs one,
    written as WhatsApp's code (``pt_BR``, not ``pt-BR``), from the step or the catalogue."""
    caps = (capabilities or {}).get(provider)
    if caps is None or not caps.template_needs_language:
        return
    if spec.language is None and catalogued is None:
        yield at.problem(
            (*where, "name"),
            f"provider `{provider}` needs the template's language; set "
            f"`language: pt_BR` (or another) for `{spec.name}` under "
            f"`{provider}` in {catalog_where}, or on this step",
        )
        return
    if spec.language is not None:
        if "{" in spec.language:
            return  # rendered: known at send time, where the provider refuses it
        problem, place = language_problem(spec.language), (*where, "language")
    else:
        assert catalogued is not None
        problem, place = language_problem(catalogued), (*where, "name")
        if problem is not None:
            problem = f"`{spec.name}` under `{provider}` in {catalog_where}: {problem}"
    if problem is not None:
        yield at.problem(place, problem)


def template_catalog(
    catalog: TemplateCatalog, capabilities: Mapping[str, Capabilities] | None = None
) -> FlowCheck:
    """Each template a flow sends is in the catalogue, for its provider, with known params
    (and a language where the provider needs one)."""

    def check(flow: Flow, at: Locator) -> Iterable[Problem]:
        for sid, step in flow.steps.items():
            spec = step.send.template if step.send is not None else None
            if spec is None or "{" in spec.name:
                continue  # a rendered name is only known at send time
            where: DocPath = ("steps", sid, "send", "template")
            entry = catalog.templates.get(spec.name)
            if entry is None:
                hint = did_you_mean(spec.name, catalog.templates)
                yield at.problem(
                    (*where, "name"),
                    f"template `{spec.name}` is not in the template catalogue "
                    f"(config `templates:`){hint or '; add it there once it is approved'}",
                )
                continue
            provider = flow.provider_for(sid)
            if provider and provider not in entry.providers:
                yield at.problem(
                    (*where, "name"),
                    f"template `{spec.name}` has no id for provider `{provider}`; add "
                    f"`{provider}: {{id: ...}}` under its `providers:` in {catalog.where}",
                )
            elif provider:
                yield from _language_problems(
                    spec,
                    entry.providers[provider].language,
                    provider,
                    capabilities,
                    catalog.where,
                    where,
                    at,
                )
            if isinstance(spec.params, Mapping):
                for key in spec.params:
                    if key not in entry.params:
                        yield at.problem(
                            (*where, "params", key),
                            f"template `{spec.name}` has no parameter `{key}` "
                            f"(it takes: {', '.join(entry.params) or 'none'})"
                            f"{did_you_mean(key, entry.params)}",
                            at_key=True,
                        )
                missing = [name for name in entry.params if name not in spec.params]
                if missing:
                    names = " and ".join(", ".join(f"`{m}`" for m in missing).rsplit(", ", 1))
                    yield at.problem(
                        (*where, "params"),
                        f"template `{spec.name}` needs parameter{'s' if len(missing) > 1 else ''} "
                        f"{names} (it takes: {', '.join(entry.params)})",
                        at_key=True,
                    )
            elif len(spec.params) != len(entry.params):
                yield at.problem(
                    (*where, "params"),
                    f"template `{spec.name}` takes {len(entry.params)} parameter(s), "
                    f"this step gives {len(spec.params)}",
                )

    return check
