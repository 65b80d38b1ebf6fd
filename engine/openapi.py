"""The OpenAPI 3.1 description of disparo's HTTP API.

``disparo openapi`` prints it and ``GET /v1/openapi.json`` serves it, so an
integrating team can generate a client, import the API into Postman or Insomnia, or
browse it in Swagger UI. The tests hold it to the app: every route is described and
nothing else is, it is a valid OpenAPI 3.1 document, and every answer the API tests
receive has a status and a body it describes.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from engine import __version__
from engine import openapi_examples as examples
from engine.api_models import (
    CONTACT_ID_MAX,
    DECISIONS_LIMIT,
    DECISIONS_MAX,
    IDEMPOTENCY_KEY_MAX,
    MESSAGES_LIMIT,
    MESSAGES_MAX,
    RUN_FILTERS,
)
from engine.openapi_parts import (
    BODY_400,
    ERRORS,
    NO_STORE,
    codes_of,
    json_answer,
    json_body,
    limit_param,
    operation,
    path_param,
    query_param,
)
from engine.openapi_schemas import STRING, answer_schemas, ref, request_schemas

OPENAPI_PATH = "/v1/openapi.json"

RUN_ID = path_param("run_id", "the run's id, as `POST /v1/runs` answered it")
MESSAGE_ID = path_param("message_id", "the message's id, as a run's `messages` give it")
CONTACT_ID = path_param(
    "contact_id",
    "your id of the contact",
    {**STRING, "minLength": 1, "maxLength": CONTACT_ID_MAX},
)
FLOW_FILTER = query_param(
    "flow", "only the runs of this flow (a flow neither loaded nor of the contact's runs: 404)"
)


def _runs() -> dict[str, Any]:
    return {
        "/v1/runs": {
            "post": operation(
                "runs_create",
                "Start a flow for a contact",
                {
                    "201": json_answer(ref("RunStarted"), "the run started", examples.RUN_STARTED),
                    "200": json_answer(
                        ref("RunStarted"), "the same request again: the run it started"
                    ),
                },
                ("400", "401", "408", "409", "413", "422"),
                description="The contact is created or updated with what the request holds. "
                "An `idempotency_key` (or the `Idempotency-Key` header) starts one run however "
                "often the request is retried; the same key with another request is a 409 "
                "`IDEMPOTENCY_KEY_REUSED` naming each field that differs. A 409 `CONFLICT` "
                "answers a start for a contact already in a one-at-a-time flow.",
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "description": "the body's `idempotency_key`, as a header "
                        "(both may be sent only when they agree)",
                        "schema": {**STRING, "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
                    }
                ],
                body=json_body(ref("RunIn"), examples.RUN_START),
                codes={"400": BODY_400, "409": ("IDEMPOTENCY_KEY_REUSED", "CONFLICT")},
                error_examples={"409": examples.KEY_REUSED, "422": examples.UNKNOWN_FLOW},
            )
        },
        "/v1/runs/{run_id}": {
            "parameters": [RUN_ID],
            "get": operation(
                "runs_get",
                "A run with its messages and history",
                {"200": json_answer(ref("Run"), "the run")},
                ("401", "404"),
                description="`messages` are the run's sends, `history` every step entered "
                "and every rule decision, oldest first.",
            ),
        },
        "/v1/runs/{run_id}/cancel": {
            "parameters": [RUN_ID],
            "post": operation(
                "runs_cancel",
                "Cancel a run with its pending timers and sends",
                {"200": json_answer(ref("CancelledRun"), "the cancelled run")},
                ("401", "404", "409"),
                description="409 `CONFLICT` when the run has already finished. A run moving "
                "at that moment (a report, a reply) is read again and cancelled; one that "
                "keeps moving is a 409 `STALE_RUN` that changed nothing: retry.",
                codes={"409": ("CONFLICT", "STALE_RUN")},
            ),
        },
    }


def _messages() -> dict[str, Any]:
    return {
        "/v1/messages": {
            "get": operation(
                "messages_list",
                "The ambiguous messages, oldest first",
                {"200": json_answer(ref("MessageList"), "the messages")},
                ("400", "401"),
                description="The messages whose provider may or may not have taken them: "
                "settle each by checking with the vendor, then resend it or leave it.",
                parameters=[
                    {
                        **query_param(
                            "status",
                            "`ambiguous` (the only status listed; find the others through "
                            "their run)",
                            {"type": "string", "enum": ["ambiguous"]},
                        ),
                        "required": True,
                    },
                    limit_param(MESSAGES_LIMIT, MESSAGES_MAX),
                ],
            )
        },
        "/v1/messages/{message_id}": {
            "parameters": [MESSAGE_ID],
            "get": operation(
                "messages_get",
                "A message: status, per-status times, provider id, payload, last error",
                {"200": json_answer(ref("Message"), "the message")},
                ("401", "404"),
                description="`status_at` says when it reached each status, `payload` what "
                "went to the provider, `last_error` why its latest try failed.",
            ),
        },
        "/v1/messages/{message_id}/resend": {
            "parameters": [MESSAGE_ID],
            "post": operation(
                "messages_resend",
                "Send an ambiguous message again",
                {"200": json_answer(ref("Message"), "the message, queued again")},
                ("401", "404", "409"),
                description="409 when the message is not `ambiguous` or its run has left "
                "that step. The contact may get it twice: resend only after the vendor said "
                "it did not send it.",
            ),
        },
    }


def _events() -> dict[str, Any]:
    return {
        "/v1/events": {
            "post": operation(
                "events_post",
                "Report replies, button taps, attendance, opt-outs and statuses",
                {
                    "202": json_answer(
                        ref("EventsAccepted"),
                        "stored; one outcome per event",
                        examples.EVENTS_ACCEPTED,
                    )
                },
                ("400", "401", "404", "408", "413"),
                description="One event or a list. The whole request is checked before any "
                "of it is stored: a 400 (a missing field, a field the event's type ignores, "
                "an `at` more than 5 minutes ahead) or a 404 (an unknown contact id or "
                "message) stores nothing, each problem named with its index in a list "
                "(`[1].contact`). An `id` seen before is a `duplicate` and changes nothing.",
                body=json_body(ref("EventsIn"), examples.EVENTS),
                codes={"400": BODY_400},
                error_examples={"400": examples.EVENT_INVALID},
            )
        }
    }


def _contacts() -> dict[str, Any]:
    contact = "/v1/contacts/{contact_id}"
    return {
        contact: {
            "parameters": [CONTACT_ID],
            "put": operation(
                "contacts_put",
                "Create or update a contact",
                {
                    "200": json_answer(ref("Contact"), "updated"),
                    "201": json_answer(ref("Contact"), "created", examples.CONTACT),
                },
                ("400", "401", "408", "413"),
                description="A field left out or `null` keeps what is stored (a phone, "
                "e-mail or time zone cannot be cleared, only replaced); `context` merges key "
                "by key (a key set to `null` is removed).",
                body=json_body(ref("ContactIn"), examples.CONTACT_PUT),
                codes={"400": BODY_400},
            ),
            "get": operation(
                "contacts_get",
                "A contact and its context",
                {"200": json_answer(ref("Contact"), "the contact")},
                ("400", "401", "404"),
                description="As stored, with when it last wrote, interacted and was "
                "messaged, its attendance and its opt-out.",
            ),
            "delete": operation(
                "contacts_erase",
                "Erase a contact and everything kept about them (LGPD art. 18, VI)",
                {"200": json_answer(ref("Erased"), "erased")},
                ("400", "401", "404"),
                description="In one transaction, with every run of theirs, its messages, "
                "events, timers and sends, and their own events. A contact that opted out "
                "keeps a bare row (its id and when it opted out), so a list it comes back on "
                "starts a run the opt-out rule skips; `forget_opt_out=true` deletes it too.",
                parameters=[
                    query_param(
                        "forget_opt_out",
                        "`true` erases the opt-out too",
                        {"type": "boolean", "default": False},
                    )
                ],
            ),
        },
        f"{contact}/export": {
            "parameters": [CONTACT_ID],
            "get": operation(
                "contacts_export",
                "Everything kept about a contact (LGPD art. 18, II and V)",
                {"200": json_answer(ref("Export"), "the contact, its runs and its events")},
                ("400", "401", "404"),
                description="The contact, its runs with their messages and history, and "
                "its own events (of no run): the copy a person may ask for.",
            ),
        },
        f"{contact}/runs": {
            "parameters": [CONTACT_ID],
            "get": operation(
                "contacts_runs",
                "A contact's runs, oldest first",
                {"200": json_answer(ref("ContactRuns"), "the runs, without messages and history")},
                ("400", "401", "404"),
                description="`GET /v1/runs/{run_id}` gives a run's messages and history.",
                parameters=[
                    query_param(
                        "status",
                        "only runs of this status; `open` is `active` or `waiting`, "
                        "`finished` any other",
                        {"type": "string", "enum": list(RUN_FILTERS)},
                    ),
                ],
            ),
        },
        f"{contact}/cancel": {
            "parameters": [CONTACT_ID],
            "post": operation(
                "contacts_cancel",
                "Cancel every open run of a contact",
                {"200": json_answer(ref("CancelledRuns"), "the runs cancelled")},
                ("400", "401", "404", "409"),
                description="Each run with its timers and sends, e.g. when the boleto was "
                "paid elsewhere, each in a commit of its own. A run that keeps moving while "
                "it is cancelled stops the request with a 409 `STALE_RUN` naming the runs "
                "cancelled before it: retry to cancel the rest.",
                parameters=[FLOW_FILTER],
                codes={"409": ("STALE_RUN",)},
            ),
        },
        f"{contact}/decisions": {
            "parameters": [CONTACT_ID],
            "get": operation(
                "contacts_decisions",
                "Why things were (not) sent: a contact's decisions and events, newest first",
                {"200": json_answer(ref("Decisions"), "the events")},
                ("400", "401", "404"),
                description="The newest `limit` events of the contact and its runs: rule "
                "decisions with their reasons, statuses, replies, steps. What `disparo why` "
                "shows.",
                parameters=[
                    query_param("flow", "only those of this flow's runs (404 as `cancel?flow=`)"),
                    limit_param(DECISIONS_LIMIT, DECISIONS_MAX),
                ],
            ),
        },
    }


def _operations() -> dict[str, Any]:
    text = {
        "description": "the metrics, in Prometheus' text format (version 0.0.4)",
        "content": {"text/plain": {"schema": STRING}},
    }
    return {
        "/webhooks/{provider}": {
            "parameters": [
                path_param("provider", "the provider's name in the config"),
                query_param("token", "the provider's `webhook_secret`, when it has one"),
            ],
            "post": operation(
                "webhooks_post",
                "A provider's status or inbound webhook",
                {"200": json_answer(ref("WebhookStored"), "stored durably")},
                ("400", "404", "408", "413"),
                description="Answered 200 only once what it reports is stored, so a "
                "vendor that retries on anything else loses nothing. An unknown provider "
                "and a wrong or missing `?token=` get the same 404.",
                body={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"description": "the provider's own JSON payload"}
                        }
                    },
                },
                public=True,
                codes={"400": ("INVALID_WEBHOOK",)},
            ),
        },
        "/healthz": {
            "get": operation(
                "healthz",
                "Readiness: the store answers",
                {
                    "200": json_answer(ref("Health"), "ready"),
                    "503": json_answer(ref("Health"), "the store does not answer"),
                },
                (),
                description="200 when the store answers within `server.health_timeout` "
                "and can record a change; point readiness probes and load balancers here.",
                public=True,
            ),
        },
        "/livez": {
            "get": operation(
                "livez",
                "Liveness: the process answers",
                {"200": json_answer(ref("Live"), "alive")},
                (),
                description="Without the store: point liveness probes here, since "
                "restarting a process does not fix a database that is down.",
                public=True,
                common=NO_STORE,
            ),
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "Prometheus metrics",
                {"200": text},
                (),
                description="Messages, rule decisions, runs, webhooks and their latency, "
                "due work's lag, provider errors and open circuits, for a Prometheus scrape.",
                public=True,
                common=NO_STORE,
            ),
        },
        OPENAPI_PATH: {
            "get": operation(
                "openapi",
                "This description of the API",
                {
                    "200": json_answer(
                        {"type": "object", "additionalProperties": True},
                        "the OpenAPI 3.1 document",
                    )
                },
                ("401",),
                description="Also printed by `disparo openapi`, with no engine running.",
                common=NO_STORE,
            ),
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``disparo serve``'s HTTP API."""
    paths = {**_runs(), **_messages(), **_events(), **_contacts(), **_operations()}
    used = {
        answer["$ref"].rpartition("/")[2]
        for item in paths.values()
        for operation in item.values()
        if isinstance(operation, dict)
        for answer in operation["responses"].values()
        if "$ref" in answer
    }
    responses = {
        name: json_answer(ref("Error"), f"{when}; {codes_of(codes)}")
        for name, when, codes in ERRORS.values()
        if name in used
    }
    # A copy of its own: a caller that edits it changes no other's (nor the examples).
    return copy.deepcopy(
        {
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
    )


@functools.cache
def document_json() -> str:
    """``document()`` as JSON, built once per process."""
    return json.dumps(document(), indent=2, ensure_ascii=False)
