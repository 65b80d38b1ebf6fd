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
    ConfigDict,
    Field,
    model_validator,
)

from engine.flow.durations import parse_duration

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
EVENT_KEY = re.compile(
    r"^(sent|delivered|read|failed|reply|skipped|timeout|(button|choice)\.[^\s]+)$"
)
STEP_KINDS = ("send", "wait", "branch", "set", "handoff", "end")
_KIND_ATTR = {"set": "set_"}


def _duration(value: str | int | float) -> str | int | float:
    parse_duration(value)
    return value


Duration = Annotated[
    str | int | float,
    AfterValidator(_duration),
    Field(description="A duration: 30s, 10m, 2h, 1d, 1h30m (a bare number is seconds)"),
]
StepRef = Annotated[str, Field(pattern=STEP_ID, description="The id of a step in this flow")]
Expression = Annotated[
    str, Field(description="A Jinja expression over contact, context, run and now")
]


def to_timedelta(value: str | int | float) -> timedelta:
    return parse_duration(value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ------------------------------------------------------------------ content specs
# Every string is a Jinja template, rendered in the sandbox at send time.


class MediaSpec(_Model):
    kind: Literal["image", "video", "audio", "document", "sticker"] = "image"
    url: str | None = None
    base64: str | None = None
    filename: str | None = None
    caption: str | None = None
    mime_type: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MediaSpec:
        if (self.url is None) == (self.base64 is None):
            raise ValueError("media needs exactly one of `url` or `base64`")
        return self


class ButtonSpec(_Model):
    id: str
    title: str


class ListRowSpec(_Model):
    id: str
    title: str
    description: str | None = None


class ListSectionSpec(_Model):
    title: str | None = None
    rows: list[ListRowSpec] = Field(min_length=1)


class ListSpec(_Model):
    button: str = Field(description="Label of the button that opens the list (<= 20 chars)")
    sections: list[ListSectionSpec] = Field(min_length=1)


class LocationSpec(_Model):
    latitude: float | str
    longitude: float | str
    name: str | None = None
    address: str | None = None
    url: str | None = None


class TemplateSpec(_Model):
    name: str = Field(description="Template name, resolved per provider via config/templates.yaml")
    language: str | None = None
    params: dict[str, str] | list[str] = Field(default_factory=dict)
    header_media: MediaSpec | None = None


class EmailSpec(_Model):
    subject: str
    body: str
    html: bool = False


class SendSpec(_Model):
    channel: Literal["whatsapp", "sms", "email"] | None = None
    provider: str | None = Field(
        default=None, description="A provider instance named in config/disparo.yaml"
    )
    text: str | None = Field(default=None, description="Free text, or the body of buttons/list")
    header: str | None = None
    footer: str | None = None
    media: MediaSpec | None = None
    buttons: list[ButtonSpec] | None = None
    list_: ListSpec | None = Field(default=None, alias="list")
    location: LocationSpec | None = None
    template: TemplateSpec | None = Field(
        default=None, description="Approved template; used when the 24 h window is closed"
    )
    email: EmailSpec | None = None

    @model_validator(mode="after")
    def _has_content(self) -> SendSpec:
        kinds = [
            k
            for k, v in (
                ("media", self.media),
                ("buttons", self.buttons),
                ("list", self.list_),
                ("location", self.location),
                ("email", self.email),
            )
            if v is not None
        ]
        if len(kinds) > 1:
            raise ValueError(f"a send has one kind of content; found {', '.join(kinds)}")
        if not kinds and self.text is None and self.template is None:
            raise ValueError(
                "a send needs content: text, media, buttons, list, location, template or email"
            )
        if (self.buttons or self.list_) and self.text is None:
            raise ValueError("buttons and list need `text` for the message body")
        return self


# ------------------------------------------------------------------ rules


class InactivityRule(_Model):
    for_: Duration = Field(alias="for")
    otherwise: Literal["defer", "skip"] = "defer"


class QuietHoursRule(_Model):
    range: str = Field(pattern=r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None


class Rules(_Model):
    window: Literal["template", "skip", "ignore"] | None = Field(
        default=None, description="24 h window closed: send the template, skip, or ignore"
    )
    window_margin: Duration | None = Field(
        default=None, description="Treat the window as closed this long before it really closes"
    )
    inactivity: Duration | InactivityRule | None = None
    recent_contact: Duration | None = None
    in_attendance: Literal["skip", "defer", "send"] | None = None
    quiet_hours: Annotated[str, Field(pattern=r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$")] | QuietHoursRule | None = None
    max_per_day: int | None = Field(default=None, ge=1)
    timezone: str | None = None

    def merged_over(self, base: Rules | None) -> Rules:
        """These rules with unset fields taken from ``base``."""
        if base is None:
            return self
        data = base.model_dump(by_alias=True, exclude_none=True)
        data.update(self.model_dump(by_alias=True, exclude_none=True))
        return Rules.model_validate(data)


# ------------------------------------------------------------------ steps


class WaitFor(_Model):
    for_: Literal["reply", "read", "delivered", "event"] = Field(alias="for")
    up_to: Duration | None = None


class BranchCase(_Model):
    when: Expression | None = None
    goto: StepRef | None = None
    else_: StepRef | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _shape(self) -> BranchCase:
        if self.else_ is not None:
            if self.when is not None or self.goto is not None:
                raise ValueError("an `else` case stands alone: `- else: step_id`")
        elif self.when is None or self.goto is None:
            raise ValueError("a branch case needs `when:` and `goto:` (or `else:`)")
        return self


class HandoffSpec(_Model):
    attendant: str | None = None
    until: Duration | None = None


class Timeout(_Model):
    after: Duration
    goto: StepRef


class Step(_Model):
    send: SendSpec | None = None
    wait: Duration | WaitFor | None = None
    branch: list[BranchCase] | None = None
    set_: dict[str, Any] | None = Field(default=None, alias="set")
    handoff: HandoffSpec | None = None
    end: Literal["completed", "cancelled", "failed"] | None = None
    rules: Rules | None = None
    on: dict[str, StepRef] | None = None
    timeout: Timeout | None = None
    next: StepRef | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, _KIND_ATTR.get(k, k)) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(
                f"a step does exactly one of {', '.join(STEP_KINDS)}; found {found}"
            )
        for key in self.on or {}:
            if not EVENT_KEY.match(key):
                raise ValueError(
                    f"`on: {key}` is not an event; use sent, delivered, read, failed, reply, "
                    "skipped, timeout, button.<id> or choice.<id>"
                )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, _KIND_ATTR.get(k, k)) is not None)


# ------------------------------------------------------------------ triggers


class ApiTrigger(_Model):
    api: dict[str, Any] = Field(default_factory=dict)


class CronTrigger(_Model):
    cron: str = Field(description="Five-field cron expression in the flow's timezone")
    audience: Expression | None = None
    misfire_grace: Duration | None = None


class AfterTrigger(_Model):
    after: Duration
    since: str = Field(
        pattern=r"^(last_inbound|last_interaction|last_outbound|context\.[A-Za-z0-9_.]+)$"
    )
    unless: Expression | None = None


class EventTrigger(_Model):
    event: Literal["reply"] = "reply"
    keyword: str | list[str] | None = None
    regex: str | None = None


Trigger = ApiTrigger | CronTrigger | AfterTrigger | EventTrigger


class Defaults(_Model):
    provider: str | None = None
    channel: Literal["whatsapp", "sms", "email"] | None = None
    rules: Rules | None = None


class Flow(_Model):
    flow: str = Field(pattern=STEP_ID, description="The flow's name, unique across flows/")
    description: str | None = None
    timezone: str | None = None
    concurrency: Literal["one", "many"] = "one"
    defaults: Defaults = Field(default_factory=Defaults)
    triggers: list[Trigger] = Field(default_factory=lambda: [ApiTrigger()])
    start: StepRef
    steps: dict[Annotated[str, Field(pattern=STEP_ID)], Step] = Field(min_length=1)

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
