"""The OpenAPI document's examples are what the API takes and answers.

An integrating team copies them into Swagger UI or Postman and sends them: each must
fit its schema, each request example must be accepted, and each error example must
be the answer its mistake really gets.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator

from engine import openapi_examples as examples
from engine.openapi import document
from tests.integration.test_api import AUTH


def _examples(node: Any, where: str = "") -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """``(where, example, schema)`` for every example in the document: a media type's
    ``example`` and ``examples``, and a schema's ``examples``."""
    if isinstance(node, dict):
        if "schema" in node and ("examples" in node or "example" in node):
            named = node.get("examples", {})
            values = [(f"{where}.examples.{k}", v["value"]) for k, v in named.items()]
            if "example" in node:
                values.append((f"{where}.example", node["example"]))
            for at, value in values:
                yield at, value, node["schema"]
        if "type" in node and isinstance(node.get("examples"), list):
            for index, value in enumerate(node["examples"]):
                yield f"{where}.examples[{index}]", value, node
        for key, value in node.items():
            yield from _examples(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _examples(value, f"{where}[{index}]")


def test_every_example_fits_its_schema() -> None:
    doc = document()
    found = list(_examples(doc["paths"])) + list(_examples(doc["components"]))
    problems = []
    for where, value, schema in found:
        validator = Draft202012Validator({"components": doc["components"], "allOf": [schema]})
        problems += [f"{where}: {error.message[:200]}" for error in validator.iter_errors(value)]
    assert problems == []
    assert len(found) >= 10  # the request bodies', the answers' and the errors'


def test_the_walk_finds_an_example_that_does_not_fit() -> None:
    """The check above can fail: an example with a field too many is reported, and
    editing one document changes no other."""
    doc = document()
    body = doc["paths"]["/v1/runs"]["post"]["requestBody"]["content"]["application/json"]
    body["examples"]["boleto"]["value"]["flw"] = "typo"
    ((value, schema),) = [
        (value, schema)
        for where, value, schema in _examples(doc["paths"])
        if where.endswith("examples.boleto")
    ]
    validator = Draft202012Validator({"components": doc["components"], "allOf": [schema]})
    assert any("'flw' was unexpected" in e.message for e in validator.iter_errors(value))
    assert "flw" not in examples.RUN_START["boleto"]["value"]


def _value(named: examples.Examples, name: str) -> Any:
    return copy.deepcopy(named[name]["value"])


async def test_the_request_examples_are_accepted_as_the_answer_examples_show(api: Any) -> None:
    client, h = api

    started = await client.post("/v1/runs", json=_value(examples.RUN_START, "boleto"), headers=AUTH)
    assert started.status == 201, await started.text()
    run = await started.json()
    expected = _value(examples.RUN_STARTED, "started")
    assert {**run, "run_id": expected["run_id"]} == expected
    await h.engine.settle()
    (message,) = (await (await client.get(f"/v1/runs/{run['run_id']}", headers=AUTH)).json())[
        "messages"
    ]

    status = _value(examples.EVENTS, "status")
    status["message_id"] = message["id"]
    status["at"] = h.clock.now().isoformat()  # a report from now, not from the example's day
    for event in (_value(examples.EVENTS, "button"), status, _value(examples.EVENTS, "list")):
        answer = await client.post("/v1/events", json=event, headers=AUTH)
        assert answer.status == 202, (event, await answer.text())
        assert (await answer.json())["accepted"] == (len(event) if isinstance(event, list) else 1)

    put = await client.put(
        "/v1/contacts/c-2", json=_value(examples.CONTACT_PUT, "contact"), headers=AUTH
    )
    assert put.status == 201
    assert await put.json() == _value(examples.CONTACT, "contact")


async def test_the_error_examples_are_the_answers_those_mistakes_get(api: Any) -> None:
    client, _ = api
    tour = _value(examples.RUN_START, "boleto")
    started = await (await client.post("/v1/runs", json=tour, headers=AUTH)).json()

    misspelt = await client.post(
        "/v1/runs",
        json={"flow": "cobranca_bolet", "contact": tour["contact"]},
        headers=AUTH,
    )
    reused = await client.post(
        "/v1/runs", json={**tour, "context": {**tour["context"], "valor": 1700}}, headers=AUTH
    )
    no_button = await client.post(
        "/v1/events", json={"type": "button", "contact": "c-1"}, headers=AUTH
    )

    assert (misspelt.status, await misspelt.json()) == (
        422,
        _value(examples.UNKNOWN_FLOW, "unknown_flow"),
    )
    key_reused = _value(examples.KEY_REUSED, "key_reused")
    assert reused.status == 409
    assert _with_run_id(await reused.json(), started["run_id"]) == key_reused
    assert (no_button.status, await no_button.json()) == (
        400,
        _value(examples.EVENT_INVALID, "invalid"),
    )


def _with_run_id(answer: dict[str, Any], run_id: str) -> dict[str, Any]:
    """``answer`` with the example's run id where it names ``run_id``."""
    error = answer["error"]
    return {
        "error": {
            "code": error["code"],
            "message": error["message"].replace(run_id, examples.RUN_ID),
            "details": [
                {**d, "message": d["message"].replace(run_id, examples.RUN_ID)}
                for d in error["details"]
            ],
        }
    }
