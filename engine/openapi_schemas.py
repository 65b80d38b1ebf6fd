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
    """``schema`` or null, written as pydantic writes the request bodies' optionals."""
    return {"anyOf": [schema, {"type": "null"}]}


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
MESSAGE_STATUSES = [str(s) for s in MessageStatus]

# The enums of the request bodies that get a name of their own, so a generated
# client has ``EventType`` rather than ``Type1`` or ``EventInStatusType0``:
# (model, field, name).
_NAMED_ENUMS = (
    ("EventIn", "type", "EventType"),
    ("EventIn", "channel", "Channel"),
    ("EventIn", "status", "ReportedStatus"),
    ("Attachment", "type", "AttachmentType"),
)


def request_schemas() -> dict[str, Schema]:
    """RunIn, ContactIn, EventIn and what they hold, as pydantic validates them; the
    body of ``POST /v1/events`` (one event or a list) as ``EventsIn``."""
    _, top = models_json_schema(
        [(RunIn, "validation"), (ContactIn, "validation"), (EventIn, "validation")],
        ref_template=REF,
    )
    schemas: dict[str, Schema] = top["$defs"]
    for schema in schemas.values():
        for prop in schema["properties"].values():
            prop.pop("title", None)  # pydantic's "Button Id": the name said again
    for model, name, component in _NAMED_ENUMS:
        prop = schemas[model]["properties"][name]
        options = prop.get("anyOf", [prop])
        (enum,) = (option for option in options if "enum" in option)
        schemas[component] = {"type": "string", "enum": enum["enum"]}
        for key in ("type", "enum"):
            enum.pop(key)
        enum["$ref"] = REF.format(model=component)
    schemas["EventList"] = {
        **array(ref("EventIn")),
        "minItems": 1,
        "description": "Events checked as one: if any is refused, none is stored.",
    }
    schemas["EventsIn"] = {
        "description": "One event, or a list of at least one.",
        "oneOf": [ref("EventIn"), ref("EventList")],
    }
    return schemas


# Every `code` an error answer may carry, for the Error schema's description.
ERROR_CODES = (
    "VALIDATION_ERROR",
    "INVALID_JSON",
    "INVALID_WEBHOOK",
    "UNAUTHORIZED",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "BODY_TIMEOUT",
    "CONFLICT",
    "IDEMPOTENCY_KEY_REUSED",
    "STALE_RUN",
    "BODY_TOO_LARGE",
    "UNKNOWN_FLOW",
    "NOT_AN_API_FLOW",
    "INTERNAL",
    "STORE_UNAVAILABLE",
)


def answer_schemas() -> dict[str, Schema]:
    run_summary = {
        "id": STRING,
        "flow": STRING,
        "version": {**STRING, "description": "the flow version the run started on"},
        "step": {**STRING, "description": "the step the run is at (or ended at)"},
        "status": ref("RunStatus"),
        "idempotency_key": nullable(STRING),
        "created_at": nullable(TIME),
        "updated_at": nullable(TIME),
    }
    run = {
        **run_summary,
        "contact_id": STRING,
        "vars": {**ANY_OBJECT, "description": "the run's variables; `context` is its own"},
        "messages": array(ref("Message")),
        "history": {**array(ref("Event")), "description": "oldest first"},
    }
    codes = ", ".join(f"`{code}`" for code in ERROR_CODES)
    return {
        "RunStatus": {
            "type": "string",
            "enum": [str(s) for s in RunStatus],
            "description": "`active` and `waiting` are open; the others are finished",
        },
        "MessageStatus": {"type": "string", "enum": MESSAGE_STATUSES},
        "EventOutcome": {
            "type": "string",
            "enum": list(get_args(IngestOutcome)),
            "description": "`duplicate`: an `id` seen before, nothing changed",
        },
        "HealthStatus": {"type": "string", "enum": ["ok", "unavailable"]},
        "FieldError": obj(
            {
                "field": {**STRING, "description": "e.g. `contact.phone`, `[1].at`"},
                "message": {**STRING, "description": "what is wrong with it, and what to do"},
            }
        ),
        "ErrorBody": obj(
            {
                "code": {
                    **STRING,
                    "description": f"stable, for programs: one of {codes}; a 500 may carry "
                    "the failing part's own code",
                },
                "message": {**STRING, "description": "for people"},
                "details": array(ref("FieldError")),
            }
        ),
        "Error": obj({"error": ref("ErrorBody")}, "Every error answer of disparo has this shape."),
        "RunStarted": obj({"run_id": STRING, "status": ref("RunStatus"), "step": STRING}),
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
                "provider": {**STRING, "description": "the provider's name in the config"},
                "channel": ref("Channel"),
                "status": ref("MessageStatus"),
                "status_at": {
                    "type": "object",
                    "description": "when the message reached each status",
                    "propertyNames": {"enum": MESSAGE_STATUSES},
                    "additionalProperties": TIME,
                },
                "provider_message_id": nullable(STRING),
                "idempotency_key": STRING,
                "attempts": INTEGER,
                "next_attempt_at": nullable(TIME),
                "last_error": nullable(STRING),
                "payload": {
                    **nullable(ANY_OBJECT),
                    "description": "what was sent to the provider",
                },
                "created_at": nullable(TIME),
            }
        ),
        "MessageList": obj({"messages": array(ref("Message"))}),
        "Attendance": obj(
            {
                "attendant": nullable(STRING),
                "since": TIME,
                "until": {**nullable(TIME), "description": "null: until `attendance_ended`"},
            },
            "A person attending the contact, since an `attendance_started` event.",
        ),
        "Contact": obj(
            {
                "id": STRING,
                "phone": {**nullable(STRING), "description": "E.164"},
                "email": nullable(STRING),
                "name": nullable(STRING),
                "tags": array(STRING),
                "context": ANY_OBJECT,
                "timezone": nullable(STRING),
                "last_inbound_at": nullable(TIME),
                "last_interaction_at": nullable(TIME),
                "last_outbound_at": nullable(TIME),
                "attendance": nullable(ref("Attendance")),
                "opted_out_at": nullable(TIME),
            }
        ),
        "EventsAccepted": obj(
            {
                "accepted": {**INTEGER, "description": "the events that were not duplicates"},
                "outcomes": {
                    **array(ref("EventOutcome")),
                    "description": "one per event, in the order given",
                },
            }
        ),
        "ContactRuns": obj({"contact_id": STRING, "runs": array(ref("RunSummary"))}),
        "CancelledRuns": obj({"contact_id": STRING, "cancelled": array(ref("RunSummary"))}),
        "Decisions": obj({"events": {**array(ref("Event")), "description": "newest first"}}),
        "ErasedCounts": obj(
            dict.fromkeys(("runs", "messages", "events", "due_work", "pending_statuses"), INTEGER),
            "How many of each were erased.",
        ),
        "Erased": obj(
            {"contact_id": STRING, "erased": ref("ErasedCounts"), "opt_out_kept": BOOLEAN}
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
            "properties": {
                "status": ref("HealthStatus"),
                "store": {**STRING, "description": "what is wrong with the store"},
            },
            "required": ["status"],
            "additionalProperties": False,
        },
        "Live": obj({"status": {"type": "string", "const": "alive"}}),
    }
