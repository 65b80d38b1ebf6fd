"""A client generated from the OpenAPI document runs the README tour.

What an integrating team does first: ``openapi-python-client generate`` on the
document, then call the API through the generated functions and models. The
generator must take the document without a warning, and the client must send what
the API accepts and read what it answers (models, enums, errors) as typed values.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from engine import openapi_examples as examples
from engine.openapi import document_json

PACKAGE = "disparo_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """What the generator printed; the client is importable as ``disparo_client``."""
    where = tmp_path_factory.mktemp("client")
    spec = where / "disparo-openapi.json"
    spec.write_text(document_json(), encoding="utf-8")
    # Its post-generation step formats the client with ruff, installed beside Python.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    command = [sys.executable, "-m", "openapi_python_client", "generate"]
    command += ["--path", str(spec), "--output-path", str(where / PACKAGE), "--meta", "none"]
    run = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PATH": path}, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(where))
    try:
        yield run.stdout + run.stderr
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_the_generator_takes_the_document_without_a_warning(generated: str) -> None:
    assert "Warning" not in generated, generated
    assert "Generating" in generated


async def test_the_generated_client_runs_the_readme_tour(generated: str, api: Any) -> None:
    server, h = api
    models = _module("models")
    runs_create, runs_get = _module("api.runs.runs_create"), _module("api.runs.runs_get")
    events_post = _module("api.events.events_post")
    contacts_get = _module("api.contacts.contacts_get")
    client = _module("client").AuthenticatedClient(
        base_url=str(server.make_url("")).rstrip("/"),
        token="test-token-0123456789",
        raise_on_unexpected_status=True,
    )
    async with client:
        tour = examples.RUN_START["boleto"]["value"]
        started = await runs_create.asyncio_detailed(
            client=client, body=models.RunIn.from_dict(tour)
        )
        assert started.status_code == 201
        assert isinstance(started.parsed, models.RunStarted)
        assert started.parsed.status is models.RunStatus.WAITING
        await h.engine.settle()

        button = examples.EVENTS["button"]["value"]
        accepted = await events_post.asyncio(client=client, body=models.EventIn.from_dict(button))
        assert accepted.outcomes == [models.EventOutcome.QUEUED]
        await h.engine.settle()

        run = await runs_get.asyncio(client=client, run_id=started.parsed.run_id)
        assert isinstance(run, models.Run)
        assert run.status is models.RunStatus.COMPLETED
        assert run.messages[0].status_at.additional_properties  # times by status

        maria = await contacts_get.asyncio(client=client, contact_id="c-1")
        assert isinstance(maria, models.Contact)
        assert maria.phone == "+5511999998888"

        unknown = await runs_create.asyncio_detailed(
            client=client,
            body=models.RunIn.from_dict({"flow": "cobranca_bolet", "contact": {"id": "c-1"}}),
        )
        assert unknown.status_code == 422
        assert isinstance(unknown.parsed, models.Error)
        assert unknown.parsed.error.code == "UNKNOWN_FLOW"
        assert unknown.parsed.error.details[0].field == "flow"
