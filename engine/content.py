"""From a flow's ``send:`` block to one kernel Content model, and the channel limits.

``build_content`` renders every string of the spec (engine.render) and builds one
model; ``check_limits`` lists every way rendered content breaks its channel's rules.
Nothing is ever truncated: content over a limit is a ``ContentError`` naming each
field the way the flow file does (``send.buttons[1].title``), the actual size and
the limit. Lengths are counted in characters (Unicode code points); media sizes in
decimal bytes (1 MB = 1,000,000), the conservative reading of WhatsApp's limits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

from engine.captions import caption_violations
from engine.errors import ContentError, ContentViolation
from engine.flow.limits import (
    BODY_MAX,
    BUTTON_ID_MAX,
    BUTTON_TITLE_MAX,
    BUTTONS_MAX,
    FOOTER_MAX,
    HEADER_MAX,
    LIST_BUTTON_MAX,
    LIST_ROWS_MAX,
    LIST_SECTIONS_MAX,
    MEDIA_BYTES,
    ROW_DESCRIPTION_MAX,
    ROW_ID_MAX,
    ROW_TITLE_MAX,
    SECTION_TITLE_MAX,
    TEXT_MAX,
)
from engine.flow.model import ListSpec, LocationSpec, MediaSpec, SendSpec, TemplateSpec
from engine.flow.yaml_source import format_path
from engine.media_links import link_violations
from engine.media_types import media_type_violations
from engine.models import (
    Button,
    Buttons,
    Channel,
    Content,
    Email,
    ListMenu,
    ListRow,
    ListSection,
    Location,
    Media,
    Template,
    Text,
)
from engine.render import RenderScope, render_string
from engine.wording import a_or_an

Render = Callable[[str, str], str]


def build_content(
    spec: SendSpec,
    scope: RenderScope,
    *,
    flow: str,
    step: str,
    use_template: bool,
    channel: Channel | None = None,
) -> Content:
    """The rendered content of a ``send`` step, checked against ``channel`` (default: the
    spec's channel, else whatsapp). ``use_template`` (the 24 h window is closed) sends the
    spec's template; a spec with only a template sends it either way.

    Raises RenderError for a template that cannot render, ContentError with every
    violation for content that breaks the channel's limits or a field that would not
    reach the contact (``header`` on plain text, ``text`` next to a media caption).
    """

    def render(source: str, field: str) -> str:
        html = field == "send.email.body" and spec.email is not None and spec.email.html
        return render_string(source, scope, flow=flow, step=step, field=field, html=html)

    return assemble_content(
        spec, render, use_template=use_template, channel=channel or spec.channel or "whatsapp"
    )


def assemble_content(
    spec: SendSpec, render: Render, *, use_template: bool, channel: Channel
) -> Content:
    """The content of ``spec`` with each string passed through ``render(source, field)``,
    checked against ``channel``: ``build_content`` renders for a contact, ``disparo
    check`` (``engine.content_checks``) with the strings as the flow file writes them.
    Raises ContentError with every violation."""
    content: Content
    unused: list[str] = []
    early: list[ContentViolation] = []
    if use_template or spec.kind == "template":
        if spec.template is None:
            raise ContentError([ContentViolation(field="send.template", message=_NO_TEMPLATE)])
        content = _template(spec.template, render)
    elif spec.buttons is not None:
        content = Buttons(
            body=render(spec.text or "", "send.text"),
            header=_optional(render, spec.header, "send.header"),
            footer=_optional(render, spec.footer, "send.footer"),
            buttons=tuple(
                Button(id=render(b.id, f"{at}.id"), title=render(b.title, f"{at}.title"))
                for i, b in enumerate(spec.buttons)
                for at in (_at("buttons", i),)
            ),
        )
    elif spec.list_ is not None:
        content = _list_menu(spec, spec.list_, render)
    elif spec.location is not None:
        content, unused = _location(spec.location, render), ["text"]
    elif spec.media is not None:
        captioned = spec.media.caption is not None
        content = _media(spec.media, render, "send.media", fallback_caption=spec.text)
        unused = ["text"] if captioned else []
        if channel == "whatsapp":
            field = "send.media.caption" if captioned else "send.text"
            early = list(caption_violations(content, field))
    elif spec.email is not None:
        content = Email(
            subject=render(spec.email.subject, "send.email.subject"),
            body=render(spec.email.body, "send.email.body"),
            html=spec.email.html,
        )
        unused = ["text"]
    else:
        content = Text(body=render(spec.text or "", "send.text"))
    if channel != "whatsapp" and spec.template is not None and not isinstance(content, Template):
        # The window rule picks the template on WhatsApp only: elsewhere it never goes.
        why = f"WhatsApp templates are not sent by {channel}; remove it"
        early.append(ContentViolation(field="send.template", message=why))
    violations = _ignored_fields(spec, content, unused) + early + check_limits(content, channel)
    if violations:
        raise ContentError(violations)
    return content


def _at(*parts: str | int) -> str:
    """A field as the flow file and ``disparo check`` name it: ``send.buttons[1].title``
    (list items counted from 1)."""
    return format_path(("send", *parts))


_NO_TEMPLATE = "the 24 h window is closed and this step has no `template:` to send instead"


def _optional(render: Render, source: str | None, field: str) -> str | None:
    return None if source is None else render(source, field)


def _list_menu(spec: SendSpec, menu: ListSpec, render: Render) -> ListMenu:
    sections = []
    for s, section in enumerate(menu.sections):
        rows = []
        for r, row in enumerate(section.rows):
            at = _at("list", "sections", s, "rows", r)
            rows.append(
                ListRow(
                    id=render(row.id, f"{at}.id"),
                    title=render(row.title, f"{at}.title"),
                    description=_optional(render, row.description, f"{at}.description"),
                )
            )
        title = _optional(render, section.title, _at("list", "sections", s, "title"))
        sections.append(ListSection(title=title, rows=tuple(rows)))
    return ListMenu(
        body=render(spec.text or "", "send.text"),
        button=render(menu.button, "send.list.button"),
        header=_optional(render, spec.header, "send.header"),
        footer=_optional(render, spec.footer, "send.footer"),
        sections=tuple(sections),
    )


def _template(spec: TemplateSpec, render: Render) -> Template:
    params: dict[str, str] | tuple[str, ...]
    if isinstance(spec.params, dict):
        params = {k: render(v, f"send.template.params.{k}") for k, v in spec.params.items()}
    else:
        params = tuple(render(v, _at("template", "params", i)) for i, v in enumerate(spec.params))
    header = spec.header_media
    return Template(
        name=render(spec.name, "send.template.name"),
        language=_optional(render, spec.language, "send.template.language"),
        params=params,
        header_media=None
        if header is None
        else _media(header, render, "send.template.header_media", fallback_caption=None),
    )


def _media(spec: MediaSpec, render: Render, at: str, *, fallback_caption: str | None) -> Media:
    caption = (
        render(spec.caption, f"{at}.caption")
        if spec.caption is not None
        else _optional(render, fallback_caption, "send.text")
    )
    return Media(
        kind=spec.kind,
        url=_optional(render, spec.url, f"{at}.url"),
        # A payload is data, not a template: rendering megabytes of base64 would be
        # slow and would hit the template output limit.
        base64=spec.base64,
        filename=_optional(render, spec.filename, f"{at}.filename"),
        caption=caption,
        mime_type=_optional(render, spec.mime_type, f"{at}.mime_type"),
    )


def _coordinate(value: float | str, field: str, render: Render) -> float | ContentViolation:
    if not isinstance(value, str):
        return float(value)
    text = render(value, field).strip()
    # pt-BR writes a decimal comma: "-23,5505".
    candidate = text.replace(",", ".", 1) if "." not in text else text
    try:
        number = float(candidate)
    except ValueError:
        number = math.nan
    if math.isnan(number):
        return ContentViolation(field=field, message=f"{text!r} is not a number")
    return number


def _location(spec: LocationSpec, render: Render) -> Location:
    latitude = _coordinate(spec.latitude, "send.location.latitude", render)
    longitude = _coordinate(spec.longitude, "send.location.longitude", render)
    bad = [v for v in (latitude, longitude) if isinstance(v, ContentViolation)]
    if bad:
        raise ContentError(bad)
    assert isinstance(latitude, float)
    assert isinstance(longitude, float)
    return Location(
        latitude=latitude,
        longitude=longitude,
        name=_optional(render, spec.name, "send.location.name"),
        address=_optional(render, spec.address, "send.location.address"),
        url=_optional(render, spec.url, "send.location.url"),
    )


def _ignored_fields(spec: SendSpec, content: Content, unused: list[str]) -> list[ContentViolation]:
    # A field that would not reach the contact is an error, never silently dropped.
    if isinstance(content, Template):
        return []  # the window-closed fallback sends the template instead of the rest
    if not isinstance(content, Buttons | ListMenu):
        unused = [*unused, "header", "footer"]
    kind = content.type
    return [
        ContentViolation(field=f"send.{name}", message=f"is not sent with {kind}; remove it")
        for name in unused
        if getattr(spec, name) is not None
    ]


# ------------------------------------------------------------------ limits


def check_limits(content: Content, channel: Channel) -> list[ContentViolation]:
    """Every way ``content`` breaks the rules of ``channel``; empty when it may be sent.

    WhatsApp: the limits of FLOW_FORMAT.md. A template's body text lives at the
    provider, so its parameters are checked instead: none empty, and together at most
    the body's 1024 characters (the body holds them all). SMS sends text only; e-mail
    sends ``email:`` content only, with a one-line subject and a body.
    """
    kind = content.type
    field = f"send.{kind}"
    if channel == "sms":
        if not isinstance(content, Text):
            return [
                ContentViolation(
                    field=field, message=f"the sms channel sends text only, not {kind}"
                )
            ]
        return list(_empty(content.body, "send.text", "SMS"))
    if channel == "email":
        if not isinstance(content, Email):
            why = f"the email channel sends `email:` content only, not {kind}"
            return [ContentViolation(field=field, message=why)]
        return list(_email(content))
    if isinstance(content, Email):
        why = "WhatsApp cannot send e-mail; set `channel: email`"
        return [ContentViolation(field=field, message=why)]
    return list(_whatsapp(content))


def _too_long(value: str | None, field: str, limit: int) -> Iterator[ContentViolation]:
    if value is not None and len(value) > limit:
        yield ContentViolation(
            field=field, message=f"{len(value)} characters; WhatsApp allows at most {limit}"
        )


def _empty(value: str | None, field: str, channel: str = "WhatsApp") -> Iterator[ContentViolation]:
    if value is not None and not value.strip():
        yield ContentViolation(
            field=field, message=f"empty after rendering; {channel} needs a text"
        )


def _text(value: str, field: str, limit: int) -> Iterator[ContentViolation]:
    yield from _empty(value, field)
    yield from _too_long(value, field, limit)


def _unique(
    values: list[tuple[str, str]], what: str, attr: str = "id"
) -> Iterator[ContentViolation]:
    first: dict[str, str] = {}
    for field, value in values:
        if value in first:
            yield ContentViolation(
                field=field,
                message=f"`{value}` is also the {attr} of {first[value]}; "
                f"{what} {attr}s must be unique",
            )
        else:
            first[value] = field.removesuffix(f".{attr}")


def _whatsapp(content: Content) -> Iterator[ContentViolation]:
    if isinstance(content, Text):
        yield from _text(content.body, "send.text", TEXT_MAX)
    elif isinstance(content, Buttons):
        yield from _interactive(content.body, content.header, content.footer)
        if not 1 <= len(content.buttons) <= BUTTONS_MAX:
            yield ContentViolation(
                field="send.buttons",
                message=f"{len(content.buttons)} buttons; WhatsApp allows 1 to {BUTTONS_MAX}",
            )
        for i, button in enumerate(content.buttons):
            yield from _text(button.title, _at("buttons", i, "title"), BUTTON_TITLE_MAX)
            yield from _text(button.id, _at("buttons", i, "id"), BUTTON_ID_MAX)
        ids = [(_at("buttons", i, "id"), b.id) for i, b in enumerate(content.buttons)]
        yield from _unique(ids, "button")
        # WhatsApp refuses the whole message when two buttons read the same.
        titles = [(_at("buttons", i, "title"), b.title) for i, b in enumerate(content.buttons)]
        yield from _unique(titles, "button", "title")
    elif isinstance(content, ListMenu):
        yield from _list(content)
    elif isinstance(content, Media):
        yield from _file_limits(content, "send.media")
    elif isinstance(content, Location):
        yield from _coordinates(content)
    elif isinstance(content, Template):
        yield from _template_limits(content)


def _interactive(body: str, header: str | None, footer: str | None) -> Iterator[ContentViolation]:
    yield from _text(body, "send.text", BODY_MAX)
    # An empty header or footer text is refused by WhatsApp ("Text cannot be null").
    if header is not None:
        yield from _text(header, "send.header", HEADER_MAX)
    if footer is not None:
        yield from _text(footer, "send.footer", FOOTER_MAX)


def _list(content: ListMenu) -> Iterator[ContentViolation]:
    yield from _interactive(content.body, content.header, content.footer)
    yield from _text(content.button, "send.list.button", LIST_BUTTON_MAX)
    sections = content.sections
    if not 1 <= len(sections) <= LIST_SECTIONS_MAX:
        yield ContentViolation(
            field="send.list.sections",
            message=f"{len(sections)} sections; WhatsApp allows 1 to {LIST_SECTIONS_MAX}",
        )
    rows = sum(len(section.rows) for section in sections)
    if not 1 <= rows <= LIST_ROWS_MAX:
        yield ContentViolation(
            field="send.list.sections",
            message=f"{rows} rows in total; WhatsApp allows 1 to {LIST_ROWS_MAX}",
        )
    ids: list[tuple[str, str]] = []
    for s, section in enumerate(sections):
        if section.title is not None:
            yield from _text(section.title, _at("list", "sections", s, "title"), SECTION_TITLE_MAX)
        elif len(sections) > 1:
            yield ContentViolation(
                field=_at("list", "sections", s),
                message="has no title; WhatsApp needs a title on every section when a list "
                "has more than one",
            )
        for r, row in enumerate(section.rows):
            at = _at("list", "sections", s, "rows", r)
            yield from _text(row.title, f"{at}.title", ROW_TITLE_MAX)
            yield from _too_long(row.description, f"{at}.description", ROW_DESCRIPTION_MAX)
            yield from _text(row.id, f"{at}.id", ROW_ID_MAX)
            ids.append((f"{at}.id", row.id))
    yield from _unique(ids, "row")


def decoded_size(payload: str) -> int:
    """Bytes a base64 payload decodes to, without decoding it (a ``data:`` URL prefix
    and whitespace are ignored)."""
    if payload.startswith("data:"):
        payload = payload.partition(",")[2]
    length = len(payload) - sum(payload.count(c) for c in " \t\r\n")
    padding = len(payload.rstrip()) - len(payload.rstrip().rstrip("="))
    return max(length * 3 // 4 - padding, 0)


def _file_limits(media: Media, at: str) -> Iterator[ContentViolation]:
    """A file's size, its link and its type, whether sent alone or as a template header."""
    yield from _media_size(media, at)
    yield from link_violations(media, at)
    yield from media_type_violations(media, at)


def _media_size(media: Media, at: str) -> Iterator[ContentViolation]:
    if media.base64 is None:
        return  # a URL's size is known only to whoever fetches it
    size, limit = decoded_size(media.base64), MEDIA_BYTES[media.kind]
    if size > limit:
        yield ContentViolation(
            field=f"{at}.base64",
            message=f"{size:,} bytes after decoding; WhatsApp allows at most "
            f"{limit:,} bytes for {a_or_an(media.kind)}",
        )


def _email(email: Email) -> Iterator[ContentViolation]:
    yield from _empty(email.subject, "send.email.subject", "an e-mail")
    if "\n" in email.subject or "\r" in email.subject:
        # A line break in a subject would start a new mail header.
        yield ContentViolation(field="send.email.subject", message="a subject is one line")
    yield from _empty(email.body, "send.email.body", "an e-mail")


def _coordinates(location: Location) -> Iterator[ContentViolation]:
    for name, value, bound in (
        ("latitude", location.latitude, 90),
        ("longitude", location.longitude, 180),
    ):
        if not -bound <= value <= bound:
            yield ContentViolation(
                field=f"send.location.{name}",
                message=f"{value} is out of range; {name} is between -{bound} and {bound}",
            )


# WhatsApp refuses a template message (error 132018) whose parameter holds one.
_NOT_ONE_LINE = re.compile(r"[\n\r\t]| {5}")
_ONE_LINE = (
    "has a line break, a tab or more than 4 spaces in a row; WhatsApp refuses such "
    "template parameters"
)


def _template_limits(template: Template) -> Iterator[ContentViolation]:
    if not template.name.strip():
        yield ContentViolation(field="send.template.name", message="empty after rendering")
    params = template.params
    fields = (
        [(f"send.template.params.{key}", value) for key, value in params.items()]
        if isinstance(params, dict)
        else [(_at("template", "params", i), value) for i, value in enumerate(params)]
    )
    for field, value in fields:
        if not value.strip():
            yield ContentViolation(
                field=field, message="empty after rendering; WhatsApp rejects empty parameters"
            )
        elif _NOT_ONE_LINE.search(value):
            yield ContentViolation(field=field, message=_ONE_LINE)
    total = sum(len(value) for _, value in fields)
    if total > BODY_MAX:
        yield ContentViolation(
            field="send.template.params",
            message=f"{total} characters in parameters; a WhatsApp template body allows "
            f"at most {BODY_MAX}",
        )
    if template.header_media is not None:
        yield from _file_limits(template.header_media, "send.template.header_media")
