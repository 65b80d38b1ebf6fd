"""Requests disparo cannot answer in its JSON shape are still said well in the log:
a client that hangs up half-way through its body is no "unexpected error", and a
request aiohttp cannot read as HTTP is one WARNING a minute, not an ERROR with a
traceback each."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from engine.api import build_app, server_options
from tests.integration.engine_kit import harness, settings_for, until

HEAD = (
    b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token-0123456789\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
)


async def test_a_client_that_hangs_up_half_way_through_its_body_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path)
    caplog.set_level(logging.INFO, logger="disparo.api")
    async with harness(settings) as h:
        # As `disparo serve` runs it: a handler goes on when its client leaves.
        runner = web.AppRunner(build_app(h.engine), access_log=None, **server_options(settings))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            _, writer = await asyncio.open_connection(*runner.addresses[0][:2])
            writer.write(HEAD + b'{"flow": "cobranca_boleto", "contact": {"id": "c-1"')
            await writer.drain()
            writer.close()

            def said() -> list[str]:
                return [r.getMessage() for r in caplog.records if r.name == "disparo.api"]

            await until(lambda: bool(said()), "the hang-up said in the log")
        finally:
            await runner.cleanup()
        assert await h.engine.store.get_contact("c-1") is None

    assert [r.levelname for r in caplog.records if r.name == "disparo.api"] == ["INFO"]
    assert said()[0].startswith(
        "POST /v1/runs from 127.0.0.1 closed the connection before its body arrived in full"
    )


async def test_a_request_that_is_not_valid_http_is_warned_about_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = b"Authorization: Bearer " + b"s3cr3t" * 1500 + b"\r\n"  # a line over 8190 bytes
    async with harness(settings_for(tmp_path)) as h:
        client = TestClient(TestServer(build_app(h.engine)))
        await client.start_server()
        try:
            answers = []
            for advance in (0, 0, 61):
                h.clock.advance(advance)
                reader, writer = await asyncio.open_connection(client.host, client.port)
                writer.write(b"GET /v1/runs/r-1 HTTP/1.1\r\nHost: x\r\n" + token + b"\r\n")
                answers.append(await asyncio.wait_for(reader.read(), 10))  # aiohttp closes
                writer.close()
        finally:
            await client.close()

    assert all(a.startswith(b"HTTP/1.0 400 Bad Request\r\n") for a in answers)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "a request from 127.0.0.1 that is not valid HTTP answered 400 by aiohttp: "
        "Got more than 8190 bytes when reading",
        "a request from 127.0.0.1 that is not valid HTTP answered 400 by aiohttp: "
        "Got more than 8190 bytes when reading (1 more since the last one logged)",
    ]
