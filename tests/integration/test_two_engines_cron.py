"""Two engines on one store both run the cron scheduler: a campaign fires once per
fire time and starts one run per audience contact, whichever engine claims what.

PostgreSQL is the deployment this is for; SQLite is checked too (two processes on
one file by mistake must not double a campaign either).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.engine_kit import Harness, two_engines
from tests.integration.test_triggers import (
    CAMPAIGN,
    MONDAY_10H,
    add_contacts,
    kinds,
    runs_of,
    settings_with,
    sp,
)

PLANS = {f"c-{n:02d}": "ouro" if n % 3 else "prata" for n in range(1, 13)}
GOLD = sorted(c for c, p in PLANS.items() if p == "ouro")


async def test_two_engines_fire_a_campaign_once_per_fire_time(tmp_path: Path, storage: str) -> None:
    base = settings_with(tmp_path, CAMPAIGN, chunk_size=2)
    # One row per claim, so the two engines interleave instead of one taking all.
    settings = base.model_copy(
        update={
            "storage": storage,
            "dispatcher": base.dispatcher.model_copy(update={"max_in_flight": 1}),
        }
    )
    async with two_engines(settings, MONDAY_10H) as (one, two, clock):
        h = Harness(one, clock)
        await add_contacts(h, PLANS)
        for day in (24, 25):  # Tuesday and Wednesday, 09:00 in São Paulo
            clock.set(sp(day, 9, 1))
            # Both claim whatever is due and handle it at the same time (under load
            # one may drain the queue before the other claims: the outcome is the same).
            for _ in range(20):
                await asyncio.gather(one.dispatcher.process_due(), two.dispatcher.process_due())
        runs = await runs_of(h, "campanha")
        fired = [e["fire_time"] for e in await kinds(h, "trigger.fired")]
        done = await kinds(h, "trigger.fanout_done")

    assert fired == [sp(24, 9).isoformat(), sp(25, 9).isoformat()]
    assert sorted(r.contact_id for r in runs) == sorted(GOLD * 2)  # one run a day each
    assert len({r.id for r in runs}) == 2 * len(GOLD)
    assert [(e["matched"], e["started"]) for e in done] == [(len(GOLD), len(GOLD))] * 2
