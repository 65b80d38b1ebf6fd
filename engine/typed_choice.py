"""A reply that is the title of a button or list row the run showed is that tap.

Contacts often type what a button says instead of tapping it ("pagar agora" under
"Pagar agora"), and a client that shows no buttons leaves them no other way. Such a
reply is taken as ``button.<id>`` (``choice.<id>`` for a list row) of the latest
message of the run that showed buttons or a list, compared as opt-out keywords are
(case, accents, extra spaces and the punctuation, emoji or ``*bold*`` marks around
it ignored). Any other text stays a ``reply``; the text goes with the event either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.answer_owner import shown
from engine.opt_out import normalise
from engine.runner import StepEvent
from storage.base import Store


async def as_tap(store: Store, run_id: str, events: Sequence[StepEvent]) -> list[StepEvent]:
    """``events`` with a reply that names a button or row of the run replaced by that tap."""
    if len(events) != 1 or events[0].name != "reply":
        return list(events)
    reply = events[0]
    text = reply.data.get("text")
    wanted = normalise(text) if isinstance(text, str) else ""
    if not wanted:
        return list(events)
    menus = [
        m
        for m in await store.list_run_messages(run_id)
        if shown(m) and (m.payload.get("buttons") or m.payload.get("sections"))
    ]
    if not menus:
        return list(events)
    payload = max(menus, key=lambda m: (m.created_at, m.step_seq)).payload
    options = [("button", b) for b in payload.get("buttons") or ()]
    options += [
        ("choice", row)
        for section in payload.get("sections") or ()
        for row in (section.get("rows") or () if isinstance(section, dict) else ())
    ]
    for kind, option in options:
        if isinstance(option, dict) and normalise(str(option.get("title", ""))) == wanted:
            return [StepEvent(name=f"{kind}.{option.get('id')}", data=reply.data)]
    return list(events)
