"""A run's messages on PostgreSQL: all of them (``Store.list_run_messages``) or only
the ``queued`` ones (``Store.list_queued_run_messages``), oldest first, and whether
one has a status (``Store.run_has_message_in``), through the ``messages_run`` index."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from engine.models import Message, MessageStatus
from storage.columns import MESSAGE_COLUMNS
from storage.postgres_codec import message_from_row

_RUN_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = $1"
_ORDER = " ORDER BY created_at, seq"
_ANY_IN = (
    "SELECT 1 FROM messages WHERE run_id = $1 AND id <> $2 AND status = ANY($3::text[]) LIMIT 1"
)


class RunMessageMethods:
    """``Store.list_run_messages``, ``Store.list_queued_run_messages`` and
    ``Store.run_has_message_in``; ``PostgresStore`` provides the reads."""

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def run_has_message_in(
        self, run_id: str, statuses: Collection[MessageStatus], *, besides: str
    ) -> bool:
        wanted = [str(status) for status in statuses]
        return await self._fetchrow(_ANY_IN, run_id, besides, wanted) is not None

    async def list_run_messages(self, run_id: str) -> list[Message]:
        """The run's messages, oldest first."""
        rows = await self._fetch(_RUN_MESSAGES + _ORDER, run_id)
        return [message_from_row(row) for row in rows]

    async def list_queued_run_messages(self, run_id: str) -> list[Message]:
        rows = await self._fetch(_RUN_MESSAGES + " AND status = 'queued'" + _ORDER, run_id)
        return [message_from_row(row) for row in rows]
