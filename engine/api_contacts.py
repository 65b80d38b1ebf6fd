"""The contact endpoints of the HTTP API: a contact and its context, its runs,
its decisions, and a person's data on request (export and erasure)."""

from __future__ import annotations

from aiohttp import web

from engine import run_cancel
from engine.api import ENGINE, parse_body, query_int
from engine.api_body import read_json
from engine.api_models import (
    CONTACT_ID_MAX,
    DECISIONS_LIMIT,
    DECISIONS_MAX,
    RUN_FILTERS,
    ContactIn,
)
from engine.api_views import contact_view, event_view, run_summary
from engine.contact_data import erase_contact, erased_view, export_contact
from engine.errors import RequestError


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/contacts/{contact_id}", put_contact)
    router.add_get("/v1/contacts/{contact_id}", get_contact)
    router.add_delete("/v1/contacts/{contact_id}", delete_contact)
    router.add_get("/v1/contacts/{contact_id}/export", export_contact_data)
    router.add_get("/v1/contacts/{contact_id}/runs", list_contact_runs)
    router.add_post("/v1/contacts/{contact_id}/cancel", cancel_contact_runs)
    router.add_get("/v1/contacts/{contact_id}/decisions", get_decisions)


def contact_id_of(request: web.Request) -> str:
    """The contact id in the URL; 400 for one no contact can have."""
    contact_id = request.match_info["contact_id"]
    problem = None
    if len(contact_id) > CONTACT_ID_MAX:
        problem = f"{len(contact_id)} characters; at most {CONTACT_ID_MAX}"
    elif "\x00" in contact_id:
        problem = "it holds a NUL character (%00); remove it"
    if problem is not None:
        raise RequestError.bad_field(
            "id", problem, "the contact id in the URL is not one a contact can have"
        )
    return contact_id


async def put_contact(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    contact_id = contact_id_of(request)
    body = parse_body(ContactIn, await read_json(request))
    if body.id is not None and body.id != contact_id:
        raise RequestError.bad_field(
            "id", f"must be {contact_id!r} or absent", "the body's id differs from the URL's"
        )
    existed = await engine.store.get_contact(contact_id) is not None
    contact = await engine.upsert_contact(body.upsert(contact_id))
    return web.json_response(contact_view(contact), status=200 if existed else 201)


async def get_contact(request: web.Request) -> web.Response:
    contact = await request.app[ENGINE].get_contact(contact_id_of(request))
    return web.json_response(contact_view(contact))


async def delete_contact(request: web.Request) -> web.Response:
    contact_id = contact_id_of(request)
    forget = request.query.get("forget_opt_out", "false").lower()
    if forget not in ("true", "false"):
        raise RequestError.bad_field(
            "forget_opt_out",
            f"{forget!r} is not true/false",
            "forget_opt_out must be true or false",
        )
    erased = await erase_contact(
        request.app[ENGINE], contact_id, forget_opt_out=forget == "true", source="the API"
    )
    return web.json_response(erased_view(contact_id, erased))


async def export_contact_data(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    document = await export_contact(engine, contact_id_of(request), source="the API")
    return web.json_response(document)


async def list_contact_runs(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    contact_id = contact_id_of(request)
    wanted = request.query.get("status")
    if wanted is not None and wanted not in RUN_FILTERS:
        raise RequestError.bad_field(
            "status",
            f"{wanted!r} is not a run status",
            "status must be one of " + ", ".join(RUN_FILTERS),
        )
    await engine.get_contact(contact_id)  # 404 for an unknown contact
    runs = await engine.store.list_contact_runs(contact_id)
    if wanted is not None:
        runs = [run for run in runs if run.status in RUN_FILTERS[wanted]]
    return web.json_response({"contact_id": contact_id, "runs": [run_summary(r) for r in runs]})


async def cancel_contact_runs(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    contact_id = contact_id_of(request)
    flow = request.query.get("flow")
    await engine.check_flow_filter(contact_id, flow)
    runs = await run_cancel.cancel_contact_runs(
        engine.store,
        contact_id,
        flow=flow,
        reason="cancelled through the API, with every open run of the contact"
        + (f" in {flow}" if flow else ""),
        now=engine.clock.now(),
    )
    return web.json_response(
        {"contact_id": contact_id, "cancelled": [run_summary(r) for r in runs]}
    )


async def get_decisions(request: web.Request) -> web.Response:
    """The newest ``?limit=`` (200 by default) decisions and events, newest first."""
    engine = request.app[ENGINE]
    contact_id, flow = contact_id_of(request), request.query.get("flow")
    limit = query_int(request.query.get("limit", str(DECISIONS_LIMIT)), low=1, high=DECISIONS_MAX)
    if limit is None:
        raise RequestError.bad_field(
            "limit", f"a whole number from 1 to {DECISIONS_MAX}", "bad query"
        )
    events = await engine.decisions(contact_id, flow, limit=limit)
    return web.json_response({"events": [event_view(e) for e in events]})
