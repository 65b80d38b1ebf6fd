"""`event` triggers: an inbound reply matching `keyword:` or `regex:` starts a flow.

- ``keyword``: one word or a list; the *whole* message must be one of them, compared
  the way opt-out keywords are (case and accents ignored, surrounding spaces and
  punctuation stripped): "Promoção!" matches `keyword: promocao`.
- ``regex``: searched anywhere in the message as received, ignoring case; anchor it
  (``^...$``) to match the whole message. A reply over ``MAX_REGEX_TEXT`` characters
  is never searched: Python's ``re`` backtracks, and even ``[0-9]+x`` searched over a
  megabyte reply runs for hours on the event loop. A regex with a repeat inside a
  repeat (``(a+)+``), exponential on a crafted reply of a few dozen characters, is
  refused by ``nested_repeat`` (``disparo check`` and at load).
- A reply that is an opt-out keyword starts nothing.

Durability: ``Engine.ingest_contact_events`` stores the reply first, then starts the
runs, and only then returns (and the webhook or ``POST /v1/events`` is answered). If
the process dies in between, the caller got no 2xx and sends the event again: the
repeat is a duplicate for the log but still reaches this module, and the run key
``event:{flow}:{trigger}:{event}`` (the event's dedupe key, else a digest of
contact, time and text) starts it once. The new run does not receive the reply that
started it: the reply was queued to the runs open before it.
"""

from __future__ import annotations

import hashlib
import re
import re._constants as sre  # type: ignore[import-not-found]  # sre_parse is deprecated
import re._parser as sre_parse  # type: ignore[import-not-found]
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import NotFound
from engine.flow.model import EventTrigger, Flow
from engine.models import ContactEvent
from engine.opt_out import is_opt_out, normalise
from engine.triggers_start import TriggerContext, TriggerStart
from storage.base import IngestOutcome

# Outcomes of ingesting a reply that may start a flow (a duplicate is a retried
# delivery whose start may have been lost with the process that stored it).
_STARTING_OUTCOMES = frozenset({"queued", "duplicate"})
# A reply that starts a flow by regex is a short phrase; a quadratic search over
# this many characters stays around a millisecond.
MAX_REGEX_TEXT = 1_024


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundTrigger:
    flow: str
    index: int
    keywords: frozenset[str]
    pattern: re.Pattern[str] | None

    def matches(self, text: str) -> bool:
        if self.keywords and normalise(text) in self.keywords:
            return True
        if self.pattern is None or len(text) > MAX_REGEX_TEXT:
            return False
        return self.pattern.search(text) is not None


def nested_repeat(regex: str) -> bool:
    """Whether ``regex`` repeats a part that itself repeats a variable number of times
    (``(a+)+``, ``(\\w+\\s?)*``): backtracking tries every split of the text between
    them, exponential in the length of a reply crafted not to match. Possessive
    repeats and atomic groups (``(?:a+)++``, ``(?>a+)+``) never backtrack into."""
    return _repeats(sre_parse.parse(regex), inside=False)


def _repeats(items: Any, *, inside: bool) -> bool:
    for op, av in items:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, body = av
            if inside and high != low:
                return True
            if _repeats(body, inside=inside or high > 1):
                return True
        elif (
            (op is sre.SUBPATTERN and _repeats(av[3], inside=inside))
            or (op is sre.BRANCH and any(_repeats(b, inside=inside) for b in av[1]))
            or (op in (sre.ASSERT, sre.ASSERT_NOT) and _repeats(av[1], inside=inside))
        ):
            return True
    return False


def compile_trigger(flow: str, index: int, trigger: EventTrigger) -> InboundTrigger:
    """The matcher of one `event` trigger (``re.error`` for a regex that does not compile)."""
    words = trigger.keyword
    listed = [words] if isinstance(words, str) else list(words or [])
    pattern = None if trigger.regex is None else re.compile(trigger.regex, re.IGNORECASE)
    return InboundTrigger(
        flow=flow,
        index=index,
        keywords=frozenset(normalise(w) for w in listed if normalise(w)),
        pattern=pattern,
    )


def inbound_triggers(flows: Iterable[Flow]) -> list[InboundTrigger]:
    """Every `event` trigger of ``flows``, in flow and trigger order."""
    return [
        compile_trigger(flow.flow, index, trigger)
        for flow in flows
        for index, trigger in enumerate(flow.triggers)
        if isinstance(trigger, EventTrigger)
    ]


def event_run_key(flow: str, index: int, event: ContactEvent) -> str:
    """The idempotency key of the run a reply starts: the same for every delivery."""
    ref = event.dedupe_key
    if ref is None:
        raw = f"{event.contact_id}\x00{event.at.isoformat()}\x00{event.text}"
        ref = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:24]
    return f"event:{flow}:{index}:{ref}"


async def start_from_replies(
    ctx: TriggerContext,
    triggers: Sequence[InboundTrigger],
    events: Sequence[ContactEvent],
    outcomes: Sequence[IngestOutcome],
    opt_out_keywords: Sequence[str],
) -> int:
    """Start the flows whose `event` trigger a stored reply matches; return runs started."""
    wanted: dict[str, list[tuple[InboundTrigger, ContactEvent]]] = {}
    for event, outcome in zip(events, outcomes, strict=True):
        text = event.text
        if event.type != "reply" or not text or outcome not in _STARTING_OUTCOMES:
            continue
        if event.contact_id is None or is_opt_out(text, opt_out_keywords):
            continue
        for trigger in triggers:
            if trigger.matches(text):
                wanted.setdefault(trigger.flow, []).append((trigger, event))
    if not wanted:
        return 0
    ids = {event.contact_id for pairs in wanted.values() for _, event in pairs}
    contacts = await ctx.store.get_contacts([i for i in ids if i is not None])
    started = 0
    for flow_name, pairs in wanted.items():
        try:
            loaded = ctx.catalog.latest(flow_name)
        except NotFound:
            continue
        items = [
            TriggerStart(
                contact=contacts[event.contact_id],
                key=event_run_key(flow_name, trigger.index, event),
                data={"text": event.text},
            )
            for trigger, event in pairs
            if event.contact_id in contacts
        ]
        tally = await ctx.starter().start_many(loaded, "event", items)
        started += tally.started
    return started
