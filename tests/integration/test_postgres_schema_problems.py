"""Several deployments on one PostgreSQL database each select a schema of their own
(``?search_path=`` in the DSN). What the commands say must name that schema: an
operator who migrated one schema and started engines on another (a typo, a schema
never created) is told which one is wrong and what to do about it, not sent to run
a `disparo migrate` that cannot work.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contract.conftest import fresh_postgres_schema, postgres_dsn_or_skip, with_search_path
from tests.integration.test_cli import disparo
from tests.integration.test_postgres_dsn_problems import _config_with

pytestmark = pytest.mark.postgres


@pytest.fixture
async def schema_dsn() -> AsyncIterator[str]:
    async for dsn in fresh_postgres_schema(postgres_dsn_or_skip()):
        yield dsn


@pytest.mark.parametrize("command", ["migrate", "status", "serve"])
def test_a_search_path_naming_no_schema_says_to_create_that_schema(
    tmp_path: Path, command: str
) -> None:
    missing = f"qa_nosuch_{uuid.uuid4().hex[:8]}"
    config = _config_with(tmp_path, with_search_path(postgres_dsn_or_skip(), missing))

    result = disparo(command, "--config", str(config), *(["--port", "9"] * (command == "serve")))

    assert result.returncode == 3, result.stderr
    assert missing in result.stderr
    assert f"CREATE SCHEMA {missing}" in result.stderr
    assert "pending migration" not in result.stderr


def test_pending_migrations_name_the_schema_they_are_pending_in(
    tmp_path: Path, schema_dsn: str
) -> None:
    schema = schema_dsn.rpartition("search_path=")[2]
    config = _config_with(tmp_path, schema_dsn)

    status = disparo("status", "--config", str(config))
    migrated = disparo("migrate", "--config", str(config))
    again = disparo("migrate", "--config", str(config))

    assert status.returncode == 4, status.stderr
    assert "11 pending migrations" in status.stderr
    assert f"schema {schema}" in status.stderr
    assert migrated.returncode == 0, migrated.stderr
    assert f"applied 11 migrations to 127.0.0.1:5432/test (schema {schema}):" in migrated.stdout
    assert f"(schema {schema}) is up to date" in again.stdout


def test_an_unknown_dsn_parameter_is_named_not_taken_for_a_missing_migration(
    tmp_path: Path, schema_dsn: str
) -> None:
    config = _config_with(tmp_path, schema_dsn + "&statement_timout=5s")

    result = disparo("migrate", "--config", str(config))

    assert result.returncode == 1, result.stderr
    assert "statement_timout" in result.stderr
    assert "disparo migrate" not in result.stderr
