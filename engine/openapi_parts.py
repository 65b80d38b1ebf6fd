"""Building blocks of the OpenAPI document (``engine.openapi``): operations, their
parameters, bodies and answers, and the error answers with the codes they carry."""

from __future__ import annotations

from typing import Any

from engine.openapi_examples import Examples
from engine.openapi_schemas import STRING, Schema, ref

# Error answers, by status: (components/responses name, when, the codes it carries
# unless an operation names its own).
ERRORS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "400": (
        "BadRequest",
        "the request is invalid: `error.details` names each field and why",
        ("VALIDATION_ERROR",),
    ),
    "401": (
        "Unauthorized",
        "no `Authorization: Bearer <api_token>`, or a wrong token",
        ("UNAUTHORIZED",),
    ),
    "404": ("NotFound", "no such run, message, contact, flow or path", ("NOT_FOUND",)),
    "405": (
        "MethodNotAllowed",
        "the path takes another method (the `Allow` header lists it)",
        ("METHOD_NOT_ALLOWED",),
    ),
    "408": (
        "BodyTimeout",
        "the body did not arrive in full within `server.body_timeout`; nothing was stored",
        ("BODY_TIMEOUT",),
    ),
    "409": (
        "Conflict",
        "the request conflicts with what is stored; it changed nothing",
        ("CONFLICT",),
    ),
    "413": ("TooLarge", "the body is larger than `server.max_body_bytes`", ("BODY_TOO_LARGE",)),
    "422": (
        "Unprocessable",
        "the flow is unknown, or does not start over HTTP",
        ("UNKNOWN_FLOW", "NOT_AN_API_FLOW"),
    ),
    "500": (
        "Internal",
        "a bug in disparo, logged with its traceback; retry later",
        ("INTERNAL",),
    ),
    "503": (
        "Unavailable",
        "the store is unavailable; retry later (nothing was changed)",
        ("STORE_UNAVAILABLE",),
    ),
}
# What every answer that reads the store may be besides its own.
COMMON = ("405", "500", "503")
NO_STORE = ("405", "500")
# The 400 codes of an operation that reads a JSON body.
BODY_400 = ("VALIDATION_ERROR", "INVALID_JSON")


def codes_of(codes: tuple[str, ...]) -> str:
    return "`code`: " + " or ".join(f"`{code}`" for code in codes)


def error_answer(status: str, codes: tuple[str, ...] | None, examples: Examples | None) -> Any:
    """A status's error answer: the shared one, or one naming this operation's codes."""
    name, when, usual = ERRORS[status]
    if codes is None and examples is None:
        return {"$ref": f"#/components/responses/{name}"}
    answer = json_answer(ref("Error"), f"{when}; {codes_of(codes or usual)}")
    if examples is not None:
        answer["content"]["application/json"]["examples"] = examples
    return answer


def json_answer(
    schema: Schema, description: str, examples: Examples | None = None
) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples is not None:
        media["examples"] = examples
    return {"description": description, "content": {"application/json": media}}


def json_body(schema: Schema, examples: Examples) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": schema, "examples": examples}},
    }


def path_param(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or STRING,
    }


def query_param(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema or STRING}


def limit_param(default: int, most: int) -> dict[str, Any]:
    return query_param(
        "limit",
        f"at most this many (1 to {most})",
        {"type": "integer", "default": default, "minimum": 1, "maximum": most},
    )


def operation(
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
    codes: dict[str, tuple[str, ...]] | None = None,
    error_examples: dict[str, Examples] | None = None,
) -> dict[str, Any]:
    responses = dict(answers)
    for status in (*errors, *common):
        if status not in responses:
            own = (codes or {}).get(status)
            responses[status] = error_answer(status, own, (error_examples or {}).get(status))
    described: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [operation_id.split("_")[0]] if not public else ["operations"],
        "responses": dict(sorted(responses.items())),
    }
    if description:
        described["description"] = description
    if parameters:
        described["parameters"] = parameters
    if body is not None:
        described["requestBody"] = body
    if public:
        described["security"] = []
    return described
