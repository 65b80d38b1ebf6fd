"""A fake of Interflow's ``POST /v1/messages/send`` that enforces its document.

What it checks, in order, and how it answers (``{"success": false, "error": {"code",
"message"[, "details"]}}`` for every error, the documented shape):

1. ``Authorization: Bearer <key>`` with a known key -> else 401 ``UNAUTHORIZED``; a key
   without the ``messages:write`` permission -> 403 ``FORBIDDEN``. (Auth errors are
   not in the document: status and code are assumed.)
2. The plan's limit: at most ``limit_per_minute`` requests per API key in any 60 s
   (sliding window, the strictest reading of "N mensagens/min"), else 429 with
   ``Retry-After`` (seconds), ``X-RateLimit-Limit``, ``X-RateLimit-Remaining: 0`` and
   ``X-RateLimit-Reset`` (Unix seconds) and code ``RATE_LIMIT_EXCEEDED``. The
   ``X-RateLimit-*`` headers come with every answer, as the API overview says; the
   429 itself (status, ``Retry-After``, body) is not documented and is assumed.
3. ``Content-Type: application/json`` and a JSON object -> else 400 ``VALIDATION_ERROR``.
4. Fields -> 400 ``VALIDATION_ERROR`` with one ``details`` item per bad field and the
   first one in ``message`` (``"Campo 'to' é obrigatório"`` / ``"Campo obrigatório"``,
   as documented): ``channel_id`` (UUID string), ``to`` (8-15 digits, the form of the
   document's example), ``type`` (text, image, video, audio, document, location,
   template), ``content`` (an object with exactly the fields of the document's
   examples for that type; unknown fields are refused so an adapter typo shows).
5. ``channel_id`` unknown -> 404 ``CHANNEL_NOT_FOUND`` "Canal não encontrado";
   disconnected -> 422 ``CHANNEL_DISCONNECTED`` "O canal está desconectado".
6. Accepted -> 201 ``{"success": true, "data": {"id": "msg_…", "channel_id", "to",
   "type", "status": "sent", "content", "created_at"}}``; the body is recorded in
   ``accepted``. With ``webhook_url`` it then posts ``message.status_updated`` events
   (delivered, then read) there, like the real service.

Faults are scripted for the next requests (``fail_next``): ``error`` and
``rate_limit`` answer before anything is checked or recorded; ``hang``,
``disconnect``, ``garbage``, ``no_id`` and ``failed`` accept and record the message
first, then misbehave: the case that makes a resend dangerous.

Standalone, for acceptance tests::

    python -m tests.fakes.interflow --port 0 [--api-key K] [--channel UUID]
        [--rate-limit 300] [--webhook-url URL]

prints the port, serves ``GET /_stats``, ``POST /_faults`` (``{"kind": "error",
"status": 503, "times": 2}``) and ``POST /_webhook`` (``{"message_id", "status"}``:
post one status event to ``webhook_url`` now).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import aiohttp
from aiohttp import web

from tests.fakes.interflow_contract import REQUIRED, problems_in
from tests.fakes.server import FakeServer, serve_until_signalled

API_KEY = "if_live_fake_3b9c2d7e41a8"
CHANNEL_ID = "550e8400-e29b-41d4-a716-446655440000"
WINDOW = 60.0
FaultKind = Literal["error", "rate_limit", "hang", "disconnect", "garbage", "no_id", "failed"]
FAULT_KINDS = frozenset(get_args(FaultKind))
ANSWERS_FIRST = frozenset({"error", "rate_limit"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One scripted misbehaviour."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {sorted(FAULT_KINDS)}")


class FakeInterflow(FakeServer):
    """Interflow's send endpoint on 127.0.0.1; ``async with FakeInterflow() as fake``."""

    def __init__(
        self,
        *,
        api_keys: Mapping[str, Iterable[str]] | None = None,
        channels: Mapping[str, Literal["connected", "disconnected"]] | None = None,
        limit_per_minute: int = 300,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        webhook_url: str | None = None,
        webhook_delays: tuple[float, float] = (0.05, 0.1),
    ) -> None:
        super().__init__()
        keys = api_keys if api_keys is not None else {API_KEY: ("messages:write",)}
        self.api_keys = {k: frozenset(v) for k, v in keys.items()}
        given = channels if channels is not None else {CHANNEL_ID: "connected"}
        self.channels = {channel.lower(): state for channel, state in given.items()}
        self.limit_per_minute = limit_per_minute
        self.webhook_url, self.webhook_delays = webhook_url, webhook_delays
        self._monotonic, self._wall_clock = monotonic, wall_clock
        self.accepted: list[dict[str, Any]] = []  # bodies taken as messages, in order
        self.accepted_headers: list[dict[str, str]] = []
        self.answers: list[int] = []  # the status of every answer, in order
        self.webhooks_posted: list[dict[str, Any]] = []
        self._windows: dict[str, deque[float]] = {}
        self._next: deque[Fault] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ scripting

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """The next ``times`` authenticated requests get ``fault``."""
        self._next.extend([fault] * times)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self.answers),
            "accepted": len(self.accepted),
            "answers": dict(sorted(_count(self.answers).items())),
            "webhooks_posted": len(self.webhooks_posted),
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages/send", self._send)
        router.add_post("/_faults", self._faults)
        router.add_post("/_webhook", self._push_webhook)

    async def stopping(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ the endpoint

    async def _send(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        answer = await self._answer(request, raw)
        self.answers.append(answer.status)
        return answer

    async def _answer(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or key not in self.api_keys:
            return _error(401, "UNAUTHORIZED", "API Key inválida ou ausente")
        if "messages:write" not in self.api_keys[key]:
            return _error(403, "FORBIDDEN", "A API Key não tem a permissão messages:write")
        fault = self._next.popleft() if self._next else None
        if fault is not None and fault.kind in ANSWERS_FIRST:
            if fault.kind == "rate_limit":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return _error(429, "RATE_LIMIT_EXCEEDED", "Limite de requisições excedido", headers)
            return _error(fault.status, "INTERNAL_ERROR", "Erro interno")
        limited = self._count_request(key)
        if limited is not None:
            return limited
        rate_headers = self._rate_headers(key)
        body, problems = problems_in(request.headers.get("Content-Type", ""), raw)
        if problems:
            first_field, first_message = problems[0]
            said = (
                f"Campo '{first_field}' é obrigatório"
                if first_message == REQUIRED
                else f"Campo '{first_field}' é inválido"
            )
            details = [{"field": f, "message": m} for f, m in problems]
            return _error(400, "VALIDATION_ERROR", said, rate_headers, details=details)
        assert body is not None
        state = self.channels.get(str(body["channel_id"]).lower())
        if state is None:
            return _error(404, "CHANNEL_NOT_FOUND", "Canal não encontrado", rate_headers)
        if state == "disconnected":
            return _error(422, "CHANNEL_DISCONNECTED", "O canal está desconectado", rate_headers)
        return await self._accept(request, body, rate_headers, fault)

    async def _accept(
        self,
        request: web.Request,
        body: dict[str, Any],
        headers: dict[str, str],
        fault: Fault | None,
    ) -> web.StreamResponse:
        message_id = f"msg_{uuid.uuid4().hex[:16]}"
        self.accepted.append(body)
        self.accepted_headers.append(dict(request.headers))
        data = {
            "id": message_id,
            "channel_id": body["channel_id"],
            "to": body["to"],
            "type": body["type"],
            "status": "failed" if fault is not None and fault.kind == "failed" else "sent",
            "content": body["content"],
            "created_at": datetime.fromtimestamp(self._wall_clock(), UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
        created = {"success": True, "data": data}
        if fault is None or fault.kind == "failed":
            if self.webhook_url and fault is None:
                self._spawn(self._report_later(message_id))
            return web.json_response(created, status=201, headers=headers)
        if fault.kind == "hang":
            await self.hang()
            return web.json_response(created, status=201, headers=headers)
        if fault.kind == "disconnect":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # nothing may be written on the dropped connection
        if fault.kind == "garbage":
            return web.Response(status=201, text="<html>Created</html>", content_type="text/html")
        return web.json_response({"success": True, "data": {}}, status=201)  # no_id

    # ------------------------------------------------------------------ the plan's limit

    def _window(self, key: str) -> deque[float]:
        window = self._windows.setdefault(key, deque())
        now = self._monotonic()
        while window and window[0] <= now - WINDOW:
            window.popleft()
        return window

    def _count_request(self, key: str) -> web.Response | None:
        window = self._window(key)
        if len(window) < self.limit_per_minute:
            window.append(self._monotonic())
            return None
        wait = window[0] + WINDOW - self._monotonic()
        headers = self._rate_headers(key)
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return _error(
            429,
            "RATE_LIMIT_EXCEEDED",
            f"Limite de {self.limit_per_minute} requisições por minuto excedido",
            headers,
        )

    def _rate_headers(self, key: str) -> dict[str, str]:
        window = self._window(key)
        reset_in = window[0] + WINDOW - self._monotonic() if window else WINDOW
        return {
            "X-RateLimit-Limit": str(self.limit_per_minute),
            "X-RateLimit-Remaining": str(max(0, self.limit_per_minute - len(window))),
            "X-RateLimit-Reset": str(math.ceil(self._wall_clock() + reset_in)),
        }

    # ------------------------------------------------------------------ webhooks out

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report_later(self, message_id: str) -> None:
        delivered_after, read_after = self.webhook_delays
        await asyncio.sleep(delivered_after)
        await self.post_status(message_id, "delivered")
        await asyncio.sleep(max(0.0, read_after - delivered_after))
        await self.post_status(message_id, "read")

    async def post_status(self, message_id: str, status: str) -> int | None:
        """POST one ``message.status_updated`` event to ``webhook_url``; its answer status."""
        if not self.webhook_url:
            return None
        event = status_event(message_id, status, self._wall_clock())
        self.webhooks_posted.append(event)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.post(self.webhook_url, json=event) as answer,
            ):
                return answer.status
        return None

    # ------------------------------------------------------------------ control

    async def _faults(self, request: web.Request) -> web.Response:
        spec = _json(await request.read())
        if not isinstance(spec, dict):
            return _error(400, "VALIDATION_ERROR", "expected a JSON object")
        try:
            times = int(spec.pop("times", 1))
            fault = Fault(**spec)
        except (TypeError, ValueError) as exc:
            return _error(400, "VALIDATION_ERROR", f"bad fault: {exc}")
        self.fail_next(fault, times)
        return web.json_response({"scripted": asdict(fault), "times": times})

    async def _push_webhook(self, request: web.Request) -> web.Response:
        spec = _json(await request.read())
        if not isinstance(spec, dict) or not {"message_id", "status"} <= set(spec):
            return _error(400, "VALIDATION_ERROR", 'expected {"message_id", "status"}')
        answered = await self.post_status(str(spec["message_id"]), str(spec["status"]))
        return web.json_response({"posted": answered is not None, "answer": answered})


def status_event(message_id: str, status: str, at: float | None = None) -> dict[str, Any]:
    """The documented webhook body for one status change."""
    stamp = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    return {
        "event": "message.status_updated",
        "data": {
            "message_id": message_id,
            "status": status,
            "timestamp": stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
        },
    }


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _count(values: list[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def _error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    details: list[dict[str, str]] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    body = {"success": False, "error": error}
    return web.json_response(body, status=status, headers=dict(headers or {}))


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeInterflow(
        api_keys={args.api_key: ("messages:write",)},
        channels={c.lower(): "connected" for c in args.channel}
        | {c.lower(): "disconnected" for c in args.disconnected_channel},
        limit_per_minute=args.rate_limit,
        webhook_url=args.webhook_url,
        webhook_delays=(args.delivered_after, args.read_after),
    )
    await serve_until_signalled(fake, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.interflow", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--channel", action="append", default=None, help="a connected channel")
    parser.add_argument("--disconnected-channel", action="append", default=[])
    parser.add_argument("--rate-limit", type=int, default=300, help="requests per minute")
    parser.add_argument("--webhook-url", default=None, help="where status events are posted")
    parser.add_argument("--delivered-after", type=float, default=0.05)
    parser.add_argument("--read-after", type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.channel is None:
        args.channel = [CHANNEL_ID]
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
