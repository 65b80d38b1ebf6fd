"""A run's messages on PostgreSQL: all of them (``Store.list_run_messages``) or only
the ``queued`` ones (``Store.list_queued_run_messages``), oldest first, whether one
has a status (``Store.run_has_message_in``) and the latest before a step
(``Store.latest_message_before``), through the ``messages_run`` index."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from engine.models import Message, MessageStatus
from storage.columns import MESSAGE_COLUMNS
from storage.postgres_codec import message_from_row
from storage.run_message_reads import MessageState

_RUN_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = $1"
_ORDER = " ORDER BY created_at, seq"
_LATEST_BEFORE = (
    "SELECT id, step_seq, status FROM messages WHERE run_id = $1 AND step_seq < $2 "
    "ORDER BY step_seq DESC, created_at, seq LIMIT 1"
)
_ANY_IN = (
    "SELECT 1 FROM messages WHERE run_id = $1 AND id <> $2 AND status = ANY($3::text[]) LIMIT 1"
)


class RunMessageMethods:
    """``Store.list_run_messages``, ``Store.list_queued_run_messages``,
    ``Store.run_has_message_in`` and ``Store.latest_message_before``; ``PostgresStore``
    provides the reads."""

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        raise NotImplementedError  # PostgresStore runs the query on its pool

    async def latest_message_before(self, run_id: str, step_seq: int) -> MessageState | None:
        row = await self._fetchrow(_LATEST_BEFORE, run_id, step_seq)
        if row is None:
            return None
        return MessageState(row["id"], row["step_seq"], MessageStatus(row["status"]))

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
