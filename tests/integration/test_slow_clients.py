"""Clients that never finish what they send: a body that stops half-way is answered
408 within ``server.body_timeout``, a connection that sends no whole request within
``server.idle_timeout`` is closed, and neither holds a handler for ever.

The clients here send part of a request and then nothing: the answer cannot come
early (the bytes never arrive), and a bound of 50 ms makes it come at once."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine.api import build_app, server_options
from tests.integration.engine_kit import Harness, harness, settings_for
from tests.integration.openapi_conformance import Conformance

GUARD = 10.0  # seconds a test waits before calling the server stuck (a failure)
SHORT = 0.05


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Harness]]:
    settings = settings_for(
        tmp_path,
        server={"body_timeout": SHORT, "idle_timeout": SHORT},
        provider_changes={"sandbox": {"webhook_secret": "s3cr3t-hook-0123456789"}},
    )
    conformance = Conformance()  # the 408s are answers the OpenAPI document describes
    async with harness(settings) as h:
        test_server = TestServer(conformance.install(build_app(h.engine)))
        await test_server.start_server(**server_options(settings))  # as `disparo serve` does
        client = TestClient(test_server)
        try:
            yield client, h
        finally:
            await client.close()
    assert conformance.problems == []


async def half_a_request(client: TestClient[Any, Any], path: str, body: bytes) -> bytes:
    """Send headers announcing ``body`` twice over, then ``body``, then nothing: the
    server's whole answer (read up to its Content-Length)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token-0123456789\r\n"
            f"Content-Type: application/json\r\nContent-Length: {2 * len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head + await asyncio.wait_for(reader.readexactly(length), GUARD)
    finally:
        writer.close()


def status_and_error(answer: bytes) -> tuple[str, dict[str, Any], str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode()
    error: dict[str, Any] = json.loads(body)["error"]
    return status, error, head.decode().lower()


async def test_a_run_request_whose_body_stops_half_way_is_answered_408_storing_nothing(
    server: Any,
) -> None:
    client, h = server
    body = json.dumps({"flow": "cobranca_boleto", "contact": {"id": "c-1"}}).encode()

    status, error, head = status_and_error(await half_a_request(client, "/v1/runs", body))

    assert status == "HTTP/1.1 408 Request Timeout"
    assert error["code"] == "BODY_TIMEOUT"
    assert "within 0.05 seconds (server.body_timeout)" in error["message"]
    assert "connection: close" in head
    assert await h.engine.store.get_contact("c-1") is None


async def test_a_stalled_webhook_is_refused_and_warned_about_once_a_minute(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, h = server
    caplog.set_level(logging.INFO, logger="disparo.api")
    body = b'{"inbound": [{"from": "+5511999998888", "type": "reply", "text": "oi"}]}'
    path = "/webhooks/sandbox?token=s3cr3t-hook-0123456789"

    answers = [await half_a_request(client, path, body) for _ in range(2)]
    h.clock.advance(61)
    answers.append(await half_a_request(client, path, body))

    assert [status_and_error(a)[1]["code"] for a in answers] == ["BODY_TIMEOUT"] * 3
    assert await h.engine.store.find_contact_by_phone("+5511999998888") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("POST /webhooks/sandbox from 127.0.0.1 answered 408")
    assert "(server.body_timeout)" in warnings[0]
    assert "(1 more such request since the last one logged)" in warnings[1]
    assert not any("s3cr3t" in w for w in warnings)


async def test_a_connection_that_never_finishes_its_headers_is_closed(server: Any) -> None:
    client, _ = server
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(b"POST /v1/runs HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        await writer.drain()

        assert await asyncio.wait_for(reader.read(), GUARD) == b""  # closed by the server
    finally:
        writer.close()
