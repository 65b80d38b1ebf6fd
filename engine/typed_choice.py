"""A reply or tap that names a button or list row the run showed by its title is that tap.

Contacts often type what a button says instead of tapping it ("pagar agora" under
"Pagar agora"), and a client that shows no buttons leaves them no other way. Such a
reply is taken as ``button.<id>`` (``choice.<id>`` for a list row) of the latest
message of the run that showed buttons or a list, compared as opt-out keywords are
(case, accents, extra spaces and the punctuation, emoji or ``*bold*`` marks around
it ignored). So is a reply that is exactly a button's or row's id: Altu hands a tap
to its bot as the id in text ("the input that reaches the bot"), and the bot can
only pass it on as a reply. Any other text stays a ``reply``; the text goes with
the event either way.

Vendors report a tap in their own words: the id we gave the button, only its title
(what the contact saw), or an id of their own with the title as text; some report
a list row as a button. So a tap whose id the run never offered is matched the same
way by its ``button_id``, then by its ``text``, against the titles of that latest
menu; and a tap on an id of that menu takes the menu's kind (``choice.<id>`` for a
row reported as a button). A tap matching nothing stays as it came.

Out of the 24 h window a step's approved template goes instead of its buttons. The
template's quick-reply buttons carry no id disparo sent, so a tap on one comes by
its title: when the run's latest such message is a template, the titles are those
of the buttons or list of the step that sent it, as its flow version wrote them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.answer_owner import Option, StepOptions, offered_ids, payload_options, shown
from engine.models import Message
from engine.opt_out import normalise
from engine.runner import StepEvent
from storage.base import Store

_TAP_KINDS = ("button", "choice")


async def as_tap(
    store: Store,
    run_id: str,
    events: Sequence[StepEvent],
    step_options: StepOptions | None = None,
) -> list[StepEvent]:
    """``events`` with a reply or tap that names a button or row of the run by its
    title (or a row as a button) replaced by that tap."""
    if len(events) != 1:
        return list(events)
    event = events[0]
    kind, _, said = event.name.partition(".")
    if event.name != "reply" and kind not in _TAP_KINDS:
        return list(events)
    messages = [m for m in await store.list_run_messages(run_id) if shown(m)]
    menus = [
        m
        for m in messages
        if m.payload.get("buttons")
        or m.payload.get("sections")
        or (step_options is not None and m.payload.get("type") == "template")
    ]
    options: list[Option] = []
    for menu in sorted(menus, key=lambda m: (m.created_at, m.step_seq), reverse=True):
        if menu.payload.get("type") == "template" and step_options is not None:
            options = await step_options(menu)  # a template of a step without buttons: []
        else:
            options = payload_options(menu.payload)
        if options:
            break
    if not options:
        return list(events)
    text = event.data.get("text")
    if event.name == "reply":
        wanted = [text]
    else:
        for option_kind, option in options:
            if str(option.get("id")) == said:
                return [StepEvent(name=f"{option_kind}.{said}", data=event.data)]
        if said in _offered_by_run(messages):
            return list(events)  # an earlier message's button: it stays that button
        wanted = [said, text]
    for words in wanted:
        found = _by_title(options, words)
        if found is not None:
            return [StepEvent(name=found, data=event.data)]
    if event.name == "reply" and isinstance(text, str):
        # Altu hands a tap to its bot as the id in text; the bot passes it on as a reply.
        for option_kind, option in options:
            if str(option.get("id")) == text.strip():
                return [StepEvent(name=f"{option_kind}.{option.get('id')}", data=event.data)]
    return list(events)


def _offered_by_run(messages: Sequence[Message]) -> set[str]:
    return {tapped for m in messages for tapped in offered_ids(m.payload)}


def _by_title(options: Sequence[Option], words: Any) -> str | None:
    wanted = normalise(words) if isinstance(words, str) else ""
    if not wanted:
        return None
    for kind, option in options:
        if normalise(str(option.get("title", ""))) == wanted:
            return f"{kind}.{option.get('id')}"
    return None


async def typed_for_another_run(
    store: Store,
    run_id: str,
    contact_id: str,
    events: Sequence[StepEvent],
    step_options: StepOptions | None = None,
) -> str | None:
    """Why a reply this run took as words (``as_tap`` found none of its titles) is a
    tap of another open run of the contact: the title of a button or row of that
    run's latest menu. None when it is words for every run."""
    if len(events) != 1 or events[0].name != "reply":
        return None
    for other in await store.list_open_runs(contact_id):
        if other.id == run_id:
            continue
        (tap, *_) = await as_tap(store, other.id, events, step_options)
        if tap.name != "reply":
            return f"the reply is `{tap.name}` of run {other.id} ({other.flow}), not of this run"
    return None
