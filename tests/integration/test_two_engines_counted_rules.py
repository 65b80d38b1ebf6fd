"""`max_per_day` and `recent_contact` hold across engines sharing one store: two
processes deciding sends of one contact at the same moment see each other's sends
on their way (the store counts `sending` messages, and the `sending` commit checks
the count again under a lock of the contact), so neither lets one too many through.

PostgreSQL is the deployment this is for; SQLite is checked too.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from engine.models import ContactUpsert, MessageStatus
from engine.runtime import Engine
from tests.integration.engine_kit import Harness, settings_with_flows, two_engines
from tests.integration.test_counted_rules import FLOW


async def both_handle_everything_due(one: Engine, two: Engine) -> tuple[int, int]:
    handled = [0, 0]
    for _ in range(10):
        did = await asyncio.gather(one.dispatcher.process_due(), two.dispatcher.process_due())
        handled = [handled[0] + did[0], handled[1] + did[1]]
    return handled[0], handled[1]


@pytest.mark.parametrize(
    ("rule", "first_day"),
    [
        ("max_per_day: 1", Counter({MessageStatus.SENT: 1, MessageStatus.QUEUED: 5})),
        ("recent_contact: 4h", Counter({MessageStatus.SENT: 1, MessageStatus.SKIPPED: 5})),
    ],
)
async def test_two_engines_sending_to_one_contact_at_once_count_each_others_sends(
    tmp_path: Path, storage: str, rule: str, first_day: Counter[MessageStatus]
) -> None:
    base = settings_with_flows(tmp_path, FLOW.format(rule=rule))
    # One row per claim, so the two engines take turns instead of one taking all.
    settings = base.model_copy(
        update={
            "storage": storage,
            "dispatcher": base.dispatcher.model_copy(update={"max_in_flight": 1}),
        }
    )
    async with two_engines(settings) as (one, two, clock):
        contact = ContactUpsert(id="c-1", phone="+5511999998888")
        runs = [  # six runs of one contact, stored before either engine dispatches
            (await one.start_run("aviso", contact, idempotency_key=f"aviso-{i}"))[0]
            for i in range(6)
        ]
        await both_handle_everything_due(one, two)
        h = Harness(one, clock)
        statuses = Counter([(await h.messages(run.id))[0].status for run in runs])

    assert statuses == first_day
