"""The HTTP API over a real aiohttp server and a real SQLite store (virtual clock)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine.api import build_app
from engine.models import MessageStatus
from providers.generic_webhook import status_body
from storage import sqlite_batch
from tests.integration.engine_kit import Harness, harness, settings_for

AUTH = {"Authorization": "Bearer test-token-0123456789"}
RUN = {
    "flow": "cobranca_boleto",
    "contact": {"id": "c-1", "phone": "+55 11 99999-8888", "name": "Maria Souza"},
    "context": {"valor": 1670, "vencimento": "2026-11-30"},
    "idempotency_key": "boleto-c-1-2026-11",
}


async def error_of(response: Any) -> dict[str, Any]:
    body = await response.json()
    error: dict[str, Any] = body["error"]
    return error


async def test_creating_a_run_twice_with_one_key_starts_one_run(api: Any) -> None:
    client, h = api
    first = await client.post("/v1/runs", json=RUN, headers=AUTH)
    again = await client.post("/v1/runs", json=RUN, headers=AUTH)

    assert first.status == 201
    assert again.status == 200
    created, repeated = await first.json(), await again.json()
    assert created["run_id"] == repeated["run_id"]
    await h.engine.settle()
    run = await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)
    assert len((await run.json())["messages"]) == 1


async def test_a_key_reused_for_another_contact_is_a_conflict(api: Any) -> None:
    client, _ = api
    await client.post("/v1/runs", json=RUN, headers=AUTH)
    other = {**RUN, "contact": {"id": "c-2", "phone": "+5511977776666"}}

    response = await client.post("/v1/runs", json=other, headers=AUTH)

    assert response.status == 409
    assert "idempotency key" in (await error_of(response))["message"]


async def test_a_replayed_request_changes_nothing_not_even_the_contact(api: Any) -> None:
    client, h = api
    await client.post("/v1/runs", json=RUN, headers=AUTH)
    # The same key with a body that changed on the way (a later amount): refused.
    changed = {**RUN, "context": {"valor": 9999, "vencimento": "2026-12-31"}}

    again = await client.post("/v1/runs", json=changed, headers=AUTH)

    assert again.status == 409
    assert (await error_of(again))["code"] == "IDEMPOTENCY_KEY_REUSED"
    contact = await h.engine.store.get_contact("c-1")
    assert contact is not None
    assert dict(contact.context) == {"valor": 1670, "vencimento": "2026-11-30"}


async def test_a_refused_start_leaves_the_contact_as_it_was_and_is_recorded(api: Any) -> None:
    client, h = api
    await client.post("/v1/runs", json=RUN, headers=AUTH)  # the contact is now in the flow
    second = {**RUN, "context": {"valor": 9999}, "idempotency_key": "boleto-c-1-2026-12"}

    response = await client.post("/v1/runs", json=second, headers=AUTH)

    assert response.status == 409
    assert "already has an open run" in (await error_of(response))["message"]
    contact = await h.engine.store.get_contact("c-1")
    assert contact is not None
    assert dict(contact.context) == {"valor": 1670, "vencimento": "2026-11-30"}
    skipped = await h.engine.store.list_events(kind_prefix="run.trigger_skipped", limit=10)
    assert [(e.contact_id, e.data["flow"]) for e in skipped] == [("c-1", "cobranca_boleto")]


async def test_the_v1_api_needs_the_bearer_token(api: Any) -> None:
    client, _ = api
    missing = await client.post("/v1/runs", json=RUN)
    wrong = await client.post("/v1/runs", json=RUN, headers={"Authorization": "Bearer nope"})

    assert missing.status == 401
    assert wrong.status == 401
    assert (await error_of(wrong))["code"] == "UNAUTHORIZED"
    # RFC 9110: a 401 names the scheme it wants.
    assert missing.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"] == "Bearer"
    assert (await client.get("/healthz")).status == 200  # probes need no token


async def test_a_bad_run_request_names_each_field(api: Any) -> None:
    client, h = api
    bad = {"flow": "cobranca_boleto", "contact": {"id": "c-1", "phone": "12"}, "contxt": {}}

    response = await client.post("/v1/runs", json=bad, headers=AUTH)

    assert response.status == 400
    error = await error_of(response)
    fields = {d["field"] for d in error["details"]}
    assert fields == {"contact.phone", "contxt"}
    assert await h.engine.store.get_contact("c-1") is None  # nothing half-written


async def test_an_unknown_flow_lists_the_loaded_ones(api: Any) -> None:
    client, _ = api
    response = await client.post("/v1/runs", json={**RUN, "flow": "cobranca"}, headers=AUTH)

    assert response.status == 422
    error = await error_of(response)
    assert error["code"] == "UNKNOWN_FLOW"
    assert "cobranca_boleto" in error["details"][0]["message"]


async def test_a_body_over_the_limit_is_refused_with_413(api: Any) -> None:
    client, h = api
    huge = {**RUN, "context": {"blob": "x" * 10_000}}

    response = await client.post("/v1/runs", json=huge, headers=AUTH)

    assert response.status == 413
    error = await error_of(response)
    assert error["code"] == "BODY_TOO_LARGE"
    # the operator learns which setting it is; the caller, that a list can be split
    assert "larger than 4096 bytes (server.max_body_bytes)" in error["message"]
    assert "split" in error["message"]
    assert await h.engine.store.get_contact("c-1") is None


async def test_invalid_json_is_a_400(api: Any) -> None:
    client, _ = api
    response = await client.post("/v1/runs", data=b"{not json", headers=AUTH)

    assert response.status == 400
    assert (await error_of(response))["code"] == "INVALID_JSON"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_not_json_and_nothing_is_stored(api: Any, constant: str) -> None:
    client, _ = api
    body = f'{{"phone": "+5511999998888", "context": {{"valor": {constant}}}}}'.encode()

    response = await client.put("/v1/contacts/c-9", data=body, headers=AUTH)

    assert response.status == 400
    error = await error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    [detail] = error["details"]
    assert detail["field"] == "context.valor"  # named, as 1e400 is
    assert detail["message"].startswith("not a finite number (NaN, Infinity")
    assert (await client.get("/v1/contacts/c-9", headers=AUTH)).status == 404


async def test_json_nested_too_deeply_is_a_400_not_a_crash(api: Any) -> None:
    client, h = api
    deep = b"[" * 1500 + b"]" * 1500  # past Python's recursion limit when decoded

    for path in ("/v1/runs", "/v1/events"):
        response = await client.post(path, data=deep, headers=AUTH)

        assert response.status == 400, path
        error = await error_of(response)
        assert error["code"] == "INVALID_JSON"
        assert "nests too deeply" in error["message"]
    assert await h.engine.store.list_events(limit=10) == []


async def test_unknown_ids_are_404(api: Any) -> None:
    client, _ = api
    for path in ("/v1/runs/nope", "/v1/messages/nope", "/v1/contacts/nope"):
        response = await client.get(path, headers=AUTH)
        assert response.status == 404, path


async def test_a_store_that_is_down_answers_503(api: Any) -> None:
    client, h = api
    await h.engine.store.close()

    response = await client.post("/v1/runs", json=RUN, headers=AUTH)
    health = await client.get("/healthz")

    assert response.status == 503
    assert health.status == 503


async def test_a_webhook_the_store_cannot_take_gets_503_and_its_retry_is_applied(
    api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the write lock past the busy timeout: the vendor is told
    to retry (503), nothing is half-written, and the retry after the lock goes works."""
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    (message,) = await h.messages(created["run_id"])
    body = status_body(
        provider_message_id=message.provider_message_id,
        idempotency_key=None,
        status=MessageStatus.READ,
    )
    monkeypatch.setattr(sqlite_batch, "BUSY_TIMEOUT_MS", 100)
    other = sqlite3.connect(tmp_path / "disparo.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        refused = await client.post("/webhooks/sandbox", data=body)
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert refused.status == 503
    assert (await error_of(refused))["code"] == "STORE_UNAVAILABLE"
    events = await h.engine.store.list_events(run_id=created["run_id"], limit=100)
    assert "status.read" not in [e.kind for e in events]

    retried = await client.post("/webhooks/sandbox", data=body)
    assert retried.status == 200
    assert (await retried.json())["accepted"] == 1
    await h.engine.settle()
    assert (await h.engine.get_message(message.id)).status == "read"


async def test_cancel_stops_the_run_and_its_timers(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()

    response = await client.post(f"/v1/runs/{created['run_id']}/cancel", headers=AUTH)
    answered = await response.json()
    await h.advance(timedelta(hours=3))

    assert response.status == 200
    # The answer is the run, as GET shows it: its history ends with the cancel.
    assert (answered["run_id"], answered["status"]) == (created["run_id"], "cancelled")
    assert [m["step"] for m in answered["messages"]] == ["lembrete"]
    assert answered["history"][-1]["data"] == {
        "status": "cancelled",
        "reason": "cancelled through the API",
    }
    run = await (await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)).json()
    assert run["status"] == "cancelled"
    assert [m["step"] for m in run["messages"]] == ["lembrete"]  # no SMS after 2 h


async def test_status_webhooks_are_deduplicated_and_never_go_back(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    (message,) = await h.messages(created["run_id"])
    pid = message.provider_message_id
    assert pid is not None

    def post(status: str) -> Any:
        body = status_body(
            provider_message_id=pid, idempotency_key=None, status=MessageStatus(status)
        )
        return client.post("/webhooks/sandbox", data=body)

    read = await post("read")
    again = await post("read")
    late = await post("delivered")

    assert read.status == again.status == late.status == 200
    assert (await again.json())["duplicates"] == 1
    await h.engine.settle()
    stored = await h.engine.get_message(message.id)
    assert stored.status == "read"
    run = await h.run(created["run_id"])
    assert run.step == "aguardando_resposta"
    text = await (await client.get("/metrics")).text()
    assert 'disparo_webhook_seconds_count{provider="sandbox"} 3.0' in text


async def test_a_status_for_an_unknown_provider_id_waits_for_it(api: Any) -> None:
    client, _ = api
    body = status_body(
        provider_message_id="sbx-not-yet", idempotency_key=None, status=MessageStatus.READ
    )

    response = await client.post("/webhooks/sandbox", data=body)

    assert response.status == 200
    assert (await response.json())["pending"] == 1


async def test_a_malformed_webhook_is_a_400_naming_the_problem(api: Any) -> None:
    client, _ = api
    response = await client.post("/webhooks/sandbox", data=b'{"statuses": [{"status": "lido"}]}')
    unknown = await client.post("/webhooks/robbu", data=b"{}")

    assert response.status == 400
    assert "statuses[0]: status" in (await error_of(response))["message"]
    assert unknown.status == 404


async def test_events_reach_the_run_and_metrics_count_them(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.advance(timedelta(seconds=6))

    event = {"type": "button", "contact": "c-1", "button_id": "pagar", "id": "evt-1"}
    first = await client.post("/v1/events", json=event, headers=AUTH)
    second = await client.post("/v1/events", json=event, headers=AUTH)
    await h.advance(timedelta(seconds=6))

    assert first.status == second.status == 202
    assert (await second.json())["outcomes"] == ["duplicate"]
    run = await (await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)).json()
    assert run["status"] == "completed"
    text = await (await client.get("/metrics")).text()
    assert 'disparo_messages_total{provider="sandbox",status="read"} 2.0' in text
    assert 'disparo_rule_decisions_total{outcome="template",rule="window"} 1.0' in text
    assert "_created" not in text


async def test_each_event_gets_an_outcome(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()  # the message goes out; its reports come after the cancel
    run = await (await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)).json()
    message_id = run["messages"][0]["id"]
    await client.post(f"/v1/runs/{created['run_id']}/cancel", headers=AUTH)

    answer = await client.post(
        "/v1/events",
        json=[
            # The run is cancelled: it ignores the status, which is applied at once.
            {"type": "status", "message_id": message_id, "status": "delivered"},
            {"type": "reply", "contact": "c-1", "text": "oi", "id": "r-1"},
            {"type": "reply", "contact": "c-1", "text": "oi", "id": "r-1"},
        ],
        headers=AUTH,
    )

    assert answer.status == 202
    assert (await answer.json())["outcomes"] == ["applied", "queued", "duplicate"]
    message = await (await client.get(f"/v1/messages/{message_id}", headers=AUTH)).json()
    assert message["status"] == "delivered"


async def test_contacts_can_be_upserted_and_read(api: Any) -> None:
    client, _ = api
    body = {"phone": "(11) 98888-7777", "name": "João", "context": {"plano": "ouro"}}

    created = await client.put("/v1/contacts/c-9", json=body, headers=AUTH)
    updated = await client.put("/v1/contacts/c-9", json={"context": {"x": 1}}, headers=AUTH)
    read = await (await client.get("/v1/contacts/c-9", headers=AUTH)).json()

    assert created.status == 201
    assert updated.status == 200
    assert read["phone"] == "+5511988887777"
    assert read["context"] == {"plano": "ouro", "x": 1}


async def test_webhooks_need_the_instance_token_and_respect_the_size_limit(
    tmp_path: Path,
) -> None:
    settings = settings_for(
        tmp_path,
        server={"max_body_bytes": 4096},
        provider_changes={"sandbox": {"webhook_secret": "s3cr3t-hook"}},
    )
    body = status_body(provider_message_id="sbx-1", idempotency_key=None, status=MessageStatus.READ)
    async with harness(settings) as h:
        client = TestClient(TestServer(build_app(h.engine)))
        await client.start_server()
        try:
            missing = await client.post("/webhooks/sandbox", data=body)
            wrong = await client.post("/webhooks/sandbox?token=nope", data=body)
            unknown = await client.post("/webhooks/sandbax?token=nope", data=body)
            right = await client.post("/webhooks/sandbox?token=s3cr3t-hook", data=body)
            huge = await client.post("/webhooks/sandbox?token=s3cr3t-hook", data=b"x" * 5000)
            said = [await a.read() for a in (missing, wrong, unknown)]
        finally:
            await client.close()

    assert (missing.status, wrong.status, unknown.status, right.status) == (404, 404, 404, 200)
    # An outsider cannot tell a provider name that exists from one that does not.
    assert said[0] == said[1] == said[2]
    assert b"s3cr3t-hook" not in said[0]
    assert huge.status == 413


async def test_a_contact_s_runs_are_listed_oldest_first_and_filtered_by_status(api: Any) -> None:
    client, h = api
    boleto = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await client.post(f"/v1/runs/{boleto['run_id']}/cancel", headers=AUTH)
    h.clock.advance(timedelta(minutes=1))
    nps = {**RUN, "flow": "pesquisa_nps", "idempotency_key": "nps-c-1"}
    survey = await (await client.post("/v1/runs", json=nps, headers=AUTH)).json()

    every = await (await client.get("/v1/contacts/c-1/runs", headers=AUTH)).json()
    open_ = await (await client.get("/v1/contacts/c-1/runs?status=open", headers=AUTH)).json()
    cancelled = await client.get("/v1/contacts/c-1/runs?status=cancelled", headers=AUTH)
    bad = await client.get("/v1/contacts/c-1/runs?status=pending", headers=AUTH)
    unknown = await client.get("/v1/contacts/nobody/runs", headers=AUTH)

    assert every["contact_id"] == "c-1"
    assert [(r["id"], r["flow"], r["status"]) for r in every["runs"]] == [
        (boleto["run_id"], "cobranca_boleto", "cancelled"),
        (survey["run_id"], "pesquisa_nps", survey["status"]),
    ]
    assert every["runs"][0]["idempotency_key"] == "boleto-c-1-2026-11"
    assert [r["id"] for r in open_["runs"]] == [survey["run_id"]]
    assert [r["id"] for r in (await cancelled.json())["runs"]] == [boleto["run_id"]]
    assert bad.status == 400
    assert (await error_of(bad))["details"] == [
        {"field": "status", "message": "'pending' is not a run status"}
    ]
    assert unknown.status == 404


def _moving_every_read(h: Harness, times: int) -> tuple[Any, list[Any]]:
    """A ``get_run`` after which another worker commits a step of the run, the first
    ``times`` reads: the reader's copy is stale by the time it writes."""
    from storage.base import Commit, RunChange

    store = h.engine.store
    read = store.get_run
    moved: list[Any] = []

    async def read_then_move(run_id: str) -> Any:
        run = await read(run_id)
        if len(moved) < times and run is not None:
            change = RunChange(
                run_id=run.id,
                expected_version=run.version,
                step=run.step,
                status=run.status,
                step_seq=run.step_seq,
                vars={**run.vars, "moved": len(moved) + 1},
            )
            moved.append(await store.commit(Commit(now=h.clock.now(), run=change)))
        return run

    return read_then_move, moved


async def _cancel_while_it_moves(
    api: Any, monkeypatch: pytest.MonkeyPatch, times: int
) -> tuple[Any, dict[str, Any], list[Any]]:
    """Cancel a waiting boleto run while another worker moves it after each of the
    cancel's first ``times`` reads: the answer, the run afterwards, the moves."""
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    read_then_move, moved = _moving_every_read(h, times=times)

    monkeypatch.setattr(h.engine.store, "get_run", read_then_move)
    response = await client.post(f"/v1/runs/{created['run_id']}/cancel", headers=AUTH)
    monkeypatch.undo()
    run = await (await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)).json()
    return response, run, moved


async def test_a_cancel_racing_a_transition_of_the_run_still_cancels_it(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run moves (a report, a reply, a timer) between the cancel's read and its
    write: the cancel reads it again instead of answering 500."""
    response, run, moved = await _cancel_while_it_moves(api, monkeypatch, times=1)

    assert response.status == 200
    assert len(moved) == 1
    assert run["status"] == "cancelled"
    assert run["vars"]["moved"] == 1  # the other worker's change was kept


async def test_a_run_that_never_stops_moving_is_a_409_and_stays_as_it_is(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    response, run, moved = await _cancel_while_it_moves(api, monkeypatch, times=1000)

    assert response.status == 409
    error = await error_of(response)
    assert error["code"] == "STALE_RUN"
    assert error["message"].endswith("; the request changed nothing")
    assert run["status"] == "waiting"
    assert len(moved) == 8


async def test_a_contact_id_longer_than_200_characters_is_refused_everywhere(api: Any) -> None:
    client, _ = api
    long_id = "x" * 201

    put = await client.put(
        f"/v1/contacts/{long_id}", json={"phone": "+5511999998888"}, headers=AUTH
    )
    event = await client.post(
        "/v1/events", json={"type": "reply", "contact": long_id, "text": "oi"}, headers=AUTH
    )
    run = await client.post(
        "/v1/runs", json={**RUN, "contact": {**RUN["contact"], "id": long_id}}, headers=AUTH
    )

    assert put.status == event.status == run.status == 400
    assert (await error_of(put))["details"] == [
        {"field": "id", "message": "201 characters; at most 200"}
    ]
    assert (await error_of(event))["details"] == [
        {"field": "contact", "message": "a contact id has 1 to 200 characters; this one has 201"}
    ]
    assert [d["field"] for d in (await error_of(run))["details"]] == ["contact.id"]
    assert (await client.get(f"/v1/contacts/{'x' * 200}", headers=AUTH)).status == 404


async def test_an_event_s_contact_errors_name_the_field_not_a_union_branch(api: Any) -> None:
    client, _ = api
    bad_phone = {"type": "reply", "contact": {"phone": "123"}, "text": "oi"}
    not_a_contact = {"type": "reply", "contact": 42, "text": "oi"}

    phone = await client.post("/v1/events", json=bad_phone, headers=AUTH)
    number = await client.post("/v1/events", json=not_a_contact, headers=AUTH)

    assert [d["field"] for d in (await error_of(phone))["details"]] == ["contact.phone"]
    assert (await error_of(number))["details"] == [
        {
            "field": "contact",
            "message": 'give a contact id or an object such as {"phone": "+5511999998888"}',
        }
    ]


async def test_a_contact_s_open_runs_are_cancelled_at_once_or_those_of_one_flow(
    api: Any,
) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json=RUN["contact"], headers=AUTH)
    hello = {"type": "reply", "contact": "c-1", "text": "oi"}  # the 24 h window opens
    assert (await client.post("/v1/events", json=hello, headers=AUTH)).status == 202
    boleto = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    nps = {**RUN, "flow": "pesquisa_nps", "idempotency_key": "nps-c-1"}
    survey = await (await client.post("/v1/runs", json=nps, headers=AUTH)).json()
    await h.engine.settle()
    listed = await (await client.get("/v1/contacts/c-1/runs?status=open", headers=AUTH)).json()
    assert len(listed["runs"]) == 2  # both wait: for the read, for the score

    paid = await client.post("/v1/contacts/c-1/cancel?flow=cobranca_boleto", headers=AUTH)
    rest = await client.post("/v1/contacts/c-1/cancel", headers=AUTH)
    again = await client.post("/v1/contacts/c-1/cancel", headers=AUTH)
    misspelt = await client.post("/v1/contacts/c-1/cancel?flow=cobranca", headers=AUTH)
    nobody = await client.post("/v1/contacts/nobody/cancel", headers=AUTH)
    await h.advance(timedelta(hours=3))  # no SMS follow-up after 2 h: its timer went too

    assert [r["id"] for r in (await paid.json())["cancelled"]] == [boleto["run_id"]]
    assert [r["status"] for r in (await rest.json())["cancelled"]] == ["cancelled"]
    assert [r["id"] for r in (await rest.json())["cancelled"]] == [survey["run_id"]]
    assert (await again.json())["cancelled"] == []
    assert misspelt.status == 404
    assert "cobranca_boleto" in (await error_of(misspelt))["message"]
    assert nobody.status == 404
    run = await (await client.get(f"/v1/runs/{boleto['run_id']}", headers=AUTH)).json()
    assert [m["step"] for m in run["messages"]] == ["lembrete"]
    [finished] = [e for e in run["history"] if e["kind"] == "run.finished"]
    assert finished["data"]["reason"] == (
        "cancelled through the API, with every open run of the contact in cobranca_boleto"
    )
    # Held back by `inactivity` (she had just written): it never goes, and says so.
    assert run["messages"][0]["status"] == "skipped"
