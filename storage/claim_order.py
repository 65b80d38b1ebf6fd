"""The order due work is claimed in, on every backend (migration 0008): the work of
runs under way (sends, timers, reports, inbound events, cron firings) before the work
that starts runs (START rows and the fan-out and sweep chunks that write them), each
oldest due first. A bulk start leaves thousands of START rows due at once; this order
lets the first messages of a campaign, and an API run's message, go out meanwhile."""

from __future__ import annotations

from datetime import datetime

from engine.models import DueKind, DueWork

# Work that starts new runs: claimed after the work of runs under way.
_STARTING_KINDS = (DueKind.START, DueKind.FANOUT, DueKind.SWEEP)
STARTING = frozenset(_STARTING_KINDS)
# The same kinds as SQL, for the claim queries. In this order: SQLite uses the partial
# indexes of migration 0008 only for the very list they were created with.
STARTING_SQL = "(" + ", ".join(f"'{kind.value}'" for kind in _STARTING_KINDS) + ")"


def claim_order(work: DueWork) -> tuple[bool, datetime, int]:
    """Work of runs under way before work that starts runs, each oldest due first."""
    return (work.kind in STARTING, work.due_at, work.id)
