"""What the store tells about the trigger rows it holds, so that ``Triggers.schedule``
can carry a replaced row's state (pending fire time, watermark) over to the row of
the edited trigger (``engine.triggers_edits``).

Part of the ``storage.base.Store`` protocol, kept here to keep that module small.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.models import DueKind


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredTrigger:
    """A keyed trigger row (CRON or SWEEP) as stored now."""

    key: str
    kind: DueKind
    due_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)


class TriggerStateReads(Protocol):
    async def stored_triggers(self) -> list[StoredTrigger]:
        """Every keyed due-work row (the rows ``schedule_triggers`` manages), by key,
        leased or not, with its payload as last committed."""

    async def last_firing(self, flow: str, trigger: int) -> datetime | None:
        """The newest fire time recorded for trigger ``trigger`` (its index) of ``flow``
        (``Commit.firing``); None when it never fired."""


__all__ = ["StoredTrigger", "TriggerStateReads"]
