"""`PUT /v1/contacts/{id}` merges `context` key by key, and a key sent as null is
removed: the README tells integrators that is how a stale key is cleared."""

from __future__ import annotations

from typing import Any

from tests.integration.test_api import AUTH


async def test_a_context_key_sent_as_null_is_removed_and_the_others_kept(api: Any) -> None:
    client, _ = api
    first = {"phone": "+5511999998888", "context": {"boleto_status": "aberto", "valor": 10}}
    await client.put("/v1/contacts/c-1", json=first, headers=AUTH)

    answer = await client.put(
        "/v1/contacts/c-1", json={"context": {"boleto_status": None}}, headers=AUTH
    )

    assert answer.status == 200
    assert (await answer.json())["context"] == {"valor": 10}
