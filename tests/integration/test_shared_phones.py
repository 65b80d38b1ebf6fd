"""Two contacts with one phone (a CRM often holds two records of one person): an
inbound event by phone reaches the record being messaged, and an opt-out by phone
reaches every record with that phone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.models import Contact, ContactEvent, ContactUpsert, Run, RunStatus
from tests.integration.engine_kit import Harness, harness, settings_for
from tests.integration.test_api import AUTH

PHONE = "+5511999998888"
BOLETO = {"valor": 50, "vencimento": "2026-11-30"}  # button pagar: como_pagar, then done


async def old_and_new(h: Harness) -> Run:
    """``dup-old`` (no run) and, a minute later, ``dup-new`` with the same phone,
    whose run read the reminder and waits for an answer."""
    await h.engine.upsert_contact(ContactUpsert(id="dup-old", phone=PHONE, name="Old"))
    await h.advance(timedelta(minutes=1))
    run = await h.start("cobranca_boleto", "dup-new", phone=PHONE, context=BOLETO)
    await h.advance(timedelta(seconds=6))
    assert (await h.run(run.id)).step == "aguardando_resposta"
    return run


async def contacts(h: Harness) -> tuple[Contact, Contact]:
    return await h.engine.get_contact("dup-old"), await h.engine.get_contact("dup-new")


async def delivered_twice(client: Any, h: Harness, body: bytes) -> list[dict[str, Any]]:
    """The sandbox webhook's answers to ``body`` and to its redelivery a second later."""
    answers = []
    for _ in range(2):
        answers.append(await (await client.post("/webhooks/sandbox", data=body)).json())
        await h.advance(timedelta(seconds=1))
    return answers


async def assert_opted_out_and_cancelled(h: Harness, run: Run) -> None:
    """Both records opted out; ``run`` cancelled for it, with nothing sent after the
    reminder."""
    assert all(contact.opted_out_at is not None for contact in await contacts(h))
    assert (await h.run(run.id)).status == RunStatus.CANCELLED
    assert [m.step for m in await h.messages(run.id)] == ["lembrete"]
    events = await h.engine.store.list_events(run_id=run.id, limit=100)
    reasons = [e.data.get("reason") for e in events if e.kind == "run.finished"]
    assert reasons == ["the contact opted out"]


async def by_engine(h: Harness, type_: str, **fields: Any) -> None:
    event = ContactEvent(type=type_, at=h.clock.now(), phone="5511999998888", **fields)
    await h.engine.ingest_contact_events([event])


async def test_a_button_by_phone_advances_the_run_of_the_record_being_messaged(api: Any) -> None:
    client, h = api
    run = await old_and_new(h)
    body = b'{"inbound": [{"from": "5511999998888", "type": "button", "button_id": "pagar"}]}'

    response = await client.post("/webhooks/sandbox", data=body)
    await h.advance(timedelta(seconds=6))

    assert response.status == 200
    assert (await h.run(run.id)).status == RunStatus.COMPLETED
    assert [m.step for m in await h.messages(run.id)] == ["lembrete", "como_pagar"]
    old, new = await contacts(h)
    assert old.last_inbound_at is None
    assert new.last_inbound_at is not None


@pytest.mark.parametrize("messaged_last", ["dup-old", "dup-new"])
async def test_with_two_open_runs_a_click_goes_to_the_record_messaged_last(
    tmp_path: Path, messaged_last: str
) -> None:
    async with harness(settings_for(tmp_path)) as h:
        first = "dup-new" if messaged_last == "dup-old" else "dup-old"
        await h.engine.upsert_contact(ContactUpsert(id="dup-old", phone=PHONE))
        await h.advance(timedelta(minutes=1))
        await h.engine.upsert_contact(ContactUpsert(id="dup-new", phone=PHONE))
        runs = {first: await h.start("cobranca_boleto", first, context=BOLETO)}
        await h.advance(timedelta(minutes=1))
        runs[messaged_last] = await h.start("cobranca_boleto", messaged_last, context=BOLETO)
        await h.advance(timedelta(seconds=6))

        await by_engine(h, "button", button_id="pagar")
        await h.advance(timedelta(seconds=6))

        assert (await h.run(runs[messaged_last].id)).status == RunStatus.COMPLETED
        assert (await h.run(runs[first].id)).step == "aguardando_resposta"


async def test_without_open_runs_a_reply_goes_to_the_record_messaged_last(
    tmp_path: Path,
) -> None:
    async with harness(settings_for(tmp_path)) as h:
        run = await old_and_new(h)
        await by_engine(h, "button", button_id="pagar")
        await h.advance(timedelta(seconds=6))
        assert (await h.run(run.id)).status == RunStatus.COMPLETED
        before = (await h.engine.get_contact("dup-new")).last_inbound_at
        await h.advance(timedelta(minutes=5))

        await by_engine(h, "reply", text="obrigado")

        old, new = await contacts(h)
        assert old.last_inbound_at is None
        assert new.last_inbound_at is not None
        assert before is not None
        assert new.last_inbound_at > before


async def test_a_webhook_opt_out_by_phone_opts_out_every_record_and_a_retry_is_a_duplicate(
    api: Any,
) -> None:
    client, h = api
    run = await old_and_new(h)
    body = b'{"inbound": [{"from": "+5511999998888", "type": "opt_out", "id": "oo-wh-1"}]}'

    first, retry = await delivered_twice(client, h, body)

    # One event in, one outcome out, however many records it opted out.
    assert (first["accepted"], first["duplicates"]) == (1, 0)
    assert (retry["accepted"], retry["duplicates"]) == (0, 1)
    await assert_opted_out_and_cancelled(h, run)
    events = await h.engine.store.list_events(contact_id="dup-old", limit=100)
    assert [e.kind for e in events].count("inbound.opt_out") == 1


@pytest.mark.parametrize("route", ["api", "engine"])
async def test_an_opt_out_by_phone_opts_out_every_record_and_cancels_the_open_run(
    api: Any, route: str
) -> None:
    client, h = api
    run = await old_and_new(h)

    if route == "api":
        body = {"type": "opt_out", "contact": {"phone": "+55 11 99999-8888"}, "id": "oo-1"}
        response = await client.post("/v1/events", json=body, headers=AUTH)
        assert response.status == 202
        assert (await response.json())["outcomes"] == ["queued"]  # one per event given
    else:
        await by_engine(h, "opt_out")
    await h.advance(timedelta(hours=3))  # past the 2 h timeout that would send the SMS

    await assert_opted_out_and_cancelled(h, run)  # no SMS either


async def test_a_sair_reply_by_phone_opts_out_every_record(api: Any) -> None:
    client, h = api
    run = await old_and_new(h)
    body = b'{"inbound": [{"from": "5511999998888", "type": "reply", "text": "SAIR", "id": "s1"}]}'

    first, retry = await delivered_twice(client, h, body)

    assert first["accepted"] == 1  # the reply, stored with one opt-out per record
    assert (retry["accepted"], retry["duplicates"]) == (0, 1)
    await assert_opted_out_and_cancelled(h, run)
