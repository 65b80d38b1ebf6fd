"""`max_per_day` and `recent_contact` when several sends of one contact come due
together (quiet hours waking at 08:00, a campaign, the cap's own midnight): each
counts the others on their way, so the cap holds and the recent contact is seen."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from engine.models import ContactUpsert, MessageStatus
from tests.integration.engine_kit import harness, settings_with_flows

FLOW = """\
flow: aviso
concurrency: many
defaults:
  provider: sandbox_sms
  rules: {{{rule}, timezone: America/Sao_Paulo}}
start: aviso
steps:
  aviso:
    send: {{channel: sms, text: "Aviso {{{{ run.id }}}}"}}
    next: fim
  fim: {{end: completed}}
"""


@pytest.mark.parametrize(
    ("rule", "first_day"),
    [
        ("max_per_day: 2", Counter({MessageStatus.DELIVERED: 2, MessageStatus.QUEUED: 2})),
        ("recent_contact: 4h", Counter({MessageStatus.DELIVERED: 1, MessageStatus.SKIPPED: 3})),
    ],
)
async def test_sends_of_one_contact_due_together_count_each_other(
    tmp_path: Path, rule: str, first_day: Counter[MessageStatus]
) -> None:
    async with harness(settings_with_flows(tmp_path, FLOW.format(rule=rule))) as h:
        contact = ContactUpsert(id="c-1", phone="+5511999998888")
        runs = [  # four runs of one contact, stored before any is dispatched
            (await h.engine.start_run("aviso", contact, idempotency_key=f"aviso-{i}"))[0]
            for i in range(4)
        ]
        await h.advance(timedelta(seconds=10))

        statuses = Counter([(await h.messages(run.id))[0].status for run in runs])
        assert statuses == first_day
