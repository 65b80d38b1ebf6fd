"""`?flow=` on a contact's decisions and on cancelling its runs: a misspelt flow is a
404 naming the loaded flows on both, and a flow taken off disk still reaches the
runs it left behind."""

from __future__ import annotations

from typing import Any

from tests.integration.test_api import AUTH, RUN


async def test_a_misspelt_flow_is_a_404_on_decisions_and_on_cancel(api: Any) -> None:
    client, h = api
    await client.post("/v1/runs", json=RUN, headers=AUTH)
    await h.engine.settle()

    decisions = await client.get("/v1/contacts/c-1/decisions?flow=cobranca", headers=AUTH)
    cancel = await client.post("/v1/contacts/c-1/cancel?flow=cobranca", headers=AUTH)
    right = await client.get("/v1/contacts/c-1/decisions?flow=cobranca_boleto", headers=AUTH)

    for answer in (decisions, cancel):
        assert answer.status == 404
        message = (await answer.json())["error"]["message"]
        assert "flow 'cobranca' is not loaded; loaded flows: cobranca_boleto" in message
    assert right.status == 200
    assert (await right.json())["events"]


async def test_runs_of_a_flow_no_longer_loaded_can_still_be_cancelled_by_flow(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    del h.engine.catalog.current["cobranca_boleto"]  # the file was removed and reloaded

    cancel = await client.post("/v1/contacts/c-1/cancel?flow=cobranca_boleto", headers=AUTH)

    assert cancel.status == 200
    assert [r["id"] for r in (await cancel.json())["cancelled"]] == [created["run_id"]]


async def test_a_flow_filter_finds_a_run_whose_start_is_older_than_the_limit(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    everything = await h.engine.decisions("c-1", limit=1000)

    newest_five = await h.engine.decisions("c-1", "cobranca_boleto", limit=5)

    assert len(everything) > 5  # the run's start is not among the newest five
    assert [e.id for e in newest_five] == [e.id for e in everything[:5]]
    assert {e.run_id for e in newest_five} == {created["run_id"]}
