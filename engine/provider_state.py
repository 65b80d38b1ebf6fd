"""``StoreProviderState``: the engine's store as the state providers share.

Providers see ``providers.base.ProviderState`` (seconds and names); this turns it
into the Store's verbs with the engine's clock and the process's owner name, so
every ``disparo serve`` on one database takes from the same rate budgets and renews
each credential once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.clock import Clock
from engine.shared_state import CredentialRenewal, ProviderCredential, RateSlot
from storage.base import Store


class StoreProviderState:
    """``providers.base.ProviderState`` on ``store``; ``owner`` names this process."""

    def __init__(self, store: Store, clock: Clock, owner: str) -> None:
        self._store, self._clock, self._owner = store, clock, owner

    def now(self) -> datetime:
        return self._clock.now()

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep_until(self._clock.now() + timedelta(seconds=max(0.0, seconds)))

    async def take_rate_slot(self, budget: str, *, limit: int, window: float) -> RateSlot:
        return await self._store.take_rate_slot(
            budget, limit=limit, window=timedelta(seconds=window), now=self._clock.now()
        )

    async def restrict_rate_budget(
        self, budget: str, *, pause_for: float | None = None, vendor_limit: int | None = None
    ) -> None:
        now = self._clock.now()
        until = None if pause_for is None else now + timedelta(seconds=max(0.0, pause_for))
        await self._store.restrict_rate_budget(
            budget, now=now, paused_until=until, vendor_limit=vendor_limit
        )

    async def credential(self, name: str) -> ProviderCredential | None:
        return await self._store.get_provider_credential(name)

    async def claim_credential_renewal(
        self, name: str, *, stale_version: int, lease: float
    ) -> CredentialRenewal:
        return await self._store.claim_credential_renewal(
            name,
            stale_version=stale_version,
            owner=self._owner,
            now=self._clock.now(),
            lease=timedelta(seconds=lease),
        )

    async def store_renewed_credential(
        self, name: str, value: str, *, replaces_version: int
    ) -> ProviderCredential | None:
        return await self._store.store_renewed_credential(
            name,
            value=value,
            replaces_version=replaces_version,
            owner=self._owner,
            now=self._clock.now(),
        )

    async def release_credential_renewal(self, name: str) -> None:
        await self._store.release_credential_renewal(name, owner=self._owner)
