"""Erasing a contact on request: ``DELETE /v1/contacts/{id}`` and ``disparo erase``.

A person may ask a company to delete the data it holds about them (LGPD art. 18,
VI; GDPR art. 17). The store deletes the contact, its runs, messages, events and
due work in one transaction (``Store.erase_contact``); a send of theirs that is on
the wire at that moment may still reach them, but its outcome is not recorded
(the worker's fence fails). A send of theirs this process holds that has not left
(waiting for a provider's connection or rate slot) is withdrawn; one that another
engine process holds the same way may still leave.

An opted-out contact keeps a bare row (its id and the opt-out) unless the caller
asks to forget the opt-out too: erasing must not undo "stop messaging me".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from engine.errors import NotFound
from storage.base import Erased

if TYPE_CHECKING:
    from engine.runtime import Engine

log = logging.getLogger("disparo.erasure")


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
    # After the commit: a send withdrawn earlier would be given back to the queue
    # and could be claimed again before the erasure.
    withdrawn = engine.dispatcher.sender.withdraw_contact(contact_id)
    if withdrawn:
        log.info("withdrew %d send(s) of contact %s that had not left", withdrawn, contact_id)
    engine.metrics.erased.inc()
    log.info("erased contact %s (asked through %s): %s", contact_id, source, erased.summary())
    return erased


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
