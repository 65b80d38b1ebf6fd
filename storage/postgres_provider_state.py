"""State providers share, on PostgreSQL: rate budgets and renewable credentials,
one row per name for every process on the database.

Each verb is one short transaction on a pool connection: ``INSERT ... ON CONFLICT DO
NOTHING`` makes sure the row exists, ``SELECT ... FOR UPDATE`` locks it (a process
taking the same budget's slot, or claiming the same credential's renewal, waits
for the commit and then reads the row as it left it), ``storage.provider_state``
decides, and one ``UPDATE`` writes the decision. The compare-and-set of a renewed
credential is a single ``UPDATE ... WHERE version = $n``. ``ProviderStateMethods``
gives ``PostgresStore`` these verbs of the Store protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg

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
from storage.sqlite_codec import from_us_or_none, to_us_or_none

T = TypeVar("T")

_NEW_BUDGET = "INSERT INTO rate_budgets (name, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
_LOCK_BUDGET = (
    "SELECT starts, vendor_limit, paused_until FROM rate_budgets WHERE name = $1 FOR UPDATE"
)
_NEW_CREDENTIAL = (
    "INSERT INTO provider_credentials (name, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
)
_CREDENTIAL = (
    "SELECT value, version, renewing_by, renewing_until FROM provider_credentials WHERE name = $1"
)


class ProviderStateMethods:
    """The shared-state verbs of ``storage.base.Store``; ``PostgresStore`` provides I/O."""

    async def _in_transaction(self, work: Callable[[Any], Awaitable[T]]) -> T:
        raise NotImplementedError  # PostgresStore runs it in a transaction on its pool

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def take_rate_slot(
        self, budget: str, *, limit: int, window: timedelta, now: datetime
    ) -> RateSlot:
        """Take one slot of ``budget`` at ``now``, or say when one frees (see the protocol)."""
        check_budget(budget, limit, window)

        async def work(connection: Any) -> RateSlot:
            await connection.execute(_NEW_BUDGET, budget, now)
            row = await connection.fetchrow(_LOCK_BUDGET, budget)
            taken = take_slot(
                list(row["starts"]),
                limit=limit,
                vendor_limit=row["vendor_limit"],
                paused_until=to_us_or_none(row["paused_until"]),
                window=window,
                now=now,
            )
            if taken.starts is not None:
                await connection.execute(
                    "UPDATE rate_budgets SET starts = $2, updated_at = $3 WHERE name = $1",
                    budget,
                    taken.starts,
                    now,
                )
            return taken.slot

        return await self._in_transaction(work)

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

        async def work(connection: Any) -> None:
            await connection.execute(_NEW_BUDGET, budget, now)
            row = await connection.fetchrow(_LOCK_BUDGET, budget)
            pause = later_pause(to_us_or_none(row["paused_until"]), paused_until)
            await connection.execute(
                "UPDATE rate_budgets SET vendor_limit = $2, paused_until = $3, updated_at = $4 "
                "WHERE name = $1",
                budget,
                row["vendor_limit"] if vendor_limit is None else vendor_limit,
                from_us_or_none(pause),
                now,
            )

        await self._in_transaction(work)

    async def get_provider_credential(self, name: str) -> ProviderCredential | None:
        """The stored value of ``name`` and its version; None before the first."""
        check_name("credential", name)
        return credential_of(_credential_row(await self._fetchrow(_CREDENTIAL, name)))

    async def claim_credential_renewal(
        self, name: str, *, stale_version: int, owner: str, now: datetime, lease: timedelta
    ) -> CredentialRenewal:
        """Claim the renewal of ``name``, or say who has a newer value or the claim."""
        check_renewal(name, stale_version, owner, lease)

        async def work(connection: Any) -> CredentialRenewal:
            await connection.execute(_NEW_CREDENTIAL, name, now)
            row = _credential_row(await connection.fetchrow(f"{_CREDENTIAL} FOR UPDATE", name))
            assert row is not None
            renewal = decide_renewal(
                row, stale_version=stale_version, owner=owner, now=now, lease=lease
            )
            if renewal.claimed:
                await connection.execute(
                    "UPDATE provider_credentials SET renewing_by = $2, renewing_until = $3, "
                    "updated_at = $4 WHERE name = $1",
                    name,
                    owner,
                    now + lease,
                    now,
                )
            return renewal

        return await self._in_transaction(work)

    async def store_renewed_credential(
        self, name: str, *, value: str, replaces_version: int, owner: str, now: datetime
    ) -> ProviderCredential | None:
        """Compare-and-set the new value over ``replaces_version`` (see the protocol)."""
        check_version(name, replaces_version, owner)
        check_value(name, value)

        async def work(connection: Any) -> ProviderCredential | None:
            if replaces_version == 0:
                await connection.execute(_NEW_CREDENTIAL, name, now)
            version = await connection.fetchval(
                "UPDATE provider_credentials SET value = $2, version = version + 1, "
                "renewing_by = NULL, renewing_until = NULL, updated_at = $3 "
                "WHERE name = $1 AND version = $4 RETURNING version",
                name,
                value,
                now,
                replaces_version,
            )
            return None if version is None else ProviderCredential(value=value, version=version)

        return await self._in_transaction(work)

    async def release_credential_renewal(self, name: str, *, owner: str) -> None:
        """End ``owner``'s claim on ``name`` (its renewal failed)."""
        check_name("credential", name)

        async def work(connection: Any) -> None:
            await connection.execute(
                "UPDATE provider_credentials SET renewing_by = NULL, renewing_until = NULL "
                "WHERE name = $1 AND renewing_by = $2",
                name,
                owner,
            )

        await self._in_transaction(work)


def _credential_row(row: asyncpg.Record | None) -> CredentialRow | None:
    if row is None:
        return None
    return CredentialRow(
        value=row["value"],
        version=row["version"],
        renewing_by=row["renewing_by"],
        renewing_until=to_us_or_none(row["renewing_until"]),
    )
