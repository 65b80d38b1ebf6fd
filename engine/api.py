"""The HTTP API: /v1 (bearer auth), /webhooks/{provider}, /healthz, /livez, /metrics.

Errors are JSON ``{"error": {"code", "message", "details": [{"field", "message"}]}}``;
nothing is half-written on any error because every write is one store commit.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from engine import bad_http, message_resend
from engine.api_body import UNSTORABLE, read_json
from engine.api_models import (
    IDEMPOTENCY_KEY_MAX,
    MESSAGES_LIMIT,
    MESSAGES_MAX,
    RunIn,
    pydantic_details,
)
from engine.api_views import ALL_EVENTS, message_view, run_view
from engine.body_reads import BODY_READS, BodyReads, read_body
from engine.errors import (
    Conflict,
    DisparoError,
    FieldError,
    NotFound,
    ProviderRejected,
    RequestError,
    StaleRun,
    StoreUnavailable,
    UserInputError,
)
from engine.flow.model import ApiTrigger, Flow
from engine.health import HealthProbe
from engine.models import Run
from engine.openapi import OPENAPI_PATH, document_json
from engine.outage_log import OutageLog
from engine.runtime import Engine
from engine.settings import Settings
from engine.start_request import replayed_run
from engine.webhook_refusals import RefusalLog

log = logging.getLogger("disparo.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE = web.AppKey("engine", Engine)
OUTAGE = web.AppKey("outage", OutageLog)
REFUSALS = web.AppKey("refusals", RefusalLog)
HEALTH = web.AppKey("health", HealthProbe)


def error_response(
    status: int, code: str, message: str, details: list[FieldError] | None = None
) -> web.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": d.field, "message": d.message} for d in details or []],
        }
    }
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except RequestError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if exc.status == 408:
            response.force_close()  # RFC 9110: the rest of that body may never come
        return response
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[ENGINE].settings.server.max_body_bytes
        return error_response(
            413,
            "BODY_TOO_LARGE",
            f"the body is larger than {limit} bytes (server.max_body_bytes); send a smaller "
            "one, e.g. split a list of events into several requests",
        )
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = error_response(
            405, "METHOD_NOT_ALLOWED", f"{exc.method} is not allowed here; use {allowed}"
        )
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))  # RFC 9110
        return response
    except web.HTTPNotFound:  # no route: say so, not what an unknown run's 404 says
        hint = (
            "paths take no trailing slash"
            if len(request.path) > 1 and request.path.endswith("/")
            else "see the README's HTTP API section for the paths disparo serves"
        )
        return error_response(
            404, "NOT_FOUND", f"no such path: {request.method} {request.path}; {hint}"
        )
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason.upper().replace(" ", "_"), exc.reason)
        raise
    except StoreUnavailable as exc:
        request.app[OUTAGE].failed(exc)
        return error_response(503, exc.code, "the store is unavailable; retry later")
    except NotFound as exc:
        return error_response(404, exc.code, str(exc))
    except Conflict as exc:
        return error_response(409, exc.code, str(exc))
    except StaleRun as exc:  # it kept moving while the request tried to change it
        return error_response(409, exc.code, f"{exc}; {exc.outcome}")
    except UserInputError as exc:
        return error_response(400, exc.code, str(exc))
    except DisparoError as exc:
        log.exception("request failed: %s", exc)
        return error_response(500, exc.code, str(exc))
    except Exception:
        # A bug: the caller still gets the documented JSON shape, never a traceback or
        # what the exception says (it may quote a secret); the log has the traceback.
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(
            500,
            "INTERNAL",
            "disparo failed on an unexpected error, logged on the server with its "
            "traceback; retry later, and report it if it persists",
        )
    outage = request.app[OUTAGE]
    if outage.down and response.status < 400 and request.path not in ("/metrics", "/livez"):
        outage.succeeded()  # an answer of /v1, a webhook or /healthz: the store answered
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        expected = request.app[ENGINE].settings.api_token_value
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        # surrogateescape: a header of bytes that are not UTF-8 is a wrong token, not a 500
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.encode("utf-8", "surrogateescape"), expected.encode()
        ):
            response = error_response(
                401, "UNAUTHORIZED", "send `Authorization: Bearer <api_token>`"
            )
            response.headers["WWW-Authenticate"] = "Bearer"  # RFC 9110: the scheme it wants
            return response
    return await handler(request)


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestError(
            status=400,
            code="VALIDATION_ERROR",
            message="the request body is invalid",
            details=pydantic_details(exc),
        ) from None


async def create_run(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body = parse_body(RunIn, await read_json(request))
    try:
        contact_id = body.contact.contact_id()
    except ValueError as exc:
        raise RequestError.bad_field("contact", str(exc), str(exc)) from None
    key = _header_key(request, body.idempotency_key)
    loaded = engine.catalog.current.get(body.flow)
    if loaded is None or not startable_over_http(loaded.flow):
        contact = body.contact.upsert(contact_id)
        if key is not None and (
            replayed := await replayed_run(
                engine.store, flow=body.flow, contact=contact, context=body.context, key=key
            )
        ):
            # A retry of a request that started its run before the flow was taken off
            # disk, or lost its `api` trigger: the run exists (and goes on, on its version).
            return web.json_response(
                {"run_id": replayed.id, "status": str(replayed.status), "step": replayed.step}
            )
        if loaded is not None:
            raise not_started_over_http(loaded.flow)
        known = ", ".join(sorted(engine.catalog.current)) or "none"
        raise RequestError(
            status=422,
            code="UNKNOWN_FLOW",
            message=f"no flow named {body.flow!r}",
            details=[FieldError(field="flow", message=f"loaded flows: {known}")],
        )
    run, created = await engine.start_run(
        body.flow, body.contact.upsert(contact_id), context=body.context, idempotency_key=key
    )
    return web.json_response(
        {"run_id": run.id, "status": str(run.status), "step": run.step},
        status=201 if created else 200,
    )


def startable_over_http(flow: Flow) -> bool:
    """A flow starts from ``POST /v1/runs`` when it has an ``api`` trigger (a flow
    that lists no triggers has only that one)."""
    return any(isinstance(trigger, ApiTrigger) for trigger in flow.triggers)


def not_started_over_http(flow: Flow) -> RequestError:
    kinds = sorted(
        {type(trigger).__name__.removesuffix("Trigger").lower() for trigger in flow.triggers}
    )
    return RequestError(
        status=422,
        code="NOT_AN_API_FLOW",
        message=f"flow {flow.flow!r} does not start over HTTP",
        details=[
            FieldError(
                field="flow",
                message=f"its triggers are {', '.join(kinds)}; add `- api: {{}}` to its "
                "`triggers:` to start it with POST /v1/runs (or `disparo trigger` for a CSV)",
            )
        ],
    )


def _header_key(request: web.Request, in_body: str | None) -> str | None:
    """The run request's key: the body's ``idempotency_key`` or the ``Idempotency-Key``
    header (held to the same rules; both may be given only when they agree)."""
    header = request.headers.get("Idempotency-Key")
    if header is None or header == in_body:
        return in_body
    problem = None
    if in_body is not None:
        problem = "differs from the body's idempotency_key; send one of them"
    elif UNSTORABLE.search(header):  # bytes that are not UTF-8 read as lone surrogates
        problem = "not UTF-8 text; send the key in UTF-8 (or ASCII)"
    elif not 1 <= len(header) <= IDEMPOTENCY_KEY_MAX:
        problem = f"{len(header)} characters; 1 to {IDEMPOTENCY_KEY_MAX}"
    if problem is not None:
        raise RequestError.bad_field(
            "Idempotency-Key", problem, "the Idempotency-Key header is invalid"
        )
    return header


def id_in_path(request: web.Request, key: str, noun: str) -> str:
    """A run or message id from the URL; 404 at once for one with a NUL (``%00``): no
    id disparo makes holds one, and PostgreSQL would refuse the query (a 500)."""
    value = request.match_info[key]
    if "\x00" in value:
        raise NotFound(f"{noun} {value} does not exist")
    return value


async def get_run(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return web.json_response(
        await _run_document(engine, await engine.get_run(id_in_path(request, "run_id", "run")))
    )


async def cancel_run(request: web.Request) -> web.Response:
    """The cancelled run, as GET shows it (plus ``run_id``, as the start answers)."""
    engine = request.app[ENGINE]
    run = await engine.cancel_run(id_in_path(request, "run_id", "run"))
    return web.json_response({"run_id": run.id, **await _run_document(engine, run)})


async def _run_document(engine: Engine, run: Run) -> dict[str, Any]:
    # Every event of the run, as the export gives: a bound here would drop the start
    # of a long run's history (the oldest events) without a word.
    events = await engine.store.list_events(run_id=run.id, limit=ALL_EVENTS)
    messages = await engine.store.list_run_messages(run.id)
    return run_view(run, events, messages)


async def get_message(request: web.Request) -> web.Response:
    message = await request.app[ENGINE].get_message(id_in_path(request, "message_id", "message"))
    return web.json_response(message_view(message))


async def list_messages(request: web.Request) -> web.Response:
    """``?status=ambiguous[&limit=N]``: the messages an operator has to settle."""
    status = request.query.get("status")
    raw_limit = request.query.get("limit", str(MESSAGES_LIMIT))
    problems = []
    if status != "ambiguous":
        problems.append(
            FieldError(
                field="status",
                message="only ambiguous messages are listed (status=ambiguous); "
                "find the others through their run",
            )
        )
    limit = query_int(raw_limit, low=1, high=MESSAGES_MAX)
    if limit is None:
        problems.append(
            FieldError(field="limit", message=f"a whole number from 1 to {MESSAGES_MAX}")
        )
    if problems:
        raise RequestError(
            status=400, code="VALIDATION_ERROR", message="bad query", details=problems
        )
    assert limit is not None
    found = await request.app[ENGINE].store.list_ambiguous_messages(limit=limit)
    return web.json_response({"messages": [message_view(m) for m in found]})


def query_int(raw: str, *, low: int, high: int) -> int | None:
    """``raw`` as an int from ``low`` to ``high``, written in ASCII digits, else None
    (``str.isdigit`` also takes ``²`` and full-width digits)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(high)):
        return None
    value = int(raw)
    return value if low <= value <= high else None


