"""The flow language (FLOW_FORMAT.md) as pydantic models.

These models are the single source of the JSON Schema (``disparo schema``) and of
the parsed flow the runner walks. Structural checks live here; checks across steps
(dangling references, reachability, cycles) live in ``engine.flow.validate``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from engine.flow.durations import parse_duration
from engine.flow.limits import BUTTONS_MAX, LIST_ROWS_MAX, LIST_SECTIONS_MAX
from engine.flow.time_range import parse_time_range

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
EVENT_PATTERN = r"^(sent|delivered|read|failed|reply|skipped|timeout|(button|choice)\.[^\s]+)$"
EVENT_KEY = re.compile(EVENT_PATTERN)
TIME_RANGE = r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$"
SINCE = r"^(last_inbound|last_interaction|last_outbound|context\.[A-Za-z0-9_.]+)$"
SET_KEY = r"^context(\.[^.\s]+)+$"
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*[dhms]\s*)+$"
STEP_KINDS = ("send", "wait", "branch", "set", "handoff", "end")
_KIND_ATTR = {"set": "set_"}

# What each pattern above asks for, in the words error messages use.
PATTERN_HINTS: dict[str, str] = {
    STEP_ID: "an id of unaccented letters, digits, `_` and `-` that starts with a letter or `_`",
    EVENT_PATTERN: (
        "an event: sent, delivered, read, failed, reply, skipped, timeout, "
        "button.<id> or choice.<row id>"
    ),
    TIME_RANGE: "a time range like 20:00-08:00",
    SINCE: "last_inbound, last_interaction, last_outbound or context.<field>",
    SET_KEY: "a context field like `context.nps_nota`",
}


def _duration(value: str | int | float) -> str | int | float:
    if parse_duration(value) < timedelta(0):
        raise ValueError(f"{value} is negative; write how long, like 3600, 30s, 10m or 1h")
    return value


def _no_booleans(wanted: str) -> BeforeValidator:
    """Refuse YAML's `true`/`false`, which a number field would take as 1 and 0."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{str(value).lower()} is not {wanted}")
        return value

    return BeforeValidator(check)


Duration = Annotated[
    str | int | float,
    _no_booleans("a duration; write it like 30s, 10m, 2h, 1d or 1h30m"),
    AfterValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "minimum": 0},
            ]
        }
    ),
    Field(description="A duration like 30s, 10m, 2h, 1d or 1h30m (a bare number is seconds)"),
]
StepRef = Annotated[str, Field(pattern=STEP_ID, description="The id of a step in this flow")]
Expression = Annotated[
    str, Field(description="A Jinja expression over contact, context, run and now")
]
EventKey = Annotated[str, Field(pattern=EVENT_PATTERN)]


def _time_range(value: str) -> str:
    parse_time_range(value)
    return value


TimeRange = Annotated[
    str,
    Field(pattern=TIME_RANGE, description="A local time range like 20:00-08:00"),
    AfterValidator(_time_range),
]


