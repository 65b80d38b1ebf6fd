"""Examples of the OpenAPI document: the README tour's requests and their answers.

Each is an OpenAPI Example Object (``summary`` and ``value``) keyed by its name, as
Swagger UI and Postman list them. The tests check every example against its schema,
and send the request examples to the API, which must accept them.
"""

from __future__ import annotations

from typing import Any

Examples = dict[str, dict[str, Any]]

RUN_ID = "0b6a3c1e-8f0d-4f4e-9a57-3d2b8c41e6f2"
MESSAGE_ID = "5f1f7f8e-2a57-4c1b-8d1e-6f9b2a0c3d4e"


def _example(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


RUN_START: Examples = {
    "boleto": _example(
        "The README tour: the boleto reminder for Maria",
        {
            "flow": "cobranca_boleto",
            "contact": {"id": "c-1", "phone": "+55 11 99999-8888", "name": "Maria Souza"},
            "context": {"valor": 1670, "vencimento": "2026-11-30"},
            "idempotency_key": "boleto-c-1-2026-11",
        },
    )
}

EVENTS: Examples = {
    "button": _example(
        'Maria taps "Pagar agora"', {"type": "button", "contact": "c-1", "button_id": "pagar"}
    ),
    "status": _example(
        "A provider's read receipt of a message",
        {
            "type": "status",
            "message_id": MESSAGE_ID,
            "status": "read",
            "at": "2026-11-23T10:30:00-03:00",
            "id": "wamid.HBgNNTUxMTk5OTk5ODg4OBUCABIYFjNFQjA-read",
        },
    ),
    "list": _example(
        "A reply by phone and an attendance, in one request",
        [
            {
                "type": "reply",
                "contact": {"phone": "+5511999998888"},
                "text": "Já paguei",
                "id": "wamid.HBgNNTUxMTk5OTk5ODg4OBUCABIYFjNFQjB",
            },
            {"type": "attendance_started", "contact": "c-1", "attendant": "Ana"},
        ],
    ),
}

CONTACT_PUT: Examples = {
    "contact": _example(
        "A contact with a tag and a context key",
        {
            "phone": "+55 11 97777-6666",
            "name": "João Lima",
            "tags": ["vip"],
            "context": {"plano": "ouro"},
        },
    )
}

RUN_STARTED: Examples = {
    "started": _example(
        "The run waits at its first step",
        {"run_id": RUN_ID, "status": "waiting", "step": "lembrete"},
    )
}

EVENTS_ACCEPTED: Examples = {
    "one": _example("One event, stored", {"accepted": 1, "outcomes": ["queued"]}),
    "redelivered": _example(
        "A list whose second event was seen before",
        {"accepted": 1, "outcomes": ["queued", "duplicate"]},
    ),
}

CONTACT: Examples = {
    "contact": _example(
        "João, as the PUT example stores him",
        {
            "id": "c-2",
            "phone": "+5511977776666",
            "email": None,
            "name": "João Lima",
            "tags": ["vip"],
            "context": {"plano": "ouro"},
            "timezone": None,
            "last_inbound_at": None,
            "last_interaction_at": None,
            "last_outbound_at": None,
            "attendance": None,
            "opted_out_at": None,
        },
    )
}


def _error(code: str, message: str, *details: tuple[str, str]) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": field, "message": why} for field, why in details],
        }
    }


KEY_REUSED: Examples = {
    "key_reused": _example(
        "The tour's key again, with another amount",
        _error(
            "IDEMPOTENCY_KEY_REUSED",
            f"idempotency key 'boleto-c-1-2026-11' already started run {RUN_ID} with another "
            "request (it differs in context.valor); send that request unchanged to get its "
            "run, or use a new key for a new request",
            ("context.valor", f"differs from the request that started {RUN_ID}"),
        ),
    )
}

UNKNOWN_FLOW: Examples = {
    "unknown_flow": _example(
        "A misspelt flow",
        _error(
            "UNKNOWN_FLOW",
            "no flow named 'cobranca_bolet'",
            ("flow", "loaded flows: cobranca_boleto, pesquisa_nps, reengajamento_23h"),
        ),
    )
}

EVENT_INVALID: Examples = {
    "invalid": _example(
        "A button event without its button_id",
        _error(
            "VALIDATION_ERROR",
            "the event is invalid; nothing of the request was stored",
            ("button_id", "a button needs 'button_id', the id of the button or row chosen"),
        ),
    )
}
