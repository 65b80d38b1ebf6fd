"""Asking the engine, before the PostgreSQL ingest transaction, which reports the
message's run ignores (``Store.ingest_status_reports``' ``run_ignores``).

One query reads every reported message with its run. Each report whose status can
advance its message's is shown to ``run_ignores``; an answer with events becomes
the report's ``apply`` object, which ``disparo_ingest_statuses`` (migration 0004)
honours only if the message's status and the run's version are still those judged
from, under the message's row lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from engine.models import MessageStatus, StatusReport, status_can_advance
from storage.base import RunIgnores, StatusTarget
from storage.columns import RUN_COLUMNS
from storage.postgres_codec import event_json, run_from_row

_RUN = ", ".join(f"r.{column.strip()}" for column in RUN_COLUMNS.split(","))
_SELECT = (
    "SELECT m.id AS m_id, m.status AS m_status, m.step_seq AS m_step_seq, "
    f"m.provider AS m_provider, m.provider_message_id AS m_pid, "
    f"m.idempotency_key AS m_key, {_RUN} FROM messages m JOIN runs r ON r.id = m.run_id"
)
# By provider id (provider, id pairs), then by idempotency key, as the ingest matches.
TARGETS_SQL = (
    f"{_SELECT} WHERE (m.provider, m.provider_message_id) IN "
    "(SELECT p, i FROM unnest($1::text[], $2::text[]) AS x (p, i)) "
    f"UNION ALL {_SELECT} WHERE m.idempotency_key = ANY($3::text[])"
)


def target_args(reports: Sequence[StatusReport]) -> tuple[list[str], list[str], list[str]]:
    """The three arrays of ``TARGETS_SQL``."""
    by_id = [r for r in reports if r.provider_message_id is not None]
    return (
        [r.provider for r in by_id],
        [r.provider_message_id for r in by_id if r.provider_message_id is not None],
        [r.idempotency_key for r in reports if r.idempotency_key is not None],
    )


def apply_objects(
    reports: Sequence[StatusReport], rows: Sequence[asyncpg.Record], run_ignores: RunIgnores
) -> list[dict[str, Any] | None]:
    """Per report, the ``apply`` object of the ingest unit, or None to queue it."""
    by_id = {(row["m_provider"], row["m_pid"]): row for row in rows if row["m_pid"] is not None}
    by_key = {row["m_key"]: row for row in rows}
    out: list[dict[str, Any] | None] = []
    for report in reports:
        row = None
        if report.provider_message_id is not None:
            row = by_id.get((report.provider, report.provider_message_id))
        if row is None and report.idempotency_key is not None:
            row = by_key.get(report.idempotency_key)
        stored = MessageStatus(row["m_status"]) if row is not None else None
        if row is None or stored is None or not status_can_advance(stored, report.status):
            out.append(None)
            continue
        run = run_from_row(row)
        target = StatusTarget(
            report=report,
            message_id=row["m_id"],
            message_status=stored,
            message_step_seq=row["m_step_seq"],
            provider=row["m_provider"],
            status=report.status,
            run=run,
        )
        ignored = run_ignores(target)
        if ignored is None:
            out.append(None)
            continue
        apply: dict[str, Any] = {
            "expected_status": stored.value,
            "run_version": run.version,
            "events": [event_json(event) for event in ignored],
        }
        error = report.error_message or report.error_code
        if report.status == MessageStatus.FAILED and error:
            apply["last_error"] = error  # what the dispatcher records (engine.dispatcher)
        out.append(apply)
    return out
