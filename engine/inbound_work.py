"""Applying a contact event (an INBOUND due-work row) to one open run of the contact.

The event becomes run events (``engine.step_events``); a reply naming a button or
list row the run showed becomes that tap (``engine.typed_choice``); a tap on another
run's message is ignored here with the reason (``engine.answer_owner``); an ended
attendance releases the sends it held (``engine.attendance_end``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.answer_owner import answered_elsewhere
from engine.attendance_end import wake_held_sends
from engine.models import DueWork, NewEvent
from engine.step_events import inbound_step_events
from engine.typed_choice import as_tap

if TYPE_CHECKING:
    from engine.dispatcher import Dispatcher


async def apply_inbound(d: Dispatcher, work: DueWork) -> None:
    assert work.run_id is not None  # INBOUND work is queued per open run
    events = inbound_step_events(work.payload, d.settings.opt_out_keywords)
    events = await as_tap(d.store, work.run_id, events)
    contact_id = str(work.payload.get("contact_id"))
    other = await answered_elsewhere(d.store, work.run_id, contact_id, events)
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
