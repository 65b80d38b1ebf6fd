"""Contact erasure (``Store.erase_contact``): what both backends delete, and in what order.

A data subject's request to delete their data (LGPD art. 18, VI) must reach every
row disparo keeps about them: the contact, its runs (open or finished), their
messages (rendered payloads included), the events of the contact and of its runs,
the due work of those runs and messages (timers, sends, queued reports) and the
status reports kept for those messages' keys. The statements run in one
transaction, children before parents, so the foreign keys hold at every step.

A contact that opted out keeps a bare row unless the caller says otherwise: its id
and the time of the opt-out, nothing else. Without it the next campaign over an
audience that still lists the person would message them again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Erased:
    """What one ``Store.erase_contact`` deleted, by table."""

    runs: int = 0
    messages: int = 0
    events: int = 0
    due_work: int = 0
    pending_statuses: int = 0
    # The contact had opted out and a bare row (id and opt-out) was kept.
    opt_out_kept: bool = False


# The deletes of an erasure (``erase_statements``' names), in the order they run:
# rows that name others first, so every foreign key holds at each step. The
# contact's own row goes last, deleted or kept bare (``keep_opt_out``).
DELETES = (
    "due_of_messages",
    "due_of_runs",
    "pending_statuses",
    "run_events",
    "contact_events",
    "messages",
    "runs",
)


def erase_statements(contact: str, now: str) -> dict[str, str]:
    """The statements of an erasure, in the order they run, with the placeholders of
    the contact id (``contact``) and of the current time (``now``) of the backend."""
    runs = f"SELECT id FROM runs WHERE contact_id = {contact}"
    messages = (
        "SELECT m.{column} FROM messages AS m JOIN runs AS r ON r.id = m.run_id "
        f"WHERE r.contact_id = {contact}"
    )
    return {
        "due_of_messages": (
            f"DELETE FROM due_work WHERE message_id IN ({messages.format(column='id')})"
        ),
        "due_of_runs": f"DELETE FROM due_work WHERE run_id IN ({runs})",
        "pending_statuses": (
            "DELETE FROM pending_statuses WHERE idempotency_key IN "
            f"({messages.format(column='idempotency_key')})"
        ),
        "run_events": f"DELETE FROM events WHERE run_id IN ({runs})",
        "contact_events": f"DELETE FROM events WHERE contact_id = {contact}",
        "messages": f"DELETE FROM messages WHERE run_id IN ({runs})",
        "runs": f"DELETE FROM runs WHERE contact_id = {contact}",
        "contact": f"DELETE FROM contacts WHERE id = {contact}",
        # Everything but the id and the opt-out facts; the row stays so it holds.
        "keep_opt_out": (
            "UPDATE contacts SET phone = NULL, email = NULL, name = NULL, tags = '[]', "
            "context = '{}', timezone = NULL, last_inbound_at = NULL, "
            "last_interaction_at = NULL, last_outbound_at = NULL, attendant = NULL, "
            "attendance_since = NULL, attendance_until = NULL, attendance_changed_at = NULL, "
            f"updated_at = {now} WHERE id = {contact}"
        ),
    }


def tally(counts: dict[str, int], *, opt_out_kept: bool) -> Erased:
    """``Erased`` from the row counts of ``erase_statements``' deletes, by name."""
    return Erased(
        runs=counts["runs"],
        messages=counts["messages"],
        events=counts["run_events"] + counts["contact_events"],
        due_work=counts["due_of_messages"] + counts["due_of_runs"],
        pending_statuses=counts["pending_statuses"],
        opt_out_kept=opt_out_kept,
    )
