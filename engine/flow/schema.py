"""The JSON Schema of flow files, generated from ``engine.flow.model.Flow``.

Editors that speak yaml-language-server read it through the modeline
``# yaml-language-server: $schema=./flow.schema.json`` and autocomplete and underline
flow files as designers type. ``flows/flow.schema.json`` is this schema, committed;
a test fails when it is stale (regenerate with ``disparo schema > flows/flow.schema.json``).
"""

from __future__ import annotations

import json
from typing import Any

from engine.flow.model import Flow
from engine.flow.schema_docs import describe

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:disparo:schema:flow"


def flow_json_schema() -> dict[str, Any]:
    """Draft 2020-12 schema of a flow file, keys named as users write them (aliases)."""
    schema = Flow.model_json_schema(by_alias=True, mode="validation")
    _close_keyed_maps(schema)
    describe(schema)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        **schema,
        "title": "disparo flow",
        "description": (
            "A conversation disparo runs for one contact at a time: triggers, rules and "
            "steps (send, wait, branch, set, handoff, end). See FLOW_FORMAT.md."
        ),
    }


def schema_text() -> str:
    """The schema as committed in flows/flow.schema.json: pretty, sorted, one final newline."""
    return json.dumps(flow_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _close_keyed_maps(node: Any) -> None:
    """Mappings whose keys follow a pattern (``on:``, ``set:``, ``steps:``) accept no
    other keys; pydantic leaves them open, so editors would not underline a bad key."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_keyed_maps(value)
    elif isinstance(node, list):
        for item in node:
            _close_keyed_maps(item)
