"""The series the README tells operators to watch are on /metrics from the start,
at 0, for every configured provider: a dashboard or alert written against them
finds them before the first failure, not "no data"."""

from __future__ import annotations

from typing import Any


async def test_every_provider_s_circuit_shows_closed_before_any_send(api: Any) -> None:
    client, h = api

    text = await (await client.get("/metrics")).text()

    assert set(h.engine.providers)  # the harness configures some
    for name in h.engine.providers:
        assert f'disparo_provider_circuit_open{{provider="{name}"}} 0.0' in text
