"""A person's data over the HTTP API: the export holds everything kept about them;
erasing it deletes their data, stops what was planned for them, and an opt-out
outlives the erasure."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.contact_data import erase_contact
from engine.errors import StoreUnavailable
from engine.models import MessageStatus, Run
from engine.runtime import Engine
from storage.base import DueCounts
from tests.fakes.gateway import FakeGateway
from tests.integration.engine_kit import until
from tests.integration.test_api import AUTH, RUN
from tests.integration.test_provider_faults import AUTH as GATEWAY_AUTH
from tests.integration.test_shutdown import one_out_two_waiting


async def test_the_export_holds_the_contact_their_runs_texts_and_own_events(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.advance(timedelta(seconds=6))  # sent, delivered, read
    reply = {"type": "reply", "contact": "c-1", "text": "já paguei"}
    assert (await client.post("/v1/events", json=reply, headers=AUTH)).status == 202
    await h.engine.settle()
    caplog.set_level(logging.INFO)

    answer = await client.get("/v1/contacts/c-1/export", headers=AUTH)

    assert answer.status == 200
    document = await answer.json()
    assert document["exported_at"] == h.clock.now().isoformat()
    contact = document["contact"]
    assert (contact["id"], contact["phone"], contact["name"]) == (
        "c-1",
        "+5511999998888",
        "Maria Souza",
    )
    assert contact["context"] == {"valor": 1670, "vencimento": "2026-11-30"}
    [run] = document["runs"]
    assert run["id"] == created["run_id"]
    reminder = run["messages"][0]
    assert (reminder["step"], reminder["status"]) == ("lembrete", "read")
    assert "R$ 1.670,00" in str(reminder["payload"])  # what was sent to them
    kinds = [event["kind"] for event in run["history"]]
    assert kinds[0] == "run.started"  # oldest first
    assert "decision" in kinds
    assert [(e["kind"], e["data"].get("text")) for e in document["events"]] == [
        ("inbound.reply", "já paguei")
    ]
    assert (
        "exported the data of contact c-1 (asked through the API): 1 run, "
        f"{len(run['messages'])} messages, 1 event of no run" in caplog.text
    )
    assert (await client.get("/v1/contacts/nobody/export", headers=AUTH)).status == 404
    assert (await client.get("/v1/contacts/c-1/export")).status == 401


async def test_erasing_a_contact_deletes_their_runs_and_nothing_planned_is_sent(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()  # the reminder is sent; the SMS follows in 2 h unless it is read
    caplog.set_level(logging.INFO)
    held = await (await client.get("/v1/contacts/c-1/export", headers=AUTH)).json()
    events = len(held["events"]) + sum(len(run["history"]) for run in held["runs"])
    queued = await h.engine.store.overview(h.clock.now())

    answer = await client.delete("/v1/contacts/c-1", headers=AUTH)
    await h.advance(timedelta(hours=3))

    assert answer.status == 200
    body = await answer.json()
    assert body["contact_id"] == "c-1"
    assert body["opt_out_kept"] is False
    erased = body["erased"]
    assert (erased["runs"], erased["messages"], erased["pending_statuses"]) == (1, 1, 0)
    assert erased["events"] == events > 3  # every event the export showed
    # The 2 h timer; the sandbox's delayed reports and the triggers' rows stay.
    assert queued.due_work["timer"] == DueCounts(later=1)
    assert erased["due_work"] == 1
    for path in (f"/v1/runs/{created['run_id']}", "/v1/contacts/c-1", "/v1/contacts/c-1/export"):
        assert (await client.get(path, headers=AUTH)).status == 404
    metrics = await (await client.get("/metrics")).text()
    # the 2 h follow-up never went (its circuit's series is there from the start)
    assert 'disparo_messages_total{provider="sandbox_sms"' not in metrics
    assert "disparo_contacts_erased_total 1.0" in metrics
    logged = caplog.text
    assert "erased contact c-1 (asked through the API): 1 run, 1 message, " in logged
    assert "99999-8888" not in logged
    assert "999998888" not in logged
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    again = await client.delete("/v1/contacts/c-1", headers=AUTH)
    assert again.status == 404
    assert (await again.json())["error"]["code"] == "NOT_FOUND"


async def test_an_opted_out_contact_stays_opted_out_after_erasure(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api
    caplog.set_level(logging.INFO)
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)
    opt_out = {"type": "opt_out", "contact": "c-1", "text": "SAIR"}
    assert (await client.post("/v1/events", json=opt_out, headers=AUTH)).status == 202
    await h.engine.settle()

    answer = await (await client.delete("/v1/contacts/c-1", headers=AUTH)).json()
    bare = await (await client.get("/v1/contacts/c-1", headers=AUTH)).json()
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    run = await (await client.get(f"/v1/runs/{created['run_id']}", headers=AUTH)).json()

    assert answer["opt_out_kept"] is True
    assert "1 event, 0 due work, 0 unmatched status reports; its opt-out is kept" in caplog.text
    assert answer["erased"]["events"] == 1
    assert bare["phone"] is None
    assert bare["opted_out_at"] is not None
    # The same person, started again by a system that still lists them: nothing goes.
    assert [m["status"] for m in run["messages"]] == ["skipped"]
    decisions = [e["data"] for e in run["history"] if e["kind"] == "decision"]
    assert (decisions[-1]["rule"], decisions[-1]["reason"]) == ("opt_out", "opted_out")
    forget = await client.delete("/v1/contacts/c-1?forget_opt_out=true", headers=AUTH)
    assert forget.status == 200
    assert (await forget.json())["opt_out_kept"] is False
    assert (await client.get("/v1/contacts/c-1", headers=AUTH)).status == 404


async def test_a_bad_forget_opt_out_or_no_token_erases_nothing(api: Any) -> None:
    client, _ = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)

    bad = await client.delete("/v1/contacts/c-1?forget_opt_out=sim", headers=AUTH)
    anonymous = await client.delete("/v1/contacts/c-1")

    assert bad.status == 400
    error = (await bad.json())["error"]
    assert error["details"] == [{"field": "forget_opt_out", "message": "'sim' is not true/false"}]
    assert anonymous.status == 401
    contact = await (await client.get("/v1/contacts/c-1", headers=AUTH)).json()
    assert contact["phone"] == "+5511999998888"


async def _who_waits(
    engine: Engine, runs: list[Run], gateway: FakeGateway
) -> tuple[dict[str, str], str, list[str]]:
    """Each contact's message key, the contact whose request is at the gateway, and
    the two whose sends wait for the connection (``one_out_two_waiting``)."""
    keys = {}
    for run in runs:
        (message,) = await engine.store.list_run_messages(run.id)
        keys[run.contact_id] = message.idempotency_key
    [on_wire] = [c for c, key in keys.items() if key in gateway.requests_by_key]
    return keys, on_wire, [c for c in keys if c != on_wire]


async def test_a_send_waiting_for_a_connection_is_withdrawn_and_one_on_the_wire_not_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with (
        FakeGateway(auth_value=GATEWAY_AUTH) as gateway,
        one_out_two_waiting(tmp_path, gateway) as (_, engine, runs),
    ):
        keys, on_wire, (waiting, still_wanted) = await _who_waits(engine, runs, gateway)

        for contact in (waiting, on_wire):
            await erase_contact(engine, contact, forget_opt_out=False, source="a test")
        gateway.resume()
        await until(lambda: not engine.dispatcher._tasks, "every send handled")

        # The erased contact's waiting send never reached the gateway; the other
        # contact's did, once. The request already on the wire went, unrecorded.
        assert dict(gateway.requests_by_key) == {keys[on_wire]: 1, keys[still_wanted]: 1}
        run_of = {run.contact_id: run.id for run in runs}
        (kept,) = await engine.store.list_run_messages(run_of[still_wanted])
        assert kept.status == MessageStatus.SENT
        for contact in (waiting, on_wire):
            assert await engine.store.get_contact(contact) is None
    assert caplog.text.count("is gone since its send began; not sending it") == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_send_that_waited_is_not_made_when_another_process_erased_its_contact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Erased through the store (as another engine process would), nobody tells this
    process's sender: the send asks, once it gets its connection slot."""
    caplog.set_level(logging.INFO)
    async with (
        FakeGateway(auth_value=GATEWAY_AUTH) as gateway,
        one_out_two_waiting(tmp_path, gateway) as (_, engine, runs),
    ):
        keys, on_wire, (erased_elsewhere, still_wanted) = await _who_waits(engine, runs, gateway)

        assert await engine.store.erase_contact(
            erased_elsewhere, keep_opt_out=False, now=engine.clock.now()
        )
        gateway.resume()
        await until(lambda: not engine.dispatcher._tasks, "every send handled")

        assert dict(gateway.requests_by_key) == {keys[on_wire]: 1, keys[still_wanted]: 1}
    assert "is gone since its send began; not sending it" in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_store_that_cannot_answer_after_the_wait_does_not_stop_the_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        FakeGateway(auth_value=GATEWAY_AUTH) as gateway,
        one_out_two_waiting(tmp_path, gateway) as (_, engine, runs),
    ):

        async def unavailable(message_id: str) -> None:
            raise StoreUnavailable("the database is locked")

        monkeypatch.setattr(engine.store, "get_message", unavailable)
        gateway.resume()
        await until(lambda: sum(gateway.requests_by_key.values()) == 3, "all three sent")
        monkeypatch.undo()
        await until(lambda: not engine.dispatcher._tasks, "every send handled")
        for run in runs:
            (message,) = await engine.store.list_run_messages(run.id)
            assert message.status == MessageStatus.SENT
