"""State providers share, on SQLite: rate budgets and renewable credentials.

Each verb is one write unit of the group commit (``storage.sqlite_batch``): it runs
inside the batch's ``BEGIN IMMEDIATE`` transaction, so the row it reads cannot change
before it writes, even with other processes on the same file; the decision itself is
``storage.provider_state``'s. ``ProviderStateMethods`` gives ``SQLiteStore`` these
verbs of the Store protocol.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from engine.shared_state import CredentialRenewal, ProviderCredential, RateSlot
from storage.provider_state import (
    CredentialRow,
    check_budget,
    check_name,
    check_renewal,
    check_value,
    check_vendor_limit,
    check_version,
    credential_of,
    decide_renewal,
    later_pause,
    take_slot,
)
from storage.sqlite_batch import GroupCommitConnection
from storage.sqlite_codec import dumps, loads, to_us

_CREDENTIAL = (
    "SELECT value, version, renewing_by, renewing_until FROM provider_credentials WHERE name = ?"
)


class ProviderStateMethods:
    """The shared-state verbs of ``storage.base.Store`` on the store's one connection."""

    def _ready(self) -> GroupCommitConnection:
        raise NotImplementedError  # SQLiteStore provides the open connection

    async def take_rate_slot(
        self, budget: str, *, limit: int, window: timedelta, now: datetime
    ) -> RateSlot:
        """Take one slot of ``budget`` at ``now``, or say when one frees (see the protocol)."""
        check_budget(budget, limit, window)
        stamp = to_us(now)

        def unit(db: sqlite3.Connection) -> RateSlot:
            db.execute(
                "INSERT INTO rate_budgets (name, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (budget, stamp),
            )
            starts, vendor_limit, paused_until = db.execute(
                "SELECT starts, vendor_limit, paused_until FROM rate_budgets WHERE name = ?",
                (budget,),
            ).fetchone()
            taken = take_slot(
                loads(starts),
                limit=limit,
                vendor_limit=vendor_limit,
                paused_until=paused_until,
                window=window,
                now=now,
            )
            if taken.starts is not None:
                db.execute(
                    "UPDATE rate_budgets SET starts = ?, updated_at = ? WHERE name = ?",
                    (dumps(taken.starts), stamp, budget),
                )
            return taken.slot

        return await self._ready().write(unit)

    async def restrict_rate_budget(
        self,
        budget: str,
        *,
        now: datetime,
        paused_until: datetime | None = None,
        vendor_limit: int | None = None,
    ) -> None:
        """Pause ``budget`` and/or store the vendor's limit (see the protocol)."""
        check_name("rate budget", budget)
        check_vendor_limit(budget, vendor_limit)
        stamp = to_us(now)

        def unit(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO rate_budgets (name, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (budget, stamp),
            )
            row = db.execute(
                "SELECT vendor_limit, paused_until FROM rate_budgets WHERE name = ?", (budget,)
            ).fetchone()
            db.execute(
                "UPDATE rate_budgets SET vendor_limit = ?, paused_until = ?, updated_at = ? "
                "WHERE name = ?",
                (
                    row[0] if vendor_limit is None else vendor_limit,
                    later_pause(row[1], paused_until),
                    stamp,
                    budget,
                ),
            )

        await self._ready().write(unit)

    async def get_provider_credential(self, name: str) -> ProviderCredential | None:
        """The stored value of ``name`` and its version; None before the first."""
        check_name("credential", name)
        link = self._ready()
        return credential_of(link.read(_credential_row, link.db, name))

    async def claim_credential_renewal(
        self, name: str, *, stale_version: int, owner: str, now: datetime, lease: timedelta
    ) -> CredentialRenewal:
        """Claim the renewal of ``name``, or say who has a newer value or the claim."""
        check_renewal(name, stale_version, owner, lease)
        stamp = to_us(now)

        def unit(db: sqlite3.Connection) -> CredentialRenewal:
            db.execute(
                "INSERT INTO provider_credentials (name, updated_at) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                (name, stamp),
            )
            row = _credential_row(db, name)
            assert row is not None
            renewal = decide_renewal(
                row, stale_version=stale_version, owner=owner, now=now, lease=lease
            )
            if renewal.claimed:
                db.execute(
                    "UPDATE provider_credentials SET renewing_by = ?, renewing_until = ?, "
                    "updated_at = ? WHERE name = ?",
                    (owner, to_us(now + lease), stamp, name),
                )
            return renewal

        return await self._ready().write(unit)

    async def store_renewed_credential(
        self, name: str, *, value: str, replaces_version: int, owner: str, now: datetime
    ) -> ProviderCredential | None:
        """Compare-and-set the new value over ``replaces_version`` (see the protocol)."""
        check_version(name, replaces_version, owner)
        check_value(name, value)
        stamp = to_us(now)

        def unit(db: sqlite3.Connection) -> ProviderCredential | None:
            if replaces_version == 0:
                db.execute(
                    "INSERT INTO provider_credentials (name, updated_at) VALUES (?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (name, stamp),
                )
            found = db.execute(
                "UPDATE provider_credentials SET value = ?, version = version + 1, "
                "renewing_by = NULL, renewing_until = NULL, updated_at = ? "
                "WHERE name = ? AND version = ? RETURNING version",
                (value, stamp, name, replaces_version),
            ).fetchone()
            return None if found is None else ProviderCredential(value=value, version=found[0])

        return await self._ready().write(unit)

    async def release_credential_renewal(self, name: str, *, owner: str) -> None:
        """End ``owner``'s claim on ``name`` (its renewal failed)."""
        check_name("credential", name)
        await self._ready().write(
            lambda db: db.execute(
                "UPDATE provider_credentials SET renewing_by = NULL, renewing_until = NULL "
                "WHERE name = ? AND renewing_by = ?",
                (name, owner),
            )
        )


def _credential_row(db: sqlite3.Connection, name: str) -> CredentialRow | None:
    row = db.execute(_CREDENTIAL, (name,)).fetchone()
    if row is None:
        return None
    return CredentialRow(value=row[0], version=row[1], renewing_by=row[2], renewing_until=row[3])
