"""An opt-out a contact inherits from its phone: the person behind a number said stop
before this record of theirs existed.

Phones are not unique (a CRM holds two records of one person, a reply from an
unknown number gets a contact of its own). An opt-out by phone reaches every
contact that has the phone at that moment; a record created for the phone later
(the CRM imports the number again) would otherwise message someone who asked not
to be. So a send to a contact that has not opted out itself is skipped when
another contact with its phone opted out before it was created and still is. An
opt-out of one record by id does not reach records that existed already: the
API named that record. To message the number again, opt in the record named in the
decision (``opted_out_contact``).
"""

from __future__ import annotations

from engine.models import Contact
from storage.base import Store


async def phone_opted_out(store: Store, contact: Contact) -> Contact | None:
    """The earliest-opted-out other contact with ``contact``'s phone whose opt-out
    predates ``contact``; None when there is none (or ``contact`` opted out itself,
    or has no phone)."""
    if contact.opted_out_at is not None or not contact.phone or contact.created_at is None:
        return None
    # Earliest opt-out first; ``contact`` has not opted out, so it is not among them.
    earlier = await store.find_phone_opt_outs(contact.phone, contact.created_at)
    return next((other for other in earlier if other.id != contact.id), None)
