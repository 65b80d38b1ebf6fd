"""The time zone names disparo accepts: IANA's, as the ``tzdata`` package lists them.

``zoneinfo.ZoneInfo`` also loads whatever file the host has under that name, so
``localtime``, ``posixrules`` or ``right/America/Sao_Paulo`` load on one machine
and fail (or mean another zone) on the next: a flow, a config or a contact with
such a name would pass ``disparo check`` and then break where the engine runs.
Only the names of IANA's database are accepted, whatever the host holds; ``tzdata``
also gives every host (a slim container, Windows) the data when its own is missing.
"""

from __future__ import annotations

import logging
from functools import cache, lru_cache
from importlib import resources

log = logging.getLogger("disparo.zones")


@cache
def iana_zones() -> frozenset[str]:
    """Every IANA zone name, backward links (``Brazil/East``) included."""
    return frozenset(resources.files("tzdata").joinpath("zones").read_text("utf-8").split())


def is_iana_zone(name: str) -> bool:
    return name in iana_zones()


def stored_contact_zone(contact_id: str, name: str | None) -> str | None:
    """The zone a stored contact names, when it is an IANA name; None otherwise.

    A release before zones were limited to IANA names stored whatever the host had a
    file for (``localtime``, ``posix/...``): such a zone means another one, or none,
    on the host reading it now. The contact is read as naming no zone (the flow's,
    else the config's), the same on every host, and a warning says how to give it
    one. The store is never rewritten here: what the contact meant is the operator's
    to say.
    """
    if name is None or is_iana_zone(name):
        return name
    _warn_once(contact_id, name)
    return None


@lru_cache(maxsize=4096)
def _warn_once(contact_id: str, name: str) -> None:
    log.warning(
        "contact %s is stored with timezone %r, which is no IANA name (an earlier release "
        "took it): its rules use the flow's or the config's zone instead; PUT "
        "/v1/contacts/%s with its IANA timezone (e.g. America/Sao_Paulo) to give it one",
        contact_id,
        name,
        contact_id,
    )