async def resend_message(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    message = await message_resend.resend(
        engine.store,
        engine.catalog,
        id_in_path(request, "message_id", "message"),
        now=engine.clock.now(),
        default_timezone=engine.dispatcher.settings.default_timezone,
    )
    log.info(
        "message %s of run %s goes out again at an operator's request; the contact may "
        "get it twice",
        message.id,
        message.run_id,
    )
    engine.dispatcher.notify()
    return web.json_response(message_view(message))


def webhook_secret(provider: object) -> str | None:
    """The ``?token=`` a provider instance's webhook wants (its ``webhook_secret``)."""
    secret = getattr(getattr(provider, "config", None), "webhook_secret", None)
    return str(secret) if secret else None


def no_webhook() -> web.Response:
    """The answer to a webhook for a provider name the config lacks and to one with
    a wrong or no ``?token=``, alike: an outsider learns no provider names (the log
    tells the operator which it was)."""
    return error_response(
        404,
        "NOT_FOUND",
        "no webhook takes this URL; check the provider name in it and its ?token=",
    )


async def webhook(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    name = request.match_info["provider"]
    provider = engine.providers.get(name)
    if provider is None:
        request.app[REFUSALS].unknown(name, known=sorted(engine.providers))
        return no_webhook()
    secret = webhook_secret(provider)
    if secret:
        token = request.query.get("token", "")
        if not secrets.compare_digest(token.encode("utf-8", "surrogateescape"), secret.encode()):
            engine.metrics.webhooks.labels(name, "unauthorized").inc()
            request.app[REFUSALS].unauthorized(name, given="token" in request.query)
            return no_webhook()
    started = time.perf_counter()
    body = await read_body(request)
    try:
        outcome = await engine.ingest_webhook(name, body, dict(request.headers))
    except ProviderRejected as exc:
        engine.metrics.webhooks.labels(name, "rejected").inc()
        request.app[REFUSALS].body(name, str(exc))
        return error_response(400, "INVALID_WEBHOOK", str(exc))
    if outcome.errors:
        request.app[REFUSALS].items(name, outcome.errors)
    metrics = engine.metrics
    metrics.child(metrics.webhook_latency, name).observe(time.perf_counter() - started)
    metrics.child(metrics.webhooks, name, "stored").inc()
    return web.json_response(
        {
            "accepted": outcome.accepted,
            "duplicates": outcome.duplicates,
            "pending": outcome.pending,
            "rejected": outcome.errors,
        }
    )


async def healthz(request: web.Request) -> web.Response:
    exc = await request.app[HEALTH].check()
    if exc is not None:
        request.app[OUTAGE].failed(exc)
        return web.json_response({"status": "unavailable", "store": str(exc)}, status=503)
    request.app[OUTAGE].succeeded()
    return web.json_response({"status": "ok"})


async def livez(request: web.Request) -> web.Response:
    """Liveness: the process answers. The store is /healthz's (readiness): restarting a
    process does not fix a database that is down or read-only."""
    return web.json_response({"status": "alive"})


async def _close_health(app: web.Application) -> None:
    await app[HEALTH].close()


async def metrics(request: web.Request) -> web.Response:
    # The text format's full Content-Type (its version), as Prometheus content negotiation names it.
    return web.Response(
        body=request.app[ENGINE].metrics.render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=document_json(), content_type="application/json")


def server_options(settings: Settings) -> dict[str, Any]:
    """What ``web.AppRunner`` takes from the config: a connection idle (or sending its
    headers) for ``server.idle_timeout`` seconds is closed."""
    return {"keepalive_timeout": settings.server.idle_timeout}


def build_app(engine: Engine) -> web.Application:
    from engine import api_contacts, api_events  # their handlers import this module

    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=engine.settings.server.max_body_bytes,
    )
    app[ENGINE] = engine
    app[REFUSALS] = RefusalLog(engine.clock)
    app[BODY_READS] = BodyReads(engine.settings.server.body_timeout, engine.clock)
    bad_http.watch(app, engine.clock)
    app[OUTAGE] = OutageLog(log, "requests answer 503", "requests answered 503")
    app[HEALTH] = HealthProbe(lambda: engine.store.health(), engine.settings.server.health_timeout)
    app.on_cleanup.append(_close_health)
    app.router.add_post("/v1/runs", create_run)
    app.router.add_get("/v1/runs/{run_id}", get_run)
    app.router.add_post("/v1/runs/{run_id}/cancel", cancel_run)
    app.router.add_get("/v1/messages", list_messages)
    app.router.add_get("/v1/messages/{message_id}", get_message)
    app.router.add_post("/v1/messages/{message_id}/resend", resend_message)
    api_events.add_routes(app.router)
    api_contacts.add_routes(app.router)
    app.router.add_post("/webhooks/{provider}", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(OPENAPI_PATH, openapi)
    return app
