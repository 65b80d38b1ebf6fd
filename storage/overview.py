"""What is queued and running right now (``Store.overview``), for ``disparo status``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class DueCounts:
    """The due-work rows of one kind."""

    due: int = 0  # due now and free: waiting for a dispatcher
    leased: int = 0  # held by a dispatcher now
    later: int = 0  # due in the future (timers, retries, deferrals, triggers)
    oldest_due_at: datetime | None = None  # the longest any free, due row has waited


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseCounts:
    """The due-work rows one process's dispatcher holds now, and when its leases end
    (a process that died holds its rows until then; another one takes them over)."""

    rows: int
    first_ends_at: datetime
    last_ends_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Overview:
    due_work: Mapping[str, DueCounts] = field(default_factory=dict)  # by kind
    # by holder: the dispatcher's owner, ``host:pid:random`` (engine.runtime)
    leases: Mapping[str, LeaseCounts] = field(default_factory=dict)
    open_runs: Mapping[str, int] = field(default_factory=dict)  # by flow
    ambiguous_messages: int = 0
    # Contacts by the zone they name (those naming none left out): a release before
    # zones were limited to IANA names stored any name the host had a file for.
    contact_zones: Mapping[str, int] = field(default_factory=dict)


class OpenRunReads(Protocol):
    """Part of ``storage.base.Store``: what the engine checks its flows against."""

    async def open_run_versions(self) -> dict[tuple[str, str], int]:
        """The number of open runs (active or waiting) by (flow, pinned version); the
        engine checks each version still fits the template catalogue and providers."""

    async def answers_queued_before(self, run_id: str, before: datetime) -> bool:
        """Whether an inbound event or a status report for run ``run_id``, queued before
        ``before``, still waits to be handled (by any process). A timer due at
        ``before`` lets such an answer go first: a reply that came before the deadline
        is not overtaken by the timeout another process handles at the same moment."""
