"""Applying a contact event (an INBOUND due-work row) to one open run of the contact.

The event becomes run events (``engine.step_events``); a reply naming a button or
list row the run showed becomes that tap (``engine.typed_choice``); a tap on another
run's message is ignored here with the reason (``engine.answer_owner``); an ended
attendance releases the sends it held (``engine.attendance_end``).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from engine.answer_owner import Option, StepOptions, answered_elsewhere
from engine.attendance_end import wake_held_sends
from engine.errors import FlowError, NotFound
from engine.models import DueWork, Message, NewEvent
from engine.step_events import inbound_step_events
from engine.typed_choice import as_tap, typed_for_another_run

if TYPE_CHECKING:
    from engine.dispatcher import Dispatcher


async def apply_inbound(d: Dispatcher, work: DueWork) -> None:
    assert work.run_id is not None  # INBOUND work is queued per open run
    events = inbound_step_events(work.payload, d.settings.opt_out_keywords)
    step_options = _once_per_step(partial(template_step_options, d))
    events = await as_tap(d.store, work.run_id, events, step_options)
    contact_id = str(work.payload.get("contact_id"))
    other = await answered_elsewhere(
        d.store, work.run_id, contact_id, events, step_options
    ) or await typed_for_another_run(d.store, work.run_id, contact_id, events, step_options)
    ended = work.payload.get("type") == "attendance_ended"
    if ended and await wake_held_sends(d.store, work.run_id, d.clock.now()):
        d.notify()
    if other is None:
        await d.apply_events(work, events)
        return
    ignored = NewEvent(
        kind="run.event_ignored", at=d.clock.now(), run_id=work.run_id, data={"reason": other}
    )
    await d.apply_events(work, [], extra_events=[ignored])


def _once_per_step(read: StepOptions) -> StepOptions:
    """``read`` once per (run, step) while one inbound item is judged: a tap checks
    every template message of the contact's runs, many of one run and step."""
    found: dict[tuple[str, str], list[Option]] = {}

    async def options(message: Message) -> list[Option]:
        key = (message.run_id, message.step)
        if key not in found:
            found[key] = await read(message)
        return found[key]

    return options


async def template_step_options(d: Dispatcher, message: Message) -> list[Option]:
    """The buttons and list rows of the step that sent ``message`` (a template in
    their place), as the run's flow version wrote them."""
    run = await d.store.get_run(message.run_id)
    if run is None:
        return []
    try:
        loaded = await d.catalog.pinned(run.flow, run.flow_version)
    except (NotFound, FlowError):
        # A version stored long ago that this engine no longer loads (a finished run's):
        # its template offers nothing rather than stopping the contact's taps.
        return []
    step = loaded.flow.steps.get(message.step)
    send = step.send if step is not None else None
    if send is None:
        return []
    options: list[Option] = [("button", {"id": b.id, "title": b.title}) for b in send.buttons or ()]
    for section in send.list_.sections if send.list_ is not None else ():
        options += [("choice", {"id": r.id, "title": r.title}) for r in section.rows]
    return options
