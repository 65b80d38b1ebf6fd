"""The OpenAPI 3.1 description of disparo's HTTP API.

``disparo openapi`` prints it and ``GET /v1/openapi.json`` serves it, so an
integrating team can generate a client, import the API into Postman or Insomnia, or
browse it in Swagger UI. The tests hold it to the app: every route is described and
nothing else is, it is a valid OpenAPI 3.1 document, and every answer the API tests
receive has a status and a body it describes.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from engine import __version__
from engine.openapi_schemas import (
    STRING,
    Schema,
    answer_schemas,
    array,
    ref,
    request_schemas,
)

OPENAPI_PATH = "/v1/openapi.json"

# Error answers every operation may give, by status, as components/responses.
ERRORS: dict[str, tuple[str, str]] = {
    "400": ("BadRequest", "the request is invalid: `error.details` names each field and why"),
    "401": ("Unauthorized", "no `Authorization: Bearer <api_token>`, or a wrong token"),
    "404": ("NotFound", "no such run, message, contact, flow or path"),
    "405": ("MethodNotAllowed", "the path takes another method (the `Allow` header lists it)"),
    "408": ("BodyTimeout", "the body did not arrive in full within `server.body_timeout`"),
    "409": ("Conflict", "the request conflicts with what is stored; it changed nothing"),
    "413": ("TooLarge", "the body is larger than `server.max_body_bytes`"),
    "422": ("Unprocessable", "the flow is unknown, or does not start over HTTP"),
    "500": ("Internal", "a bug in disparo, logged with its traceback; retry later"),
    "503": ("Unavailable", "the store is unavailable; retry later (nothing was changed)"),
}
# What every answer that reads the store may be besides its own.
COMMON = ("405", "500", "503")
NO_STORE = ("405", "500")


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": STRING,
    }


def _query(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema or STRING}


def _operation(
    operation_id: str,
    summary: str,
    answers: dict[str, dict[str, Any]],
    errors: tuple[str, ...],
    *,
    description: str = "",
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
    common: tuple[str, ...] = COMMON,
) -> dict[str, Any]:
    responses = dict(answers)
    for status in (*errors, *common):
        responses.setdefault(status, {"$ref": f"#/components/responses/{ERRORS[status][0]}"})
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [operation_id.split("_")[0]] if not public else ["operations"],
        "responses": dict(sorted(responses.items())),
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    return operation


RUN_ID = _path_param("run_id", "the run's id, as `POST /v1/runs` answered it")
MESSAGE_ID = _path_param("message_id", "the message's id")
CONTACT_ID = _path_param("contact_id", "your id of the contact (1 to 200 characters)")
FLOW_FILTER = _query("flow", "only the runs of this flow")


def _runs() -> dict[str, Any]:
    return {
        "/v1/runs": {
            "post": _operation(
                "runs_create",
                "Start a flow for a contact",
                {
                    "201": _json(ref("RunStarted"), "the run started"),
                    "200": _json(ref("RunStarted"), "the same request again: the run it started"),
                },
                ("400", "401", "408", "409", "413", "422"),
                description="The contact is created or updated with what the request holds. "
                "An `idempotency_key` (or the `Idempotency-Key` header) starts one run however "
                "often the request is retried; the same key with another request is a 409 "
                "`IDEMPOTENCY_KEY_REUSED` naming each field that differs. A 409 also answers "
                "a start for a contact already in a one-at-a-time flow.",
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "description": "the body's `idempotency_key`, as a header "
                        "(both may be sent only when they agree)",
                        "schema": {**STRING, "minLength": 1, "maxLength": 200},
                    }
                ],
                body={"required": True, "content": {"application/json": {"schema": ref("RunIn")}}},
            )
        },
        "/v1/runs/{run_id}": {
            "parameters": [RUN_ID],
            "get": _operation(
                "runs_get",
                "A run with its messages and history",
                {"200": _json(ref("Run"), "the run")},
                ("401", "404"),
            ),
        },
        "/v1/runs/{run_id}/cancel": {
            "parameters": [RUN_ID],
            "post": _operation(
                "runs_cancel",
                "Cancel a run with its pending timers and sends",
                {"200": _json(ref("CancelledRun"), "the cancelled run")},
                ("401", "404", "409"),
                description="409 when the run has already finished.",
            ),
        },
    }


def _messages() -> dict[str, Any]:
    return {
        "/v1/messages": {
            "get": _operation(
                "messages_list",
                "The ambiguous messages, oldest first",
                {"200": _json(ref("MessageList"), "the messages")},
                ("400", "401"),
                description="The messages whose provider may or may not have taken them: "
                "settle each by checking with the vendor, then resend it or leave it.",
                parameters=[
                    {**_query("status", "`ambiguous` (the only status listed)"), "required": True},
                    _query("limit", "at most this many", {"type": "integer", "default": 100}),
                ],
            )
        },
        "/v1/messages/{message_id}": {
            "parameters": [MESSAGE_ID],
            "get": _operation(
                "messages_get",
                "A message: status, per-status times, provider id, payload, last error",
                {"200": _json(ref("Message"), "the message")},
                ("401", "404"),
            ),
        },
        "/v1/messages/{message_id}/resend": {
            "parameters": [MESSAGE_ID],
            "post": _operation(
                "messages_resend",
                "Send an ambiguous message again",
                {"200": _json(ref("Message"), "the message, queued again")},
                ("401", "404", "409"),
                description="409 when the message is not `ambiguous`. The contact may get it "
                "twice: resend only after the vendor said it did not send it.",
            ),
        },
    }


def _events() -> dict[str, Any]:
    events = {"oneOf": [ref("EventIn"), {**array(ref("EventIn")), "minItems": 1}]}
    return {
        "/v1/events": {
            "post": _operation(
                "events_post",
                "Report replies, button taps, attendance, opt-outs and statuses",
                {"202": _json(ref("EventsAccepted"), "stored; one outcome per event")},
                ("400", "401", "404", "408", "413"),
                description="One event or a list. The whole request is checked before any "
                "of it is stored: a 400 or 404 stores nothing. An `id` seen before is a "
                "`duplicate` and changes nothing.",
                body={"required": True, "content": {"application/json": {"schema": events}}},
            )
        }
    }


def _contacts() -> dict[str, Any]:
    contact = "/v1/contacts/{contact_id}"
    body = {"required": True, "content": {"application/json": {"schema": ref("ContactIn")}}}
    return {
        contact: {
            "parameters": [CONTACT_ID],
            "put": _operation(
                "contacts_put",
                "Create or update a contact",
                {
                    "200": _json(ref("Contact"), "updated"),
                    "201": _json(ref("Contact"), "created"),
                },
                ("400", "401", "408", "413"),
                description="A field left out or `null` keeps what is stored; `context` "
                "merges key by key (a key set to `null` is removed).",
                body=body,
            ),
            "get": _operation(
                "contacts_get",
                "A contact and its context",
                {"200": _json(ref("Contact"), "the contact")},
                ("400", "401", "404"),
            ),
            "delete": _operation(
                "contacts_erase",
                "Erase a contact and everything kept about them (LGPD art. 18, VI)",
                {"200": _json(ref("Erased"), "erased")},
                ("400", "401", "404"),
                parameters=[
                    _query(
                        "forget_opt_out",
                        "`true` erases the opt-out too (by default it is kept)",
                        {"type": "string", "enum": ["true", "false"], "default": "false"},
                    )
                ],
            ),
        },
        f"{contact}/export": {
            "parameters": [CONTACT_ID],
            "get": _operation(
                "contacts_export",
                "Everything kept about a contact (LGPD art. 18, II and V)",
                {"200": _json(ref("Export"), "the contact, its runs and its events")},
                ("400", "401", "404"),
            ),
        },
        f"{contact}/runs": {
            "parameters": [CONTACT_ID],
            "get": _operation(
                "contacts_runs",
                "A contact's runs, oldest first",
                {"200": _json(ref("ContactRuns"), "the runs, without messages and history")},
                ("400", "401", "404"),
                parameters=[
                    _query("status", "a run status, or `open` or `finished`"),
                ],
            ),
        },
        f"{contact}/cancel": {
            "parameters": [CONTACT_ID],
            "post": _operation(
                "contacts_cancel",
                "Cancel every open run of a contact",
                {"200": _json(ref("CancelledRuns"), "the runs cancelled")},
                ("400", "401", "404"),
                parameters=[FLOW_FILTER],
            ),
        },
        f"{contact}/decisions": {
            "parameters": [CONTACT_ID],
            "get": _operation(
                "contacts_decisions",
                "Why things were (not) sent: a contact's decisions and events, newest first",
                {"200": _json(ref("Decisions"), "the events")},
                ("400", "401", "404"),
                parameters=[
                    _query("flow", "only those of this flow's runs"),
                    _query(
                        "limit",
                        "at most this many",
                        {"type": "integer", "default": 200, "minimum": 1, "maximum": 10000},
                    ),
                ],
            ),
        },
    }


def _operations() -> dict[str, Any]:
    text = {"description": "the metrics", "content": {"text/plain": {"schema": STRING}}}
    return {
        "/webhooks/{provider}": {
            "parameters": [
                _path_param("provider", "the provider's name in the config"),
                _query("token", "the provider's `webhook_secret`, when it has one"),
            ],
            "post": _operation(
                "webhooks_post",
                "A provider's status or inbound webhook",
                {"200": _json(ref("WebhookStored"), "stored durably")},
                ("400", "404", "408", "413"),
                description="Answered 200 only once what it reports is stored, so a "
                "vendor that retries on anything else loses nothing. An unknown provider "
                "and a wrong or missing `?token=` get the same 404.",
                body={"required": True, "content": {"application/json": {"schema": {}}}},
                public=True,
            ),
        },
        "/healthz": {
            "get": _operation(
                "healthz",
                "Readiness: the store answers",
                {
                    "200": _json(ref("Health"), "ready"),
                    "503": _json(ref("Health"), "the store does not answer"),
                },
                (),
                public=True,
            ),
        },
        "/livez": {
            "get": _operation(
                "livez",
                "Liveness: the process answers",
                {"200": _json(ref("Live"), "alive")},
                (),
                public=True,
                common=NO_STORE,
            ),
        },
        "/metrics": {
            "get": _operation(
                "metrics", "Prometheus metrics", {"200": text}, (), public=True, common=NO_STORE
            ),
        },
        OPENAPI_PATH: {
            "get": _operation(
                "openapi",
                "This description of the API",
                {"200": _json({"type": "object"}, "the OpenAPI 3.1 document")},
                ("401",),
                common=NO_STORE,
            ),
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``disparo serve``'s HTTP API."""
    responses = {name: _json(ref("Error"), description) for name, description in ERRORS.values()}
    paths = {**_runs(), **_messages(), **_events(), **_contacts(), **_operations()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "disparo",
            "version": __version__,
            "description": "Outbound orchestration for conversational bots: start flows "
            "for contacts, report their replies and statuses, read what was sent and why.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "`make run`"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": "runs", "description": "a flow's run for one contact"},
            {"name": "messages", "description": "what runs sent"},
            {"name": "events", "description": "what contacts and providers did"},
            {"name": "contacts", "description": "contacts, their data and their runs"},
            {"name": "operations", "description": "webhooks, health and metrics"},
            {"name": "openapi", "description": "this document"},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the config's `api_token`",
                }
            },
            "responses": responses,
            "schemas": dict(sorted({**request_schemas(), **answer_schemas()}.items())),
        },
    }


@functools.cache
def document_json() -> str:
    """``document()`` as JSON, built once per process."""
    return json.dumps(document(), indent=2, ensure_ascii=False)
