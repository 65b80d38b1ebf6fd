"""The JSON Schema editors use: generated from the model, committed, never stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.flow.schema import SCHEMA_DIALECT, flow_json_schema, schema_text
from engine.flow.schema_docs import DESCRIPTIONS

COMMITTED = Path(__file__).resolve().parents[2] / "flows" / "flow.schema.json"


def test_the_committed_schema_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == schema_text(), (
        "flows/flow.schema.json is stale; run `disparo schema > flows/flow.schema.json`"
    )


def test_the_schema_is_draft_2020_12_with_an_id_a_title_and_a_description() -> None:
    schema = flow_json_schema()
    assert schema["$schema"] == SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]
    assert schema["title"] == "disparo flow"
    assert schema["description"]
    assert schema["required"] == ["flow", "start", "steps"]
    assert schema["additionalProperties"] is False
    assert json.loads(schema_text()) == schema
    assert schema_text().endswith("}\n")


def test_keys_are_named_as_designers_write_them() -> None:
    defs = flow_json_schema()["$defs"]
    assert "list" in defs["SendSpec"]["properties"]
    assert "set" in defs["Step"]["properties"]
    assert "else" in defs["BranchCase"]["properties"]
    assert "for" in defs["WaitFor"]["properties"]
    assert "list_" not in json.dumps(defs)


def test_editors_can_underline_a_step_without_a_kind_and_an_unknown_event() -> None:
    defs = flow_json_schema()["$defs"]
    assert {"required": ["send"]} in defs["Step"]["oneOf"]
    on = next(s for s in defs["Step"]["properties"]["on"]["anyOf"] if s.get("type") == "object")
    assert on["additionalProperties"] is False
    assert list(on["patternProperties"]) == [
        r"^(sent|delivered|read|failed|reply|skipped|timeout|(button|choice)\.[^\s]+)$"
    ]
    wait = defs["Step"]["properties"]["wait"]["anyOf"]
    assert {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*[dhms]\s*)+$"} in wait
    assert {"$ref": "#/$defs/WaitFor"} in wait


def test_editors_can_underline_too_many_buttons_sections_and_rows() -> None:
    # Counts are fixed in the file; string lengths are not (Jinja renders them later).
    defs = flow_json_schema()["$defs"]
    buttons = defs["SendSpec"]["properties"]["buttons"]
    assert (buttons["minItems"], buttons["maxItems"]) == (1, 3)
    assert defs["ListSpec"]["properties"]["sections"]["maxItems"] == 10
    assert defs["ListSectionSpec"]["properties"]["rows"]["maxItems"] == 10


def test_a_bare_api_trigger_is_valid_in_the_editor_as_it_is_for_check() -> None:
    # `- api:` reads as null; the loader takes it as `{}`.
    api = flow_json_schema()["$defs"]["ApiTrigger"]["properties"]["api"]
    assert {"type": "null"} in api["anyOf"]


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``Model.key`` -> the key's schema, over the root and every ``$defs`` model."""
    models = [("Flow", schema), *schema["$defs"].items()]
    return {
        f"{model}.{key}": prop
        for model, definition in models
        for key, prop in definition.get("properties", {}).items()
    }


def test_every_key_a_designer_can_write_says_what_it_does_on_hover() -> None:
    unexplained = [
        key for key, prop in _properties(flow_json_schema()).items() if not prop.get("description")
    ]
    assert unexplained == [], "describe them in engine/flow/schema_docs.py"


def test_no_description_is_kept_for_a_key_the_flow_format_no_longer_has() -> None:
    assert sorted(set(DESCRIPTIONS) - set(_properties(flow_json_schema()))) == []