def to_timedelta(value: str | int | float) -> timedelta:
    return parse_duration(value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ------------------------------------------------------------------ content specs
# Every string is a Jinja template, rendered in the sandbox at send time.


class MediaSpec(_Model):
    """A file to send: exactly one of `url` or `base64`."""

    kind: Literal["image", "video", "audio", "document", "sticker"] = "image"
    url: str | None = None
    base64: str | None = None
    filename: str | None = None
    caption: str | None = None
    mime_type: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MediaSpec:
        if (self.url is None) == (self.base64 is None):
            raise ValueError("`media` needs exactly one of `url` or `base64`")
        return self


class ButtonSpec(_Model):
    """A reply button; tapping it sends the event `button.<id>`."""

    id: str = Field(description="Sent back as the event button.<id>")
    title: str = Field(description="What the contact sees (<= 20 chars, unique in the message)")


class ListRowSpec(_Model):
    """One option of a list menu; choosing it sends the event `choice.<id>`."""

    id: str = Field(description="Sent back as the event choice.<id> (<= 200 chars)")
    title: str = Field(description="What the contact sees (<= 24 chars)")
    description: str | None = None


class ListSectionSpec(_Model):
    """A group of rows under a title (optional when the list has one section)."""

    title: str | None = Field(default=None, description="<= 24 chars; needed with 2+ sections")
    rows: list[ListRowSpec] = Field(min_length=1, json_schema_extra={"maxItems": LIST_ROWS_MAX})


class ListSpec(_Model):
    """A list menu: a button that opens sections of rows (<= 10 rows in total)."""

    button: str = Field(description="Label of the button that opens the list (<= 20 chars)")
    sections: list[ListSectionSpec] = Field(
        min_length=1, json_schema_extra={"maxItems": LIST_SECTIONS_MAX}
    )


class LocationSpec(_Model):
    """A map pin."""

    latitude: Annotated[float | str, _no_booleans("a latitude; write a number like -23.5505")]
    longitude: Annotated[float | str, _no_booleans("a longitude; write a number like -46.6333")]
    name: str | None = None
    address: str | None = None
    url: str | None = None


class TemplateSpec(_Model):
    """An approved WhatsApp template, sent when the 24 h window is closed."""

    name: str = Field(description="Template name, resolved per provider via config/templates.yaml")
    language: str | None = None
    params: dict[str, str] | list[str] = Field(default_factory=dict)
    header_media: MediaSpec | None = None


class EmailSpec(_Model):
    """An e-mail (channel email)."""

    subject: str
    body: str
    html: bool = False


class SendSpec(_Model):
    """What a `send` step sends: one kind of content, plus an optional template."""

    channel: Literal["whatsapp", "sms", "email"] | None = None
    provider: str | None = Field(
        default=None, description="A provider instance named in config/disparo.yaml"
    )
    text: str | None = Field(default=None, description="Free text, or the body of buttons/list")
    header: str | None = None
    footer: str | None = None
    media: MediaSpec | None = None
    # Counts the schema can hold; `disparo check` reports them (engine.content_checks).
    buttons: list[ButtonSpec] | None = Field(
        default=None, json_schema_extra={"minItems": 1, "maxItems": BUTTONS_MAX}
    )
    list_: ListSpec | None = Field(default=None, alias="list")
    location: LocationSpec | None = None
    template: TemplateSpec | None = Field(
        default=None, description="Approved template; used when the 24 h window is closed"
    )
    email: EmailSpec | None = None

    @property
    def content_kinds(self) -> list[str]:
        """The kinds of content given besides text and template (one, once valid)."""
        given = (
            ("media", self.media),
            ("buttons", self.buttons),
            ("list", self.list_),
            ("location", self.location),
            ("email", self.email),
        )
        return [kind for kind, value in given if value is not None]

    @property
    def kind(self) -> str:
        """What this send is: media, buttons, list, location or email; else text; else
        (an approved template and nothing else) template."""
        kinds = self.content_kinds
        return kinds[0] if kinds else ("text" if self.text is not None else "template")

    @model_validator(mode="after")
    def _has_content(self) -> SendSpec:
        kinds = self.content_kinds
        if len(kinds) > 1:
            raise ValueError(
                f"a send has one kind of content, but this one has {' and '.join(kinds)}; "
                "split it into two steps"
            )
        if not kinds and self.text is None and self.template is None:
            raise ValueError(
                "`send` has nothing to send; give it text, media, buttons, list, location, "
                "template or email"
            )
        if (self.buttons is not None or self.list_ is not None) and self.text is None:
            raise ValueError("`buttons` and `list` need `text:` for the message body")
        return self


# ------------------------------------------------------------------ rules


class InactivityRule(_Model):
    """Wait until the contact has been quiet this long; `otherwise: skip` skips instead."""

    for_: Duration = Field(alias="for")
    otherwise: Literal["defer", "skip"] = "defer"


class QuietHoursRule(_Model):
    """No sends inside `range` (local time) on `days` (every day when unset); a range
    across midnight belongs to the day it starts on."""

    range: TimeRange
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None


class Rules(_Model):
    """Contact-context rules; a step's override `defaults.rules` (`null` turns one off)."""

    window: Literal["template", "skip", "ignore"] | None = Field(
        default=None, description="24 h window closed: send the template, skip, or ignore"
    )
    window_margin: Duration | None = Field(
        default=None, description="Treat the window as closed this long before it really closes"
    )
    inactivity: Duration | InactivityRule | None = Field(
        default=None, description="The contact talked to the bot less than this ago: defer"
    )
    recent_contact: Duration | None = Field(
        default=None, description="Any outbound to the contact less than this ago: skip"
    )
    in_attendance: Literal["skip", "defer", "send"] | None = Field(
        default=None, description="What to do while a live agent attends the contact"
    )
    quiet_hours: TimeRange | QuietHoursRule | None = Field(
        default=None, description="Local time range with no sends; deferred to its end"
    )
    max_per_day: (
        Annotated[
            int, Field(ge=1), _no_booleans("a number of messages; write a whole number like 2")
        ]
        | None
    ) = Field(default=None, description="Outbound messages per contact per local day")
    timezone: str | None = Field(default=None, description="IANA zone, e.g. America/Sao_Paulo")
    valid_for: Duration | None = Field(
        default=None,
        description=(
            "A message not sent this long after its step began fails (reason expired): "
            "no late sends after an outage, a deferral or a backlog"
        ),
    )

    def merged_over(self, base: Rules | None) -> Rules:
        """These rules over ``base``; a field set to ``null`` turns ``base``'s rule off."""
        if base is None:
            return self
        data = base.model_dump(by_alias=True, exclude_none=True)
        data.update(self.model_dump(by_alias=True, exclude_unset=True))
        return Rules.model_validate(data)


# ------------------------------------------------------------------ steps


class WaitFor(_Model):
    """Wait for an event, at most `up_to`."""

    for_: Literal["reply", "read", "delivered", "event"] = Field(alias="for")
    up_to: Duration | None = None


class BranchCase(_Model):
    """`- when: expression` + `goto: step`, or a final `- else: step`."""

    when: Expression | None = None
    goto: StepRef | None = None
    else_: StepRef | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _shape(self) -> BranchCase:
        if self.else_ is not None:
            if self.when is not None or self.goto is not None:
                raise ValueError("an `else` case stands alone, like `- else: step_id`")
        elif self.when is None or self.goto is None:
            raise ValueError("a branch case needs both `when:` and `goto:` (or is `- else:`)")
        return self


class HandoffSpec(_Model):
    """Mark the contact as attended by a live agent."""

    attendant: str | None = None
    until: Duration | None = None


class Timeout(_Model):
    """Go to `goto` when nothing moved the run within `after`."""

    after: Duration
    goto: StepRef


class Step(_Model):
    """One step: exactly one of send, wait, branch, set, handoff or end."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": [kind]} for kind in STEP_KINDS]}
    )

    send: SendSpec | None = Field(default=None, description="Send a message")
    wait: Duration | WaitFor | None = Field(
        default=None, description="Wait a duration (1h) or for an event ({for: reply, up_to: 24h})"
    )
    branch: list[BranchCase] | None = Field(
        default=None, description="Go to the first case whose `when:` is true, else `else:`"
    )
    set_: dict[Annotated[str, Field(pattern=SET_KEY)], Any] | None = Field(
        default=None, alias="set", description="Write contact context: {context.nps_nota: 10}"
    )
    handoff: HandoffSpec | None = Field(default=None, description="Hand over to a live agent")
    end: Literal["completed", "cancelled", "failed"] | None = Field(
        default=None, description="Finish the run with this status"
    )
    rules: Rules | None = None
    on: dict[EventKey, StepRef] | None = Field(
        default=None, description="Where each event goes: {button.pagar: pagamento, read: fim}"
    )
    timeout: Timeout | None = None
    next: StepRef | None = Field(default=None, description="The step after this one")
    description: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, _KIND_ATTR.get(k, k)) is not None]
        if not kinds:
            raise ValueError(
                "this step does nothing; give it one of send, wait, branch, set, handoff or end"
            )
        if len(kinds) > 1:
            raise ValueError(
                f"a step does one thing, but this one has {' and '.join(kinds)}; "
                "split it into steps linked with `next:`"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, _KIND_ATTR.get(k, k)) is not None)


# ------------------------------------------------------------------ triggers


def _empty_mapping(value: Any) -> Any:
    return {} if value is None else value


class ApiTrigger(_Model):
    """`- api: {}`: started by `POST /v1/runs`."""

    # A bare `- api:` is an empty mapping.
    api: Annotated[
        dict[str, Any],
        BeforeValidator(_empty_mapping),
        WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "null"}]}),
    ]


class CronTrigger(_Model):
    """At each fire time, start a run for every contact matching `audience`."""

    cron: str = Field(description="Five-field cron expression in the flow's timezone")
    audience: Expression | None = None
    misfire_grace: Duration | None = None


class AfterTrigger(_Model):
    """Re-engagement: start a run `after` this long `since` a contact timestamp."""

    after: Duration
    since: str = Field(pattern=SINCE, description="The timestamp to count from")
    unless: Expression | None = None


class EventTrigger(_Model):
    """An inbound reply matching `keyword` or `regex` starts the flow."""

    event: Literal["reply"]
    keyword: str | list[str] | None = None
    regex: str | None = None


Trigger = ApiTrigger | CronTrigger | AfterTrigger | EventTrigger


def _api_only() -> list[Trigger]:
    return [ApiTrigger(api={})]


class Defaults(_Model):
    """What every step uses unless it says otherwise."""

    provider: str | None = None
    channel: Literal["whatsapp", "sms", "email"] | None = None
    rules: Rules | None = None


class Flow(_Model):
    """A disparo flow file (flows/*.yaml)."""

    flow: str = Field(pattern=STEP_ID, description="The flow's name, unique across flows/")
    description: str | None = None
    timezone: str | None = None
    concurrency: Literal["one", "many"] = "one"
    defaults: Defaults = Field(default_factory=Defaults)
    triggers: list[Trigger] = Field(
        default_factory=_api_only,
        description="What starts a run (default: the API only)",
    )
    start: StepRef = Field(description="The first step")
    steps: dict[Annotated[str, Field(pattern=STEP_ID)], Step] = Field(
        min_length=1, description="The steps by id"
    )

    def rules_for(self, step_id: str) -> Rules:
        step = self.steps[step_id]
        base = self.defaults.rules or Rules()
        return step.rules.merged_over(base) if step.rules else base

    def provider_for(self, step_id: str) -> str | None:
        send = self.steps[step_id].send
        return (send.provider if send else None) or self.defaults.provider

    def channel_for(self, step_id: str) -> str:
        send = self.steps[step_id].send
        return (send.channel if send else None) or self.defaults.channel or "whatsapp"

    def successors(self, step_id: str) -> list[tuple[str, str]]:
        """(label, target) for every edge leaving a step, in file order."""
        step = self.steps[step_id]
        out: list[tuple[str, str]] = []
        for case in step.branch or []:
            if case.else_:
                out.append(("else", case.else_))
            elif case.goto:
                out.append((case.when or "", case.goto))
        out.extend((event, target) for event, target in (step.on or {}).items())
        if step.timeout:
            out.append((f"timeout {step.timeout.after}", step.timeout.goto))
        if step.next:
            out.append(("next", step.next))
        return out
