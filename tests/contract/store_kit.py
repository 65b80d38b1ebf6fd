"""What the Store contract tests build on: a fixed clock, fresh databases, seed rows.

Time is fixed (``NOW``); nothing here reads the wall clock. Rows are created
through the Store protocol only, so every backend is seeded the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.models import (
    Contact,
    ContactUpsert,
    DueKind,
    DueWork,
    MessageStatus,
    NewDueWork,
    Run,
    RunStatus,
)
from storage.base import Commit, MessageChange, NewMessage, NewRun, RunChange, Store
from storage.sqlite import SQLiteStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def at(seconds: float = 0) -> datetime:
    """``NOW`` shifted by ``seconds``."""
    return NOW + timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Database:
    """One fresh database of one backend; ``new_store`` gives an unopened store on it."""

    backend: str
    dsn: str

    def new_store(self) -> Store:
        if self.backend == "sqlite":
            return SQLiteStore(self.dsn)
        from storage.postgres import (  # type: ignore[import-not-found,unused-ignore]
            PostgresStore,
        )

        store: Store = PostgresStore(self.dsn)
        return store


def ended(run: Run, status: RunStatus = RunStatus.COMPLETED) -> RunChange:
    """The change that ends ``run`` as last read (its version), at no step."""
    return RunChange(
        run_id=run.id,
        expected_version=run.version,
        step=None,
        status=status,
        step_seq=run.step_seq,
    )


class Seed:
    """Builds the rows a contract test starts from, through the Store protocol only."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ids = itertools.count(1)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    async def contact(self, contact_id: str | None = None, **fields: Any) -> Contact:
        upsert = ContactUpsert(id=contact_id or self.new_id("c"), **fields)
        return await self.store.upsert_contact(upsert, NOW)

    async def run(
        self,
        contact_id: str | None = None,
        *,
        flow: str = "cobranca",
        status: RunStatus = RunStatus.WAITING,
        exclusive: bool = True,
        when: datetime = NOW,
        version: str = "v1",
    ) -> Run:
        if contact_id is None:
            contact_id = (await self.contact()).id
        run_id = self.new_id("r")
        result = await self.store.commit(
            Commit(
                now=when,
                new_run=NewRun(
                    id=run_id,
                    flow=flow,
                    flow_version=version,
                    contact_id=contact_id,
                    step="lembrete",
                    status=status,
                    idempotency_key=f"key-{run_id}",
                    exclusive=exclusive,
                ),
            )
        )
        assert result.run is not None
        return result.run

    async def message(
        self,
        run: Run,
        *,
        provider: str = "sandbox",
        status: MessageStatus | None = None,
        provider_message_id: str | None = None,
        when: datetime = NOW,
    ) -> str:
        message_id = self.new_id("m")
        await self.store.commit(
            Commit(
                now=when,
                new_messages=[
                    NewMessage(
                        id=message_id,
                        run_id=run.id,
                        contact_id=run.contact_id,
                        flow=run.flow,
                        step="lembrete",
                        step_seq=1,
                        provider=provider,
                        channel="whatsapp",
                        idempotency_key=f"{run.id}:{message_id}",
                    )
                ],
            )
        )
        if status is not None or provider_message_id is not None:
            await self.store.commit(
                Commit(
                    now=when,
                    messages=[
                        MessageChange(
                            message_id=message_id,
                            at=when,
                            status=status,
                            force=True,
                            provider_message_id=provider_message_id,
                        )
                    ],
                )
            )
        return message_id

    async def due(
        self,
        kind: DueKind = DueKind.TIMER,
        *,
        due_at: datetime = NOW,
        run_id: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        await self.store.commit(
            Commit(
                now=NOW,
                new_due=[
                    NewDueWork(kind=kind, due_at=due_at, run_id=run_id, payload=payload or {})
                ],
            )
        )

    async def claim_all(self, owner: str = "node-a", when: datetime = NOW) -> list[DueWork]:
        return await self.store.claim_due_work(owner=owner, now=when, lease_seconds=30, limit=1000)
