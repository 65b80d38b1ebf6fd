"""``POST /v1/contacts/{id}/cancel`` cancels run by run, each in its own commit: a run
that keeps moving stops it with a 409 that says which runs it did cancel."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_api import AUTH, RUN, _moving_every_read, error_of


async def test_a_run_that_never_stops_moving_names_the_runs_already_cancelled(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, h = api
    boleto = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    h.clock.advance(timedelta(minutes=1))
    nps = {**RUN, "flow": "pesquisa_nps", "idempotency_key": "nps-c-1"}
    survey = await (await client.post("/v1/runs", json=nps, headers=AUTH)).json()
    read_then_move, moved = _moving_every_read(h, times=1000)
    read = h.engine.store.get_run

    async def survey_keeps_moving(run_id: str) -> Any:
        return await (read_then_move if run_id == survey["run_id"] else read)(run_id)

    monkeypatch.setattr(h.engine.store, "get_run", survey_keeps_moving)
    response = await client.post("/v1/contacts/c-1/cancel", headers=AUTH)
    monkeypatch.undo()
    runs = await (await client.get("/v1/contacts/c-1/runs", headers=AUTH)).json()

    assert response.status == 409
    error = await error_of(response)
    assert error["code"] == "STALE_RUN"
    assert "the request changed nothing" not in error["message"]
    assert error["message"].endswith(
        f"; 1 run of the contact ({boleto['run_id']}) was cancelled before it; "
        "retry to cancel the rest"
    )
    assert {r["id"]: r["status"] for r in runs["runs"]} == {
        boleto["run_id"]: "cancelled",
        survey["run_id"]: "waiting",
    }
    assert len(moved) == 8
