"""An idempotency key starts one run: a true retry gets it again (200), the same key
with another request is refused (409) naming what differs, and changes nothing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.flow.model import ApiTrigger
from tests.integration.test_api import AUTH, RUN, error_of


async def test_a_key_reused_with_another_body_is_a_409_naming_the_fields(api: Any) -> None:
    client, h = api
    first = await client.post("/v1/runs", json=RUN, headers=AUTH)
    corrected = {
        **RUN,
        "contact": {**RUN["contact"], "name": "Maria S."},
        "context": {"valor": 9999, "vencimento": "2026-11-30"},
    }

    again = await client.post("/v1/runs", json=corrected, headers=AUTH)

    assert again.status == 409
    error = await error_of(again)
    assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
    run_id = (await first.json())["run_id"]
    assert run_id in error["message"]
    assert [d["field"] for d in error["details"]] == ["contact.name", "context.valor"]
    contact = await h.engine.store.get_contact("c-1")
    assert contact is not None
    assert contact.name == "Maria Souza"
    assert dict(contact.context) == {"valor": 1670, "vencimento": "2026-11-30"}
    assert len(await h.engine.store.list_contact_runs("c-1")) == 1


async def test_a_retry_with_the_phone_written_another_way_is_the_same_request(api: Any) -> None:
    client, _ = api
    first = await client.post("/v1/runs", json=RUN, headers=AUTH)
    retry = {**RUN, "contact": {**RUN["contact"], "phone": "(11) 99999-8888"}}

    again = await client.post("/v1/runs", json=retry, headers=AUTH)

    assert again.status == 200
    assert (await again.json())["run_id"] == (await first.json())["run_id"]


async def test_a_field_left_out_of_the_retry_is_a_difference(api: Any) -> None:
    client, _ = api
    await client.post("/v1/runs", json=RUN, headers=AUTH)
    shorter = {**RUN, "context": {"valor": 1670}}

    again = await client.post("/v1/runs", json=shorter, headers=AUTH)

    assert again.status == 409
    assert [d["field"] for d in (await error_of(again))["details"]] == ["context.vencimento"]


async def test_the_idempotency_key_header_is_held_to_the_body_field_s_rules(api: Any) -> None:
    client, h = api
    body = {k: v for k, v in RUN.items() if k != "idempotency_key"}

    too_long = await client.post(
        "/v1/runs", json=body, headers={**AUTH, "Idempotency-Key": "k" * 201}
    )
    two_keys = await client.post(
        "/v1/runs", json=RUN, headers={**AUTH, "Idempotency-Key": "another-key"}
    )
    fits = await client.post("/v1/runs", json=body, headers={**AUTH, "Idempotency-Key": "k" * 200})
    same = await client.post("/v1/runs", json=body, headers={**AUTH, "Idempotency-Key": "k" * 200})

    assert too_long.status == two_keys.status == 400
    [detail] = (await error_of(too_long))["details"]
    assert detail == {"field": "Idempotency-Key", "message": "201 characters; 1 to 200"}
    assert (await error_of(two_keys))["details"][0]["field"] == "Idempotency-Key"
    assert fits.status == 201
    assert same.status == 200
    assert len(await h.engine.store.list_contact_runs("c-1")) == 1


async def test_a_retry_after_its_flow_was_taken_off_disk_gets_its_run(api: Any) -> None:
    client, h = api
    first = await client.post("/v1/runs", json=RUN, headers=AUTH)
    h.engine.catalog.current.pop(RUN["flow"])  # as a reload after the file was removed

    retry = await client.post("/v1/runs", json=RUN, headers=AUTH)
    other = await client.post("/v1/runs", json={**RUN, "context": {"valor": 1}}, headers=AUTH)
    new_key = await client.post("/v1/runs", json={**RUN, "idempotency_key": "k-2"}, headers=AUTH)

    assert retry.status == 200
    assert (await retry.json())["run_id"] == (await first.json())["run_id"]
    assert other.status == 409  # the same key with another request is still refused
    assert new_key.status == 422
    assert (await error_of(new_key))["code"] == "UNKNOWN_FLOW"


async def test_a_flow_without_an_api_trigger_does_not_start_over_http(api: Any) -> None:
    """A cron campaign's audience decides who gets it: a POST must not reach a contact
    the audience leaves out. A retry of a run started before the trigger went still
    gets its run."""
    client, h = api
    first = await client.post("/v1/runs", json=RUN, headers=AUTH)
    loaded = h.engine.catalog.current[RUN["flow"]]
    cron_only = [t for t in loaded.flow.triggers if not isinstance(t, ApiTrigger)]
    h.engine.catalog.current[RUN["flow"]] = replace(
        loaded, flow=loaded.flow.model_copy(update={"triggers": cron_only})
    )

    retry = await client.post("/v1/runs", json=RUN, headers=AUTH)
    other = {**RUN, "contact": {"id": "c-2", "phone": "+5511988887777"}, "idempotency_key": "k-2"}
    refused = await client.post("/v1/runs", json=other, headers=AUTH)

    assert retry.status == 200
    assert (await retry.json())["run_id"] == (await first.json())["run_id"]
    assert refused.status == 422
    error = await error_of(refused)
    assert error["code"] == "NOT_AN_API_FLOW"
    assert error["details"] == [
        {
            "field": "flow",
            "message": "its triggers are cron; add `- api: {}` to its `triggers:` to start it "
            "with POST /v1/runs (or `disparo trigger` for a CSV)",
        }
    ]
    assert await h.engine.store.get_contact("c-2") is None
