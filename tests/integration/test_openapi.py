"""The OpenAPI document describes the API ``disparo serve`` really serves.

What an integrating team does with it: generate a client, import it into Postman,
browse it. So it must be a valid OpenAPI 3.1 document, list exactly the app's routes,
and describe what each answers (``openapi_conformance`` checks every answer of the
API tests against it; the walk below makes every operation give its success answer).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from engine.api import build_app
from engine.openapi import document
from providers.generic_webhook import status_body
from tests.integration.engine_kit import Harness, harness, settings_for
from tests.integration.openapi_conformance import Conformance
from tests.integration.test_api import AUTH, RUN

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "put", "post", "delete", "patch"}


def described_operations() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document()["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document())  # raises, naming the first problem, when it is not


async def test_every_route_of_the_app_is_described_and_nothing_else(tmp_path: Path) -> None:
    async with harness(settings_for(tmp_path)) as h:
        app = build_app(h.engine)
        routes = {
            (route.resource.canonical, route.method)
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }
    assert routes == described_operations()


async def test_serve_gives_the_document_to_a_caller_with_the_token(api: Any) -> None:
    client, _ = api

    served = await client.get("/v1/openapi.json", headers=AUTH)
    anonymous = await client.get("/v1/openapi.json")

    assert served.status == 200
    assert served.content_type == "application/json"
    assert await served.json() == json.loads(json.dumps(document()))
    assert anonymous.status == 401


def test_the_cli_prints_the_document_serve_serves() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "engine", "openapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(printed.stdout) == json.loads(json.dumps(document()))


async def test_the_check_catches_an_answer_the_document_does_not_describe() -> None:
    """The conformance check itself: a field too many, a wrong value and a status the
    operation does not list are each reported."""

    async def drifted(request: web.Request) -> web.Response:
        kind = request.query["kind"]
        if kind == "extra":
            return web.json_response({"status": "alive", "uptime": 3})
        if kind == "value":
            return web.json_response({"status": "dead"})
        return web.json_response({"status": "alive"}, status=201)

    app = web.Application()
    app.router.add_get("/livez", drifted)
    conformance = Conformance()
    client = TestClient(TestServer(conformance.install(app)))
    await client.start_server()
    try:
        for kind in ("extra", "value", "status"):
            await client.get(f"/livez?kind={kind}")
    finally:
        await client.close()
    assert len(conformance.problems) == 3
    extra, wrong_value, status = conformance.problems
    assert "'uptime' was unexpected" in extra
    assert "at status: 'alive' was expected" in wrong_value
    assert "-> 201: the document lists no such answer" in status


async def test_every_operation_gives_an_answer_the_document_describes(
    tmp_path: Path,
) -> None:
    """A walk through every operation as an integration would use it: each answer is
    checked, and every operation is seen succeeding (but the resend, whose 200 needs a
    lost answer: ``test_message_resend`` holds that one to the document)."""
    conformance = Conformance()
    async with harness(settings_for(tmp_path)) as h:
        client = TestClient(TestServer(conformance.install(build_app(h.engine))))
        await client.start_server()
        try:
            await walk(client, h)
        finally:
            await client.close()
    assert conformance.problems == []
    succeeded = {
        (path, method.upper())
        for path, method, status in conformance.seen
        if status.startswith("2")
    }
    resend = ("/v1/messages/{message_id}/resend", "POST")
    assert succeeded == described_operations() - {resend}


async def walk(client: TestClient[Any, Any], h: Harness) -> None:
    async def ok(method: str, path: str, **kwargs: Any) -> Any:
        answer = await client.request(method, path, headers=AUTH, **kwargs)
        assert answer.status < 300, (method, path, answer.status, await answer.text())
        return await answer.json() if answer.content_type == "application/json" else None

    started = await ok("POST", "/v1/runs", json=RUN)
    await ok("POST", "/v1/runs", json=RUN)  # the replay: 200
    await h.engine.settle()
    run = await ok("GET", f"/v1/runs/{started['run_id']}")
    (message,) = run["messages"]
    await ok("GET", f"/v1/messages/{message['id']}")
    await ok("GET", "/v1/messages?status=ambiguous")
    await ok("PUT", "/v1/contacts/c-2", json={"phone": "+5511977776666", "tags": ["vip"]})
    await ok("PUT", "/v1/contacts/c-2", json={"context": {"plano": "ouro"}})
    await ok("GET", "/v1/contacts/c-1")
    report = status_body(
        provider_message_id=message["provider_message_id"],
        idempotency_key=message["idempotency_key"],
        status="delivered",
    )
    stored = await client.post("/webhooks/sandbox", data=report)
    assert stored.status == 200, await stored.text()
    await ok(
        "POST",
        "/v1/events",
        json=[
            {"type": "attendance_started", "contact": "c-2", "attendant": "Ana"},
            {"type": "reply", "contact": "c-1", "text": "oi", "id": "evt-1"},
        ],
    )
    await h.advance(timedelta(minutes=1))
    await ok("GET", "/v1/contacts/c-2")  # with its attendance
    await ok("GET", "/v1/contacts/c-1/runs?status=open")
    await ok("GET", "/v1/contacts/c-1/decisions?limit=50")
    await ok("GET", "/v1/contacts/c-1/export")
    other = await ok("POST", "/v1/runs", json={**RUN, "idempotency_key": "boleto-c-1-2026-12"})
    await ok("POST", f"/v1/runs/{other['run_id']}/cancel")
    await ok("POST", "/v1/runs", json={**RUN, "idempotency_key": "boleto-c-1-2027-01"})
    cancelled = await ok("POST", "/v1/contacts/c-1/cancel")
    assert len(cancelled["cancelled"]) == 1
    await ok("DELETE", "/v1/contacts/c-2")
    await ok("GET", "/v1/openapi.json")
    for path in ("/healthz", "/livez", "/metrics"):
        assert (await client.get(path)).status == 200
    resend = await client.post(f"/v1/messages/{message['id']}/resend", headers=AUTH)
    assert resend.status == 409


def _parts(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """The schemas inside ``schema``, each with its place."""
    parts: list[tuple[str, Any]] = list(schema.get("properties", {}).items())
    for key in ("anyOf", "oneOf"):
        parts += [(f"{key}[{i}]", sub) for i, sub in enumerate(schema.get(key, []))]
    return parts + [
        (key, schema[key]) for key in ("items", "additionalProperties") if key in schema
    ]


def _inline_types(schema: Any, where: str) -> list[str]:
    """Where ``schema`` or its parts hold an enum or an object with properties of its
    own, which a client generator can only name after where it sits (``Status1``,
    ``ContactAttendanceType0``)."""
    if not isinstance(schema, dict):
        return []
    found = [where] if "properties" in schema or len(schema.get("enum", ())) > 1 else []
    for name, part in _parts(schema):
        found += _inline_types(part, f"{where}.{name}")
    return found


def test_every_enum_and_object_is_a_named_schema() -> None:
    """So a generated client has ``RunStatus`` and ``Attendance``, one of each, not a
    numbered class per place they appear."""
    doc = document()
    inline = [
        place
        for name, schema in doc["components"]["schemas"].items()
        for part, sub in _parts(schema)
        for place in _inline_types(sub, f"{name}.{part}")
    ]
    bodies = [
        place
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
        for status, answer in {
            **operation["responses"],
            "body": operation.get("requestBody", {}),
        }.items()
        for media in answer.get("content", {}).values()
        for place in _inline_types(media["schema"], f"{method} {path} {status}")
    ]
    assert inline + bodies == []
