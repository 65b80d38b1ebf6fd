"""A run's messages on PostgreSQL: all of them (``Store.list_run_messages``) or only
the ``queued`` ones (``Store.list_queued_run_messages``), oldest first, through the
``messages_run`` index."""

from __future__ import annotations

from typing import Any

from engine.models import Message
from storage.columns import MESSAGE_COLUMNS
from storage.postgres_codec import message_from_row

_RUN_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = $1"
_ORDER = " ORDER BY created_at, seq"


class RunMessageMethods:
    """``Store.list_run_messages`` and ``Store.list_queued_run_messages``;
    ``PostgresStore`` provides the read."""

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def list_run_messages(self, run_id: str) -> list[Message]:
        """The run's messages, oldest first."""
        rows = await self._fetch(_RUN_MESSAGES + _ORDER, run_id)
        return [message_from_row(row) for row in rows]

    async def list_queued_run_messages(self, run_id: str) -> list[Message]:
        rows = await self._fetch(_RUN_MESSAGES + " AND status = 'queued'" + _ORDER, run_id)
        return [message_from_row(row) for row in rows]
