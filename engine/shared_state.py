"""What providers keep in the store and share across processes: per-window rate
slots and run-time credentials (a login token), with the answers the store gives.

Part of the kernel (with ``engine.models`` and ``engine.errors``): providers and
storage both import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RateSlot:
    """The answer to "may one more request of this per-window budget start now?"."""

    taken: bool  # True: the slot is the caller's; start the request
    free_at: datetime  # taken: the time it was taken at; else when the next slot frees
    limit: int  # the limit in force: the configured one, or a smaller one the vendor said


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderCredential:
    """A credential a provider obtained at run time (a login token), with its version.

    Version 1 is the first value ever stored; each renewal adds one. The value is a
    secret: kept out of ``repr`` (and so out of logs and tracebacks).
    """

    value: str = field(repr=False)
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialRenewal:
    """The answer to "may I renew this credential?": exactly one of the three holds.

    ``claimed``: the caller renews it, then stores the new value or releases the claim;
    ``current``: another caller already stored a newer value, use it;
    ``busy_until``: another caller is renewing it; ask again, at the latest then.
    """

    claimed: bool = False
    current: ProviderCredential | None = None
    busy_until: datetime | None = None
    stored_version: int = 0  # the version stored now (0: none); a claim's store replaces it
