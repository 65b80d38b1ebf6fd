"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.contract.conftest import fresh_postgres_schema, postgres_dsn_or_skip
from tests.integration.engine_kit import Harness, harness, settings_for
from tests.integration.openapi_conformance import checked_client


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Harness]]:
    """The HTTP API of an engine on a virtual clock (``Harness``), bodies up to 4 KiB.

    Every answer it gives is checked against the OpenAPI document: a status the
    document does not list, or a body its schema refuses, fails the test."""
    settings = settings_for(tmp_path, server={"max_body_bytes": 4096})
    async with harness(settings) as h, checked_client(h.engine) as client:
        yield client, h


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The ``storage`` setting of engines sharing one store: a SQLite file, then a
    fresh PostgreSQL schema (skipped without ``DISPARO_TEST_POSTGRES_DSN``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'disparo.db'}"
        return
    async for dsn in fresh_postgres_schema(postgres_dsn_or_skip()):
        yield dsn
