"""``disparo status``: the store's overview (``Store.overview``) as a person reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.zones import is_iana_zone
from storage.base import Overview


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _within(then: datetime, now: datetime) -> int:
    return max(0, round((then - now).total_seconds()))


def lease_lines(overview: Overview, now: datetime) -> list[str]:
    """The processes holding due work now (``host:pid:...``), as many as there are
    dispatchers at work; one that died shows until its leases end."""
    if not overview.leases:
        return ["processes holding work: none"]
    width = max(len(owner) for owner in overview.leases)
    lines = [f"processes holding work: {len(overview.leases)}"]
    for owner, held in overview.leases.items():
        first, last = _within(held.first_ends_at, now), _within(held.last_ends_at, now)
        ends = f"{first} s" if first == last else f"{first}-{last} s"
        lines.append(f"  {owner:<{width}}  {held.rows:>8,} rows, leases end in {ends}")
    return lines


def non_iana_zones(overview: Overview) -> dict[str, int]:
    """Contacts by stored zone that is no IANA name (an earlier release took it)."""
    return {zone: n for zone, n in overview.contact_zones.items() if not is_iana_zone(zone)}


def overview_lines(overview: Overview, now: datetime) -> list[str]:
    """A table of due work by kind, open runs by flow, and the ambiguous count."""
    lines = [f"due work at {now.isoformat(timespec='seconds')}"]
    if overview.due_work:
        lines.append(f"  {'kind':<10} {'due':>8} {'leased':>8} {'later':>8}  oldest due")
        for kind, counts in overview.due_work.items():
            lines.append(
                f"  {kind:<10} {counts.due:>8,} {counts.leased:>8,} {counts.later:>8,}  "
                f"{_ago(counts.oldest_due_at, now)}"
            )
    else:
        lines.append("  none")
    lines += lease_lines(overview, now)
    lines.append("open runs")
    if overview.open_runs:
        width = max(len(flow) for flow in overview.open_runs)
        lines += [f"  {flow:<{width}}  {n:>8,}" for flow, n in overview.open_runs.items()]
    else:
        lines.append("  none")
    lines.append(f"ambiguous messages: {overview.ambiguous_messages:,}")
    if overview.ambiguous_messages:
        lines.append(
            "  GET /v1/messages?status=ambiguous lists them; settle each with a status "
            "event or POST /v1/messages/{id}/resend"
        )
    if zones := non_iana_zones(overview):
        each = ", ".join(f"{zone}: {n:,}" for zone, n in zones.items())
        lines += [
            f"contacts whose timezone is no IANA name: {sum(zones.values()):,} ({each})",
            "  stored by an earlier release; their rules use the flow's or the config's "
            "zone: PUT /v1/contacts/{id} with each one's IANA timezone",
        ]
    return lines


def overview_json(overview: Overview, now: datetime) -> dict[str, Any]:
    return {
        "at": now.isoformat(),
        "due_work": {
            kind: {
                "due": c.due,
                "leased": c.leased,
                "later": c.later,
                "oldest_due_at": c.oldest_due_at.isoformat() if c.oldest_due_at else None,
            }
            for kind, c in overview.due_work.items()
        },
        "leases": {
            owner: {
                "rows": held.rows,
                "first_ends_at": held.first_ends_at.isoformat(),
                "last_ends_at": held.last_ends_at.isoformat(),
            }
            for owner, held in overview.leases.items()
        },
        "open_runs": dict(overview.open_runs),
        "ambiguous_messages": overview.ambiguous_messages,
        "non_iana_timezones": non_iana_zones(overview),
    }
