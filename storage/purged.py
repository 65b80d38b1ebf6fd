"""What one retention purge batch deleted (``Store.purge``), by table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Purged:
    """What one ``Store.purge`` batch deleted, by table."""

    runs: int = 0
    messages: int = 0
    events: int = 0  # those of the purged runs and those of no run
    pending_statuses: int = 0
    trigger_firings: int = 0
    # Some kind hit the batch limit: older rows may be left; call again.
    more: bool = False

    @property
    def total(self) -> int:
        return (
            self.runs + self.messages + self.events + self.pending_statuses + self.trigger_firings
        )

    @classmethod
    def of_counts(
        cls,
        runs: int,
        messages: int,
        run_events: int,
        contact_events: int,
        pending: int,
        firings: int,
        *,
        more: bool = False,
    ) -> Purged:
        """From a backend's counts (events of runs and of no run counted apart)."""
        return cls(
            runs=runs,
            messages=messages,
            events=run_events + contact_events,
            pending_statuses=pending,
            trigger_firings=firings,
            more=more,
        )
