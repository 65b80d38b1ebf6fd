"""`disparo status` names the processes holding work and when their leases end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.overview import overview_json, overview_lines
from storage.base import LeaseCounts, Overview

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def test_each_process_is_a_line_with_its_rows_and_when_its_leases_end() -> None:
    overview = Overview(
        leases={
            "app-1:4242:1a2b3c": LeaseCounts(
                rows=1200,
                first_ends_at=NOW + timedelta(seconds=8),
                last_ends_at=NOW + timedelta(seconds=28),
            ),
            "app-2:77:ffeedd": LeaseCounts(
                rows=3,
                first_ends_at=NOW + timedelta(seconds=12),
                last_ends_at=NOW + timedelta(seconds=12),
            ),
        }
    )

    lines = overview_lines(overview, NOW)

    at = lines.index("processes holding work: 2")
    assert lines[at + 1 : at + 3] == [
        "  app-1:4242:1a2b3c     1,200 rows, leases end in 8-28 s",
        "  app-2:77:ffeedd           3 rows, leases end in 12 s",
    ]
    assert overview_json(overview, NOW)["leases"]["app-2:77:ffeedd"] == {
        "rows": 3,
        "first_ends_at": "2026-12-08T12:00:12+00:00",
        "last_ends_at": "2026-12-08T12:00:12+00:00",
    }


def test_no_process_at_work_says_so() -> None:
    assert "processes holding work: none" in overview_lines(Overview(), NOW)
    assert overview_json(Overview(), NOW)["leases"] == {}
