"""The time zone names disparo accepts: IANA's, as the ``tzdata`` package lists them.

``zoneinfo.ZoneInfo`` also loads whatever file the host has under that name, so
``localtime``, ``posixrules`` or ``right/America/Sao_Paulo`` load on one machine
and fail (or mean another zone) on the next: a flow, a config or a contact with
such a name would pass ``disparo check`` and then break where the engine runs.
Only the names of IANA's database are accepted, whatever the host holds; ``tzdata``
also gives every host (a slim container, Windows) the data when its own is missing.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def iana_zones() -> frozenset[str]:
    """Every IANA zone name, backward links (``Brazil/East``) included."""
    return frozenset(resources.files("tzdata").joinpath("zones").read_text("utf-8").split())


def is_iana_zone(name: str) -> bool:
    return name in iana_zones()
