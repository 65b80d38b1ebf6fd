"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine.api import build_app
from tests.integration.engine_kit import Harness, harness, settings_for


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Harness]]:
    """The HTTP API of an engine on a virtual clock (``Harness``), bodies up to 4 KiB."""
    settings = settings_for(tmp_path, server={"max_body_bytes": 4096})
    async with harness(settings) as h:
        client = TestClient(TestServer(build_app(h.engine)))
        await client.start_server()
        try:
            yield client, h
        finally:
            await client.close()
