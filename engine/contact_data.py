"""A person's data on request: a copy (``GET /v1/contacts/{id}/export``, ``disparo
export``) and its erasure (``DELETE /v1/contacts/{id}``, ``disparo erase``).

A person may ask a company for a copy of the data it holds about them (LGPD art.
18, II and V; GDPR art. 15 and 20): the export is every field of the contact,
every run kept (messages with the texts that were sent, and the run's history) and
the contact's own events (replies, opt-outs, attendance), as one JSON document.

They may also ask the company to delete it (LGPD art. 18, VI; GDPR art. 17). The
store deletes the contact, its runs, messages, events and due work in one
transaction (``Store.erase_contact``); a send of theirs that is on the wire at
that moment may still reach them, but its outcome is not recorded (the worker's
fence fails). A send of theirs that any process holds and that has not left
(waiting for a provider's connection or rate slot) finds its message gone when
its wait ends (``Departure.still_wanted``) and is not made.

An opted-out contact keeps a bare row (its id and the opt-out) unless the caller
asks to forget the opt-out too: erasing must not undo "stop messaging me".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from engine.api_views import ALL_EVENTS, contact_view, event_view, run_view
from engine.errors import NotFound
from engine.wording import counted
from storage.base import Erased

if TYPE_CHECKING:
    from engine.runtime import Engine

log = logging.getLogger("disparo.contact_data")


async def export_contact(engine: Engine, contact_id: str, *, source: str) -> dict[str, Any]:
    """Everything kept about ``contact_id`` as one JSON-ready document (see the
    module); ``NotFound`` when no such contact is stored. Logged, as every read of
    a whole person's data should be; ``source`` says how it was asked."""
    store = engine.store
    contact = await engine.get_contact(contact_id)
    runs = []
    messages = 0
    for run in await store.list_contact_runs(contact_id):
        sent = await store.list_run_messages(run.id)
        history = await store.list_events(run_id=run.id, limit=ALL_EVENTS)
        runs.append(run_view(run, history, sent))
        messages += len(sent)
    own = await store.list_events(contact_id=contact_id, limit=ALL_EVENTS)
    events = [event_view(e) for e in reversed(own) if e.run_id is None]  # oldest first
    log.info(
        "exported the data of contact %s (asked through %s): %s, %s, %s of no run",
        contact_id,
        source,
        counted(len(runs), "run"),
        counted(messages, "message"),
        counted(len(events), "event"),
    )
    return {
        "exported_at": engine.clock.now().isoformat(),
        "contact": contact_view(contact),
        "runs": runs,
        "events": events,
    }


async def erase_contact(
    engine: Engine, contact_id: str, *, forget_opt_out: bool, source: str
) -> Erased:
    """Erase ``contact_id`` (see the module); ``NotFound`` when no such contact is
    stored. ``source`` says how it was asked, for the log line."""
    erased = await engine.store.erase_contact(
        contact_id, keep_opt_out=not forget_opt_out, now=engine.clock.now()
    )
    if erased is None:
        raise NotFound(f"contact {contact_id} does not exist (nothing to erase)")
    engine.metrics.erased.inc()
    log.info("erased contact %s (asked through %s): %s", contact_id, source, summary(erased))
    return erased


def summary(erased: Erased) -> str:
    """What an erasure deleted, in words ("1 run, 3 messages, ...")."""
    kept = "; its opt-out is kept" if erased.opt_out_kept else ""
    return (
        f"{counted(erased.runs, 'run')}, {counted(erased.messages, 'message')}, "
        f"{counted(erased.events, 'event')}, {counted(erased.due_work, 'due work', 'due work')}, "
        f"{counted(erased.pending_statuses, 'unmatched status report')}{kept}"
    )


def erased_view(contact_id: str, erased: Erased) -> dict[str, object]:
    """The API's answer to an erasure."""
    return {
        "contact_id": contact_id,
        "erased": {
            "runs": erased.runs,
            "messages": erased.messages,
            "events": erased.events,
            "due_work": erased.due_work,
            "pending_statuses": erased.pending_statuses,
        },
        "opt_out_kept": erased.opt_out_kept,
    }
