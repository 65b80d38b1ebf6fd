"""/healthz during a network partition: the database neither answers nor refuses.

A load balancer or an orchestrator probes every few seconds and gives up after one
or two. /healthz must answer 503 in bounded time, not hold the probe until the
driver's command timeout (a minute) and answer after the probe was abandoned; and
probes repeated meanwhile must not each take another connection of the pool,
which the process needs for its work once the database is back.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.api import HEALTH


async def test_a_store_that_hangs_answers_503_within_the_probe_timeout(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, h = api
    store = h.engine.store
    client.app[HEALTH].timeout = 0.05  # server.health_timeout, 2 s by default
    back = asyncio.Event()
    pings: list[None] = []

    async def hanging() -> None:
        pings.append(None)
        await back.wait()

    monkeypatch.setattr(store, "ping", hanging)
    answers = [await asyncio.wait_for(client.get("/healthz"), timeout=5) for _ in range(3)]

    for answer in answers:
        assert answer.status == 503
        body = await answer.json()
        assert body["status"] == "unavailable"
        assert "did not answer within" in body["store"]
    assert len(pings) == 1  # the probes shared one ping; no pile-up of connections

    back.set()  # the database answers again
    for _ in range(50):
        answer = await client.get("/healthz")
        if answer.status == 200:
            break
        await asyncio.sleep(0)
    assert answer.status == 200
