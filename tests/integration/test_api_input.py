"""What the HTTP API does with input at the edges: dates outside UTC's range,
batches with a bad item, numbers and nesting JSON allows but disparo cannot keep,
query strings, and errors nobody planned for."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from engine.errors import UserInputError
from engine.models import ContactEvent
from tests.integration.engine_kit import harness, settings_for
from tests.integration.openapi_conformance import checked_client
from tests.integration.test_api import AUTH, RUN, error_of

EDGE = "0001-01-01T00:00:00+14:00"  # year 0 in UTC: no datetime holds it


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "reply", "contact": "c-1", "text": "oi", "at": EDGE}, "at"),
        ({"type": "attendance_started", "contact": "c-1", "until": EDGE}, "until"),
    ],
)
async def test_a_date_outside_utc_s_range_is_a_400_naming_the_field(
    api: Any, event: dict[str, Any], field: str
) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)

    response = await client.post("/v1/events", json=event, headers=AUTH)

    assert response.status == 400
    [detail] = (await error_of(response))["details"]
    assert detail["field"] == field
    assert "outside the dates disparo can keep" in detail["message"]
    assert await h.engine.store.list_events(kind_prefix="inbound.", limit=10) == []


async def test_a_webhook_item_dated_outside_utc_s_range_is_rejected_and_the_rest_applied(
    api: Any,
) -> None:
    client, h = api
    body = (
        b'{"inbound": ['
        b'{"from": "+5511999998888", "type": "reply", "text": "x", "at": "' + EDGE.encode() + b'"},'
        b'{"from": "+5511999998888", "type": "reply", "text": "oi", "id": "good"}]}'
    )

    response = await client.post("/webhooks/sandbox", data=body)

    assert response.status == 200
    answer = await response.json()
    assert answer["accepted"] == 1
    [rejected] = answer["rejected"]
    assert rejected.startswith("inbound[0]: at: ")
    assert "outside the dates disparo can keep" in rejected
    contact = await h.engine.store.find_contact_by_phone("+5511999998888")
    assert contact is not None
    assert contact.last_inbound_at is not None


async def test_an_unexpected_error_is_a_json_500_without_its_words_and_is_logged(
    api: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = api

    async def broken(run_id: str) -> Any:
        raise RuntimeError("password=hunter2 leaked by a bug")

    monkeypatch.setattr(h.engine, "get_run", broken)
    with caplog.at_level(logging.ERROR, logger="disparo.api"):
        response = await client.get("/v1/runs/r-1", headers=AUTH)

    assert response.status == 500
    assert response.content_type == "application/json"
    text = await response.text()
    assert "hunter2" not in text
    assert "Traceback" not in text
    assert (await error_of(response))["code"] == "INTERNAL"
    [record] = [r for r in caplog.records if r.name == "disparo.api"]
    assert "unexpected error answering GET /v1/runs/r-1" in record.getMessage()
    assert record.exc_info is not None


async def test_a_batch_with_a_bad_item_is_refused_whole_naming_its_index(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    (message,) = await h.messages(created["run_id"])
    good = [
        {"type": "status", "message_id": message.id, "status": "read", "id": "st-x"},
        {"type": "reply", "text": "oi", "contact": {"phone": "+5511977770000"}},
    ]
    email_only = {"type": "reply", "text": "oi", "contact": {"email": "x@y.com"}}

    response = await client.post("/v1/events", json=[*good, email_only], headers=AUTH)

    assert response.status == 400
    error = await error_of(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == "events of the list are invalid; nothing of the request was stored"
    assert error["details"] == [
        {
            "field": "[2].contact",
            "message": "give an id or a phone; an e-mail alone cannot be resolved to a contact",
        }
    ]
    assert await h.engine.store.find_contact_by_phone("+5511977770000") is None
    assert (await h.engine.get_message(message.id)).status != "read"
    again = await client.post("/v1/events", json=good[0], headers=AUTH)
    assert (await again.json())["outcomes"] == ["queued"]  # not a duplicate: never stored


async def test_an_unknown_contact_or_message_in_a_batch_is_a_404_naming_its_index(
    api: Any,
) -> None:
    client, h = api
    batch = [
        {"type": "reply", "text": "oi", "contact": {"phone": "+5511977770000"}},
        {"type": "reply", "text": "oi", "contact": "nobody"},
        {"type": "opt_out", "contact": {"id": "nobody-else"}},
        {"type": "status", "message_id": "m-nope", "status": "read"},
    ]

    response = await client.post("/v1/events", json=batch, headers=AUTH)

    assert response.status == 404
    error = await error_of(response)
    assert [d["field"] for d in error["details"]] == [
        "[1].contact",
        "[2].contact.id",
        "[3].message_id",
    ]
    assert error["details"][0]["message"].startswith("contact nobody does not exist")
    assert await h.engine.store.find_contact_by_phone("+5511977770000") is None


@pytest.mark.parametrize(
    ("event", "field", "words"),
    [
        ({"type": "button", "contact": "c-1"}, "button_id", "a button needs 'button_id'"),
        ({"type": "choice", "contact": "c-1"}, "button_id", "a choice needs 'button_id'"),
        ({"type": "reply", "contact": "c-1"}, "text", "a reply needs 'text'"),
        ({"type": "reply", "contact": "c-1", "text": ""}, "text", "a reply needs 'text'"),
        ({"type": "status", "status": "read"}, "message_id", "required for type status"),
        ({"type": "reply", "text": "oi"}, "contact", "required: a contact id"),
    ],
)
async def test_an_event_without_what_its_type_needs_is_a_400_naming_the_field(
    api: Any, event: dict[str, Any], field: str, words: str
) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)

    single = await client.post("/v1/events", json=event, headers=AUTH)
    listed = await client.post("/v1/events", json=[event], headers=AUTH)

    assert single.status == listed.status == 400
    [detail] = (await error_of(single))["details"]
    assert detail["field"] == field
    assert detail["message"].startswith(words)
    assert [d["field"] for d in (await error_of(listed))["details"]] == [f"[0].{field}"]
    assert await h.engine.store.list_events(kind_prefix="inbound.", limit=10) == []


@pytest.mark.parametrize(
    ("event", "field", "words"),
    [
        # A click sent as a reply would take the flow's `reply` route, not `button.pagar`.
        (
            {"type": "reply", "contact": "c-1", "text": "Pagar agora", "button_id": "pagar"},
            "button_id",
            'does not apply to type reply, only to button or choice; a tapped button is {"type"',
        ),
        (
            {"type": "opt_out", "contact": "c-1", "until": "2026-11-23T10:00:00Z"},
            "until",
            "does not apply to type opt_out, only to attendance_started",
        ),
        (
            {"type": "reply", "contact": "c-1", "text": "oi", "attendant": "Ana"},
            "attendant",
            "does not apply to type reply, only to attendance_started or attendance_ended",
        ),
        (
            {"type": "reply", "contact": "c-1", "text": "oi", "message_id": "m-1"},
            "message_id",
            "does not apply to type reply, only to status",
        ),
        (
            {"type": "status", "message_id": "m-1", "status": "failed", "text": "sem saldo"},
            "text",
            "does not apply to type status, only to types other than status; a failed "
            "report's reason goes in `error`",
        ),
    ],
)
async def test_a_field_the_events_type_ignores_is_a_400_naming_it(
    api: Any, event: dict[str, Any], field: str, words: str
) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)

    response = await client.post("/v1/events", json=[event], headers=AUTH)

    assert response.status == 400
    [detail] = (await error_of(response))["details"]
    assert detail["field"] == f"[0].{field}"
    assert detail["message"].startswith(words)
    assert await h.engine.store.list_events(kind_prefix="inbound.", limit=10) == []


async def test_the_engine_refuses_a_contactless_event_before_creating_any_contact(
    api: Any,
) -> None:
    _, h = api
    now = h.clock.now()
    by_phone = ContactEvent(type="reply", at=now, phone="+5511977770000", text="oi")
    nobody = ContactEvent(type="reply", at=now, text="oi")

    with pytest.raises(UserInputError, match="needs a contact id or a phone"):
        await h.engine.ingest_contact_events([by_phone, nobody])

    assert await h.engine.store.find_contact_by_phone("+5511977770000") is None


# A whole number of 400 digits is beyond a float too: accepted, it failed every
# message that rendered it ("[<class 'decimal.InvalidOperation'>]").
@pytest.mark.parametrize("number", ["1e400", "-1e999", "9" * 400, "-" + "1" * 310])
async def test_a_number_too_large_for_a_float_is_a_400_naming_the_field(
    api: Any, number: str
) -> None:
    client, h = api
    body = f'{{"phone": "+5511999998888", "context": {{"boleto": [1, {number}]}}}}'.encode()
    run = (
        '{"flow": "cobranca_boleto", "contact": {"id": "c-9"}, "context": {"valor": '
        + number
        + "}}"
    ).encode()

    contact = await client.put("/v1/contacts/c-9", data=body, headers=AUTH)
    started = await client.post("/v1/runs", data=run, headers=AUTH)

    assert contact.status == started.status == 400
    [detail] = (await error_of(contact))["details"]
    assert detail["field"] == "context.boleto[1]"
    assert detail["message"].startswith("not a finite number")
    assert [d["field"] for d in (await error_of(started))["details"]] == ["context.valor"]
    assert await h.engine.store.get_contact("c-9") is None


def _nested(levels: int) -> str:
    """A contact body whose context nests ``levels`` objects (the body is one more)."""
    return '{"context": ' + '{"a": ' * levels + "1" + "}" * levels + "}"


async def test_a_body_nested_deeper_than_32_levels_is_a_400_and_nothing_is_stored(
    api: Any,
) -> None:
    client, h = api

    fits = await client.put("/v1/contacts/ok", data=_nested(31).encode(), headers=AUTH)
    deeper = await client.put("/v1/contacts/deep", data=_nested(32).encode(), headers=AUTH)
    qa = await client.put("/v1/contacts/deep500", data=_nested(500).encode(), headers=AUTH)

    assert fits.status == 201
    assert (await client.get("/v1/contacts/ok", headers=AUTH)).status == 200
    assert deeper.status == qa.status == 400
    error = await error_of(deeper)
    assert error["code"] == "INVALID_JSON"
    assert "at most 32 levels" in error["message"]
    assert error["details"][0]["field"] == "context" + ".a" * 31
    assert await h.engine.store.get_contact("deep") is None
    assert await h.engine.store.get_contact("deep500") is None


@pytest.mark.parametrize("limit", ["²", "１０", "0", "1001", "-1", "1e2", " 5", "9" * 5000])
async def test_a_query_limit_that_is_not_ascii_digits_in_range_is_a_400(
    api: Any, limit: str
) -> None:
    client, _ = api

    response = await client.get(
        "/v1/messages", params={"status": "ambiguous", "limit": limit}, headers=AUTH
    )

    assert response.status == 400
    details = (await error_of(response))["details"]
    assert details == [{"field": "limit", "message": "a whole number from 1 to 1000"}]


async def test_a_query_limit_in_range_lists_the_messages(api: Any) -> None:
    client, _ = api
    response = await client.get("/v1/messages?status=ambiguous&limit=1000", headers=AUTH)

    assert response.status == 200
    assert (await response.json()) == {"messages": []}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/contacts/c-1", {"name": "Maria\u0000"}, "name"),
        ("/v1/contacts/c-1", {"context": {"nota\u0000": 1}}, "context.nota\u0000"),
        ("/v1/runs", {**RUN, "context": {"valor": "1\u0000"}}, "context.valor"),
    ],
)
async def test_a_nul_character_is_a_400_naming_the_field_and_nothing_is_stored(
    api: Any, path: str, body: dict[str, Any], field: str
) -> None:
    # PostgreSQL stores no text with a NUL: refused at the edge on every store alike,
    # instead of the store's error (a 500, or a 503 the caller would retry for ever).
    client, _ = api
    send = client.put if path.startswith("/v1/contacts") else client.post

    answer = await send(path, json=body, headers=AUTH)

    assert answer.status == 400
    assert [d["field"] for d in (await error_of(answer))["details"]] == [field]
    assert (await client.get("/v1/contacts/c-1", headers=AUTH)).status == 404


async def test_a_contact_zone_only_this_host_has_is_a_400(api: Any) -> None:
    """`localtime` loads here (the host's file) and is another zone, or none, on the
    host of the next engine: the contact would be judged in a zone nobody chose."""
    client, _ = api

    answer = await client.put(
        "/v1/contacts/c-1", json={"phone": "+5511999998888", "timezone": "localtime"}, headers=AUTH
    )

    assert answer.status == 400
    [detail] = (await error_of(answer))["details"]
    assert detail["field"] == "timezone"
    assert "'localtime' is not an IANA timezone" in detail["message"]
    assert (await client.get("/v1/contacts/c-1", headers=AUTH)).status == 404


async def test_a_nul_in_a_contact_id_in_the_url_is_a_400(api: Any) -> None:
    client, _ = api

    answer = await client.get("/v1/contacts/c%001", headers=AUTH)

    assert answer.status == 400
    assert (await error_of(answer))["details"] == [
        {"field": "id", "message": "it holds a NUL character (%00); remove it"}
    ]


async def test_an_authorization_header_of_bytes_that_are_not_utf8_is_a_401(api: Any) -> None:
    client, _ = api
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET /v1/runs/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()

    status_line = await reader.readline()
    writer.close()

    assert status_line.startswith(b"HTTP/1.1 401")


async def test_a_batch_gets_one_outcome_per_event_in_the_order_given(api: Any) -> None:
    client, h = api
    created = await (await client.post("/v1/runs", json=RUN, headers=AUTH)).json()
    await h.engine.settle()
    (message,) = await h.engine.store.list_run_messages(created["run_id"])
    await client.post(
        "/v1/events", json={"type": "interaction", "contact": "c-1", "id": "z1"}, headers=AUTH
    )

    answer = await client.post(
        "/v1/events",
        json=[
            {"type": "interaction", "contact": "c-1", "id": "z1"},  # seen before
            {"type": "reply", "contact": "c-1", "text": "PARAR", "id": "z2"},  # + its opt-out
            {"type": "status", "message_id": message.id, "status": "delivered"},
        ],
        headers=AUTH,
    )

    assert answer.status == 202
    body = await answer.json()
    assert body["outcomes"][:2] == ["duplicate", "queued"]
    assert len(body["outcomes"]) == 3
    assert body["accepted"] == 2  # a duplicate is not accepted, as on the webhooks


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/v1/contacts/c-1", b'{"name": "Maria \\ud800"}', "name"),
        ("/v1/contacts/c-1", b'{"context": {"nota\\udfff": 1}}', "context.nota\udfff"),
        (
            "/v1/runs",
            b'{"flow": "cobranca_boleto", "contact": {"id": "c-1"}, '
            b'"context": {"valor": ["\\udc00"]}}',
            "context.valor[0]",
        ),
    ],
)
async def test_a_lone_surrogate_is_a_400_naming_the_field_and_nothing_is_stored(
    api: Any, path: str, raw: bytes, field: str
) -> None:
    # JSON allows "\ud800" alone, but it is no character: UTF-8 cannot encode it, so
    # the store could not write it (it was a 500).
    client, _ = api
    send = client.put if path.startswith("/v1/contacts") else client.post

    answer = await send(path, data=raw, headers=AUTH)

    assert answer.status == 400
    assert [d["field"] for d in (await error_of(answer))["details"]] == [field]
    assert (await client.get("/v1/contacts/c-1", headers=AUTH)).status == 404


async def test_a_lone_surrogate_in_an_event_is_a_400_and_nothing_is_stored(api: Any) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)
    raw = b'[{"type": "reply", "contact": "c-1", "text": "ok"}, ' + (
        b'{"type": "reply", "contact": "c-1", "text": "\\ud83d"}]'
    )

    answer = await client.post("/v1/events", data=raw, headers=AUTH)

    assert answer.status == 400
    assert [d["field"] for d in (await error_of(answer))["details"]] == ["[1].text"]
    assert await h.engine.store.list_events(kind_prefix="inbound.", limit=10) == []


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/runs", {"POST"}),
        ("PUT", "/v1/runs/r-1", {"GET", "HEAD"}),
        ("GET", "/webhooks/sandbox", {"POST"}),
    ],
)
async def test_a_method_the_path_does_not_take_is_a_405_saying_which_it_takes(
    api: Any, method: str, path: str, allowed: set[str]
) -> None:
    # RFC 9110: a 405 carries an Allow header; a client reads it to correct itself.
    client, _ = api

    answer = await client.request(method, path, headers=AUTH)

    assert answer.status == 405
    assert set(answer.headers["Allow"].split(",")) == allowed
    error = await error_of(answer)
    assert error["code"] == "METHOD_NOT_ALLOWED"
    assert all(m in error["message"] for m in allowed)


async def test_a_bad_list_item_is_named_by_its_index_in_brackets(api: Any) -> None:
    # The way every other error names a place in a list ("[1].contact", "tags[0]").
    client, _ = api

    put = await client.put("/v1/contacts/c-1", json={"tags": ["vip", 7]}, headers=AUTH)
    events = await client.post(
        "/v1/events",
        json=[{"type": "reply", "contact": "c-1", "text": "oi"}, {"type": "reply", "text": [1]}],
        headers=AUTH,
    )

    assert put.status == 400
    assert [d["field"] for d in (await error_of(put))["details"]] == ["tags[1]"]
    assert events.status == 400
    assert [d["field"] for d in (await error_of(events))["details"]] == ["[1].text"]


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("/v1/runs/", "no trailing slash"),
        ("/v1/contacts/c-1/runs/", "no trailing slash"),
        ("/v1/nothing", "see the README"),
    ],
)
async def test_a_path_disparo_does_not_serve_is_a_404_saying_so(
    api: Any, path: str, hint: str
) -> None:
    # Not a bare "Not Found", which reads like an unknown run or contact.
    client, _ = api

    answer = await client.get(path, headers=AUTH)

    assert answer.status == 404
    error = await error_of(answer)
    assert error["code"] == "NOT_FOUND"
    assert error["message"].startswith(f"no such path: GET {path}")
    assert hint in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/runs/r%001"),
        ("POST", "/v1/runs/r%001/cancel"),
        ("GET", "/v1/messages/m%001"),
        ("POST", "/v1/messages/m%001/resend"),
    ],
)
async def test_a_nul_in_a_run_or_message_id_in_the_url_is_a_404_on_every_store(
    tmp_path: Path, storage: str, method: str, path: str
) -> None:
    # No id disparo makes holds one; PostgreSQL refused the query and it was a 500.
    async with (
        harness(settings_for(tmp_path, storage=storage)) as h,
        checked_client(h.engine) as client,
    ):
        answer = await client.request(method, path, headers=AUTH)

        assert answer.status == 404
        assert (await error_of(answer))["code"] == "NOT_FOUND"


async def test_an_idempotency_key_header_of_bytes_that_are_not_utf8_is_a_400(api: Any) -> None:
    # aiohttp reads such bytes as lone surrogates, which no store can write (a 500).
    client, _ = api
    body = b'{"flow": "cobranca_boleto", "contact": {"id": "c-1"}}'
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token-0123456789\r\n"
        b"Idempotency-Key: k-\xff\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (len(body), body)
    )
    await writer.drain()

    answer = await reader.read()
    writer.close()

    assert answer.startswith(b"HTTP/1.1 400")
    assert b'"field": "Idempotency-Key"' in answer
    assert (await client.get("/v1/contacts/c-1", headers=AUTH)).status == 404


async def test_a_number_of_thousands_of_digits_is_a_400_that_speaks_of_the_body(
    tmp_path: Path,
) -> None:
    # Python refuses to read it, and its words named a Python function to call.
    run = b'{"flow": "cobranca_boleto", "contact": {"id": "c-1"}, "context": {"v": ' + (
        b"9" * 5000 + b"}}"
    )
    async with harness(settings_for(tmp_path)) as h, checked_client(h.engine) as client:
        answer = await client.post("/v1/runs", data=run, headers=AUTH)

        assert answer.status == 400
        error = await error_of(answer)
        assert error["code"] == "INVALID_JSON"
        assert "sys." not in error["message"]
        assert "more digits" in error["message"]
        assert await h.engine.store.get_contact("c-1") is None


@pytest.mark.parametrize(
    "times",
    [
        {"until": "2026-11-23T09:00:00-03:00"},  # an hour before now (10:00), `at` left out
        {"at": "2026-11-23T09:00:00-03:00", "until": "2026-11-23T09:00:00-03:00"},
    ],
)
async def test_an_attendance_that_ends_before_it_starts_is_a_400_naming_until(
    api: Any, times: dict[str, str]
) -> None:
    client, h = api
    await client.put("/v1/contacts/c-1", json={"phone": "+5511999998888"}, headers=AUTH)
    event = {"type": "attendance_started", "contact": "c-1", "attendant": "Ana", **times}

    answer = await client.post("/v1/events", json=event, headers=AUTH)

    # Stored, it would be an attendance that is never on: the bot would talk over
    # the agent. The sender must hear of its mistake instead of a 202.
    assert answer.status == 400
    [detail] = (await error_of(answer))["details"]
    assert detail["field"] == "until"
    assert "after" in detail["message"]
    assert (await h.engine.get_contact("c-1")).attendance is None


async def test_an_e_mail_that_is_not_one_is_a_400_saying_how_to_write_it(api: Any) -> None:
    client, _ = api
    response = await client.put("/v1/contacts/c-1", json={"email": "maria@@x"}, headers=AUTH)

    assert response.status == 400
    [detail] = (await error_of(response))["details"]
    assert detail == {
        "field": "email",
        "message": "'maria@@x' is not an e-mail address; write it as name@domain.com",
    }
