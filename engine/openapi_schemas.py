"""JSON Schemas (OpenAPI 3.1 dialect) of what disparo's HTTP API answers and takes.

Request bodies come from the pydantic models that validate them
(``engine.api_models``), so they cannot drift from what the API accepts. Answers are
written here, after the views that build them (``engine.api_views``,
``engine.contact_data``, the handlers); each object lists every field and allows no
other, and the tests check every answer the API tests receive against them.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic.json_schema import models_json_schema

from engine.api_models import ContactIn, EventIn, RunIn
from engine.models import MessageStatus, RunStatus
from storage.base import IngestOutcome

REF = "#/components/schemas/{model}"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], description: str = "") -> Schema:
    """An object with exactly these fields, all of them present."""
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
RUN_STATUS: Schema = {"type": "string", "enum": [str(s) for s in RunStatus]}
MESSAGE_STATUS: Schema = {"type": "string", "enum": [str(s) for s in MessageStatus]}


def request_schemas() -> dict[str, Schema]:
    """RunIn, ContactIn, EventIn and what they hold, as pydantic validates them."""
    _, top = models_json_schema(
        [(RunIn, "validation"), (ContactIn, "validation"), (EventIn, "validation")],
        ref_template=REF,
    )
    schemas: dict[str, Schema] = top["$defs"]
    return schemas


def answer_schemas() -> dict[str, Schema]:
    run_summary = {
        "id": STRING,
        "flow": STRING,
        "version": {**STRING, "description": "the flow version the run started on"},
        "step": STRING,
        "status": RUN_STATUS,
        "idempotency_key": nullable(STRING),
        "created_at": nullable(TIME),
        "updated_at": nullable(TIME),
    }
    run = {
        **run_summary,
        "contact_id": STRING,
        "vars": ANY_OBJECT,
        "messages": array(ref("Message")),
        "history": {**array(ref("Event")), "description": "oldest first"},
    }
    return {
        "Error": obj(
            {
                "error": obj(
                    {
                        "code": {**STRING, "description": "stable, for programs"},
                        "message": {**STRING, "description": "for people"},
                        "details": array(
                            obj(
                                {
                                    "field": {
                                        **STRING,
                                        "description": "e.g. `contact.phone`, `[1].at`",
                                    },
                                    "message": STRING,
                                }
                            )
                        ),
                    }
                )
            },
            "Every error answer of disparo has this shape.",
        ),
        "RunStarted": obj({"run_id": STRING, "status": RUN_STATUS, "step": STRING}),
        "RunSummary": obj(run_summary),
        "Run": obj(run),
        "CancelledRun": obj({"run_id": STRING, **run}),
        "Event": obj(
            {
                "id": INTEGER,
                "kind": {**STRING, "description": "e.g. `decision`, `status.read`"},
                "at": TIME,
                "run_id": nullable(STRING),
                "message_id": nullable(STRING),
                "data": ANY_OBJECT,
            }
        ),
        "Message": obj(
            {
                "id": STRING,
                "run_id": STRING,
                "contact_id": STRING,
                "flow": STRING,
                "step": STRING,
                "provider": STRING,
                "channel": STRING,
                "status": MESSAGE_STATUS,
                "status_at": {
                    "type": "object",
                    "description": "when the message reached each status",
                    "propertyNames": {"enum": MESSAGE_STATUS["enum"]},
                    "additionalProperties": TIME,
                },
                "provider_message_id": nullable(STRING),
                "idempotency_key": STRING,
                "attempts": INTEGER,
                "next_attempt_at": nullable(TIME),
                "last_error": nullable(STRING),
                "payload": nullable(ANY_OBJECT),
                "created_at": nullable(TIME),
            }
        ),
        "MessageList": obj({"messages": array(ref("Message"))}),
        "Contact": obj(
            {
                "id": STRING,
                "phone": nullable(STRING),
                "email": nullable(STRING),
                "name": nullable(STRING),
                "tags": array(STRING),
                "context": ANY_OBJECT,
                "timezone": nullable(STRING),
                "last_inbound_at": nullable(TIME),
                "last_interaction_at": nullable(TIME),
                "last_outbound_at": nullable(TIME),
                "attendance": nullable(
                    obj({"attendant": nullable(STRING), "since": TIME, "until": nullable(TIME)})
                ),
                "opted_out_at": nullable(TIME),
            }
        ),
        "EventsAccepted": obj(
            {
                "accepted": {**INTEGER, "description": "the events that were not duplicates"},
                "outcomes": {
                    **array({"type": "string", "enum": list(get_args(IngestOutcome))}),
                    "description": "one per event, in the order given",
                },
            }
        ),
        "ContactRuns": obj({"contact_id": STRING, "runs": array(ref("RunSummary"))}),
        "CancelledRuns": obj({"contact_id": STRING, "cancelled": array(ref("RunSummary"))}),
        "Decisions": obj({"events": {**array(ref("Event")), "description": "newest first"}}),
        "Erased": obj(
            {
                "contact_id": STRING,
                "erased": obj(
                    dict.fromkeys(
                        ("runs", "messages", "events", "due_work", "pending_statuses"), INTEGER
                    )
                ),
                "opt_out_kept": BOOLEAN,
            }
        ),
        "Export": obj(
            {
                "exported_at": TIME,
                "contact": ref("Contact"),
                "runs": array(ref("Run")),
                "events": {**array(ref("Event")), "description": "the contact's own, of no run"},
            }
        ),
        "WebhookStored": obj(
            {
                "accepted": INTEGER,
                "duplicates": INTEGER,
                "pending": {**INTEGER, "description": "statuses of messages not known yet"},
                "rejected": {**array(STRING), "description": "items of the body left out"},
            }
        ),
        "Health": {
            "type": "object",
            "properties": {"status": {"enum": ["ok", "unavailable"]}, "store": STRING},
            "required": ["status"],
            "additionalProperties": False,
        },
        "Live": obj({"status": {"const": "alive"}}),
    }
