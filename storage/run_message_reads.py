"""Narrow reads of a run's or a contact's messages: each answers one question of the
send and inbound paths without decoding the messages it does not return."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from engine.models import Message, MessageStatus


@dataclass(frozen=True, slots=True)
class MessageState:
    """A message's place in its run and its status, without its payload."""

    id: str
    step_seq: int
    status: MessageStatus


class RunMessageReads(Protocol):
    """Part of ``storage.base.Store``."""

    async def list_queued_run_messages(self, run_id: str) -> list[Message]:
        """The run's ``queued`` messages, oldest first: what an ended run leaves to skip
        (usually none, so nothing is decoded)."""

    async def run_has_message_in(
        self, run_id: str, statuses: Collection[MessageStatus], *, besides: str
    ) -> bool:
        """Whether a message of the run other than ``besides`` has one of ``statuses``
        (nothing decoded)."""

    async def latest_message_before(self, run_id: str, step_seq: int) -> MessageState | None:
        """The run's message with the highest ``step_seq`` below ``step_seq`` (of those
        sharing it, the oldest, as ``list_run_messages`` orders them), or None."""

    async def list_contact_messages(self, contact_id: str, *, runs: int) -> list[Message]:
        """The messages of the contact's newest ``runs`` runs (open or finished), in one
        read: the runs oldest first (by creation, then id), each run's messages oldest
        first, as ``list_contact_runs`` and ``list_run_messages`` would list them."""
