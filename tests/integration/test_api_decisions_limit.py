"""`GET /v1/contacts/{id}/decisions` of a contact with a long history: the newest
first, as many as `?limit=` asks, and never fewer than the README says without
saying so."""

from __future__ import annotations

from typing import Any

from engine.models import ContactUpsert, NewEvent
from storage.base import Commit
from tests.integration.test_api import AUTH, error_of


async def _replies(h: Any, count: int) -> None:
    now = h.engine.clock.now()
    await h.engine.store.upsert_contact(ContactUpsert(id="c-1", phone="+5511999998888"), now)
    events = [
        NewEvent(kind="inbound.reply", at=now, contact_id="c-1", data={"text": f"r{n}"})
        for n in range(count)
    ]
    await h.engine.store.commit(Commit(now=now, events=events))


async def test_a_limit_reaches_past_the_default_200_newest_first(api: Any) -> None:
    client, h = api
    await _replies(h, 250)

    default = await (await client.get("/v1/contacts/c-1/decisions", headers=AUTH)).json()
    wider = await client.get("/v1/contacts/c-1/decisions?limit=1000", headers=AUTH)
    three = await client.get("/v1/contacts/c-1/decisions?limit=3", headers=AUTH)

    assert len(default["events"]) == 200
    assert wider.status == 200
    events = (await wider.json())["events"]
    assert len(events) == 250
    assert events[0]["data"]["text"] == "r249"  # the newest first
    assert [e["data"]["text"] for e in (await three.json())["events"]] == ["r249", "r248", "r247"]


async def test_a_limit_that_is_not_a_number_in_range_is_a_400_naming_it(api: Any) -> None:
    client, h = api
    await _replies(h, 1)

    for limit in ("0", "abc", "10001"):
        answer = await client.get(f"/v1/contacts/c-1/decisions?limit={limit}", headers=AUTH)

        assert answer.status == 400, limit
        [detail] = (await error_of(answer))["details"]
        assert detail == {"field": "limit", "message": "a whole number from 1 to 10000"}


async def test_a_run_s_history_keeps_its_start_past_500_events(api: Any) -> None:
    # A contact chatting with an attendant while the run waits: each reply the run
    # does not answer is recorded on it. The history lost its oldest events (the
    # start, the first steps) past 500, without a word.
    from tests.integration.test_api import RUN

    client, h = api
    run_id = (await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json())["run_id"]
    await h.engine.settle()
    now = h.engine.clock.now()
    ignored = [
        NewEvent(kind="run.event_ignored", at=now, contact_id="c-1", run_id=run_id, data={})
        for _ in range(600)
    ]
    await h.engine.store.commit(Commit(now=now, events=ignored))

    run = await (await client.get(f"/v1/runs/{run_id}", headers=AUTH)).json()

    assert run["history"][0]["kind"] == "run.started"
    assert sum(e["kind"] == "run.event_ignored" for e in run["history"]) >= 600
