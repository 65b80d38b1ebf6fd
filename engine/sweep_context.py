"""What one page of contacts gives a sweep of `since: context.<key>`: which contacts
came due in the window, which were written after they came due, and which hold a
value that is not a time.

A context key has no index: the sweep reads every contact, page by page, and reads
the key's value as a time the way the `date` filter does (``engine.context_time``).

- A timestamp in the window ``(watermark, cutoff]`` came due since the last sweep:
  its contact is started.
- A timestamp at or before the watermark was swept before, or was written after it
  came due (a bulk import of overdue boletos, a value written 30 s late). The second
  kind is told from the first by the contact's ``updated_at``: a contact changed
  since the last sweep began (``watermark + after``, less ``WRITE_SKEW``) is looked
  at again. It is started when its timestamp came due at most ``LATE_LIMIT`` before
  the sweep (counted ``late``); otherwise it is not (historic data is not blasted)
  and the first sweep after the write counts it ``too_old``. Looking again at a
  timestamp that was swept before starts nothing: its run key exists, and
  ``LATE_LIMIT`` is shorter than the shortest retention (``engine.settings.MIN_KEEP``),
  so that run is still stored.
- A value that is not a time (``amanhã``, ``true``, ``1e20``, the year 9999 past UTC)
  is counted as an error naming the contact and the key, and the sweep goes on with
  the others; null, a blank string or no value at all is no timestamp and no error.

Nothing here reads the store: paging costs what it did, one query per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.context_time import NotATime, utc_time
from engine.flow.model import Flow
from engine.models import Contact
from engine.scope import contact_timezone

CONTEXT = "context."
# How long after it came due a timestamp written late is still started. Under the
# shortest retention (two days), so the run of a timestamp swept before is still
# stored and its key still keeps it from starting twice.
LATE_LIMIT = timedelta(days=1)
# Engines' clocks and a write committing after its `now` was taken: a contact changed
# this long before the last sweep began is looked at again (its run key dedupes).
WRITE_SKEW = timedelta(minutes=5)


@dataclass(slots=True, kw_only=True)
class Page:
    """One chunk of a sweep: contacts read, candidates, what was left out and why."""

    read: int
    due: list[tuple[Contact, datetime]]  # timestamp in the window
    cursor: Any
    late: list[tuple[Contact, datetime]] = field(default_factory=list)  # written late
    too_old: int = 0  # written late, past LATE_LIMIT
    errors: int = 0  # the value is not a time
    first_error: str | None = None


def context_timestamp(contact: Contact, path: str, zone: ZoneInfo) -> datetime | None:
    """The UTC time stored at ``context.<path>`` of a contact, or None when there is
    none (no such key, null, blank text). ``NotATime`` when the value is not a time;
    naive times and dates are in ``zone``."""
    value: Any = contact.context
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return utc_time(value, zone)


def context_page(
    contacts: list[Contact],
    *,
    flow: Flow,
    since: str,
    default_timezone: str,
    watermark: datetime,
    cutoff: datetime,
    after: timedelta,
) -> Page:
    """Sort one page of contacts (by id) for a sweep of ``since`` (``context.<key>``)
    over ``(watermark, cutoff]`` (see the module docstring)."""
    path = since.removeprefix(CONTEXT)
    last_sweep = watermark + after  # when the last sweep began (or the trigger was made)
    changed_from = last_sweep - WRITE_SKEW
    oldest_late = cutoff - LATE_LIMIT
    page = Page(read=len(contacts), due=[], cursor=contacts[-1].id if contacts else None)
    for contact in contacts:
        zone = contact_timezone(contact, flow, default_timezone)
        try:
            stamp = context_timestamp(contact, path, zone)
        except NotATime as exc:
            page.errors += 1
            page.first_error = page.first_error or f"contact {contact.id}: {since}: {exc}"
            continue
        if stamp is None or stamp > cutoff:
            continue
        if stamp > watermark:
            page.due.append((contact, stamp))
        elif contact.updated_at is not None and contact.updated_at >= changed_from:
            if stamp > oldest_late:
                page.late.append((contact, stamp))
            elif contact.updated_at >= last_sweep:  # counted once, not once per WRITE_SKEW
                page.too_old += 1
    return page
