"""State providers share through the store: per-window rate budgets and renewable
credentials. The decisions here are pure; ``sqlite_provider_state`` and
``postgres_provider_state`` apply them to a row they hold locked, so every process
on one database sees one budget and one credential.

A rate budget is a sliding-window log: the start times (integer microseconds UTC,
ascending) of the requests that started in the last window, at most ``limit`` of
them. A request may start when fewer than ``limit`` started in ``(now - window,
now]`` and no pause the vendor asked for holds. A token bucket or GCRA would keep
one number instead of a list, but one that admits a burst of ``limit`` lets up to
``2 * limit - 1`` requests through in some window; a vendor that counts a sliding
window (Interflow's 429s) would refuse the excess, so the log is kept (8 bytes a
request, 8 KB at 1000/min).

A credential renewal is claimed with a lease: the first caller whose stale version
is still the stored one gets the claim and logs in; every other caller sees either
the newer value (use it) or the claim (wait until its holder stores the new value,
or until the lease ends if the holder died).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.shared_state import CredentialRenewal, ProviderCredential, RateSlot
from storage.sqlite_codec import from_us, to_us

NAME_MAX = 200
_MICROSECOND = timedelta(microseconds=1)


def check_name(kind: str, name: str) -> None:
    """``ValueError`` unless ``name`` can name a budget or a credential."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a {kind} needs a non-empty name")
    if len(name) > NAME_MAX:
        raise ValueError(f"a {kind} name has at most {NAME_MAX} characters, not {len(name)}")


def _whole(value: object, minimum: int) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_budget(budget: str, limit: int, window: timedelta) -> None:
    check_name("rate budget", budget)
    if not _whole(limit, 1):
        raise ValueError(
            f"rate budget {budget!r}: limit must be a whole number >= 1, not {limit!r}"
        )
    if window <= timedelta(0):
        raise ValueError(f"rate budget {budget!r}: the window must be longer than zero")


def check_vendor_limit(budget: str, vendor_limit: int | None) -> None:
    if vendor_limit is not None and not _whole(vendor_limit, 1):
        raise ValueError(
            f"rate budget {budget!r}: the vendor's limit must be a whole number >= 1, "
            f"not {vendor_limit!r}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TakenSlot:
    """What ``take_slot`` decided: the answer, and the log to store (None: unchanged)."""

    slot: RateSlot
    starts: list[int] | None


def take_slot(
    starts: Sequence[int],
    *,
    limit: int,
    vendor_limit: int | None,
    paused_until: int | None,
    window: timedelta,
    now: datetime,
) -> TakenSlot:
    """Take one slot at ``now`` if the budget has one; else say when the next frees."""
    now_us, window_us = to_us(now), window // _MICROSECOND
    in_force = min(limit, vendor_limit) if vendor_limit is not None else limit
    # A start after now means the clock was stepped back since: it happened just now,
    # so it holds its slot one window from now, not for the size of the step too.
    recent = sorted(min(s, now_us) for s in starts if min(s, now_us) > now_us - window_us)
    free_at = now_us
    if len(recent) >= in_force:
        free_at = recent[len(recent) - in_force] + window_us
    if paused_until is not None:
        free_at = max(free_at, paused_until)
    if free_at > now_us:
        return TakenSlot(
            slot=RateSlot(taken=False, free_at=from_us(free_at), limit=in_force),
            starts=recent if recent != list(starts) else None,
        )
    kept = [*recent, now_us][-limit:]
    return TakenSlot(slot=RateSlot(taken=True, free_at=now, limit=in_force), starts=kept)


def later_pause(stored: int | None, wanted: datetime | None) -> int | None:
    """A pause keeps the later of the stored end and the one asked for."""
    if wanted is None:
        return stored
    wanted_us = to_us(wanted)
    return wanted_us if stored is None else max(stored, wanted_us)


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialRow:
    """One stored credential: value (None until the first is stored), version, claim."""

    value: str | None
    version: int
    renewing_by: str | None
    renewing_until: int | None  # microseconds UTC


def check_version(name: str, version: int, owner: str) -> None:
    """``ValueError`` unless ``version`` is one a caller can have read (0: none)."""
    check_name("credential", name)
    if not _whole(version, 0):
        raise ValueError(
            f"credential {name!r}: a version is the one last read (0 for none), not {version!r}"
        )
    if not owner:
        raise ValueError(f"credential {name!r}: a renewal needs the name of its owner")


def check_renewal(name: str, stale_version: int, owner: str, lease: timedelta) -> None:
    check_version(name, stale_version, owner)
    if lease <= timedelta(0):
        raise ValueError(f"credential {name!r}: a renewal lease must be longer than zero")


def check_value(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        # The value itself is never named: it is a secret.
        raise ValueError(f"credential {name!r}: the new value must be a non-empty string")


def decide_renewal(
    row: CredentialRow, *, stale_version: int, owner: str, now: datetime, lease: timedelta
) -> CredentialRenewal:
    """``claimed`` (the caller renews), ``current`` (a newer value) or ``busy_until``.

    A claim ending more than ``lease`` after ``now`` was made before the host's clock
    was stepped back: it has lapsed, or every send would wait out the step too.
    """
    if row.value is not None and row.version > stale_version:
        return CredentialRenewal(
            current=ProviderCredential(value=row.value, version=row.version),
            stored_version=row.version,
        )
    held = row.renewing_by is not None and row.renewing_by != owner
    now_us = to_us(now)
    if (
        held
        and row.renewing_until is not None
        and now_us < row.renewing_until <= to_us(now + lease)
    ):
        return CredentialRenewal(busy_until=from_us(row.renewing_until), stored_version=row.version)
    return CredentialRenewal(claimed=True, stored_version=row.version)


def credential_of(row: CredentialRow | None) -> ProviderCredential | None:
    if row is None or row.value is None:
        return None
    return ProviderCredential(value=row.value, version=row.version)
