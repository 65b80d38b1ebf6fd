"""A fake in-house gateway that enforces the contract ``providers.http`` relies on.

Contract: ``POST /v1/messages`` needs the configured auth header (401 otherwise) and a
JSON object with ``to`` (``phone`` or ``email``), ``channel`` and ``content`` (400 with
``{"error": {"message": ...}}`` otherwise). It answers ``{"messages": [{"id": "gw-…"}]}``
and dedupes on the idempotency header: the same key gets the same id and is delivered
once. ``delivered_keys`` counts deliveries per key (the header's, else the body's
``idempotency_key``), so a value above 1 is a duplicate the contact would see;
``requests_by_key`` counts every request that arrived.

Faults are scripted per request (``fail_next``), per key (``fail_key``; it wins) or
for a stretch of time (``fail_for``: every request meanwhile, an outage).
Faults that answer before processing (429, 5xx, 400) deliver nothing; ``hang``,
``disconnect``, ``html`` and ``no_id`` deliver first and then fail to answer
properly, which is the case that makes a resend dangerous.

Standalone, for the benchmark and crash tests::

    python -m tests.fakes.gateway --port 0 [--latency 0.02]

prints the port it listens on, serves ``GET /_stats`` (counts per key) and
``POST /_faults`` (``{"kind": "error", "status": 503, "times": 3, "key": null}``, or
``"seconds": 15`` instead of ``times`` for an outage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from aiohttp import web

from tests.fakes.server import FakeServer, serve_until_signalled

FaultKind = Literal["rate_limit", "error", "reject", "hang", "disconnect", "html", "no_id"]
FAULT_KINDS = frozenset(get_args(FaultKind))
ANSWERS_FIRST = frozenset({"rate_limit", "error", "reject"})
CHANNELS = frozenset({"whatsapp", "sms", "email"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One scripted misbehaviour."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    message: str = "scripted failure"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {sorted(FAULT_KINDS)}")

    @classmethod
    def rate_limit(cls, retry_after: str | None = "1") -> Fault:
        return cls(kind="rate_limit", status=429, retry_after=retry_after, message="slow down")

    @classmethod
    def error(cls, status: int = 503, retry_after: str | None = None) -> Fault:
        return cls(kind="error", status=status, retry_after=retry_after, message="upstream down")

    @classmethod
    def reject(cls, message: str = "invalid recipient", status: int = 400) -> Fault:
        return cls(kind="reject", status=status, message=message)

    @classmethod
    def hang(cls) -> Fault:
        return cls(kind="hang")

    @classmethod
    def disconnect(cls) -> Fault:
        return cls(kind="disconnect")

    @classmethod
    def html(cls) -> Fault:
        return cls(kind="html")

    @classmethod
    def no_id(cls) -> Fault:
        return cls(kind="no_id")


class FakeGateway(FakeServer):
    """The gateway as an aiohttp app on 127.0.0.1; ``async with FakeGateway() as gw``."""

    def __init__(
        self,
        *,
        auth_header: str = "Authorization",
        auth_value: str = "Bearer gw-test-token-0123456789",
        idempotency_header: str = "Idempotency-Key",
        latency: float = 0.0,
    ) -> None:
        super().__init__()
        self.auth_header, self.auth_value = auth_header, auth_value
        self.idempotency_header, self.latency = idempotency_header, latency
        self.requests_by_key: Counter[str] = Counter()
        self.delivered_keys: Counter[str] = Counter()
        self.received: list[dict[str, Any]] = []  # valid bodies, in arrival order
        self.received_headers: list[dict[str, str]] = []
        self.ids_by_key: dict[str, str] = {}
        self.in_flight = self.max_in_flight = 0
        self._next: deque[Fault] = deque()
        self._outage: tuple[Fault, float] | None = None  # (fault, until loop.time())
        self._by_key: dict[str, deque[Fault]] = {}
        self._open = asyncio.Event()
        self._open.set()

    # ------------------------------------------------------------------ scripting

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """The next ``times`` requests (whatever their key) get ``fault``."""
        self._next.extend([fault] * times)

    def fail_for(self, fault: Fault, seconds: float) -> None:
        """Every request of the next ``seconds`` (that no other fault takes) gets ``fault``."""
        self._outage = (fault, asyncio.get_running_loop().time() + seconds)

    def fail_key(self, key: str, fault: Fault, times: int = 1) -> None:
        """The next ``times`` requests with idempotency key ``key`` get ``fault``."""
        self._by_key.setdefault(key, deque()).extend([fault] * times)

    def pause(self) -> None:
        """Hold valid requests before they are answered until ``resume()``."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": sum(self.requests_by_key.values()),
            "delivered": sum(self.delivered_keys.values()),
            "requests_by_key": dict(self.requests_by_key),
            "delivered_keys": dict(self.delivered_keys),
            "duplicates": {k: n - 1 for k, n in self.delivered_keys.items() if n > 1},
            "max_in_flight": self.max_in_flight,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/messages"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self._send)
        router.add_post("/_faults", self._faults)

    async def stopping(self) -> None:
        self._open.set()

    # ------------------------------------------------------------------ handlers

    async def _send(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = _json_object(raw)
        header_key = request.headers.get(self.idempotency_header)
        body_key = body.get("idempotency_key") if body else None
        key = header_key or (body_key if isinstance(body_key, str) else "") or ""
        self.requests_by_key[key] += 1
        given = request.headers.get(self.auth_header, "")
        if not secrets.compare_digest(given.encode(), self.auth_value.encode()):
            return _error(401, f"missing or wrong {self.auth_header}")
        problem = _contract_problem(body)
        if problem is not None:
            return _error(400, problem)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, body or {}, key, header_key)
        finally:
            self.in_flight -= 1

    async def _answer(
        self, request: web.Request, body: dict[str, Any], key: str, header_key: str | None
    ) -> web.StreamResponse:
        await self._open.wait()
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._take_fault(key)
        if fault is not None and fault.kind in ANSWERS_FIRST:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return _error(fault.status, fault.message, headers)
        self.received.append(body)
        self.received_headers.append(dict(request.headers))
        message_id = self._deliver(key, header_key)
        if fault is None:
            return web.json_response({"messages": [{"id": message_id}]})
        if fault.kind == "hang":
            await self.hang()
            return web.json_response({"messages": [{"id": message_id}]})
        if fault.kind == "disconnect":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # nothing may be written on the dropped connection
        if fault.kind == "html":
            return web.Response(
                text="<html><body>Bad Gateway</body></html>", content_type="text/html"
            )
        return web.json_response({"status": "accepted"})  # no_id

    def _take_fault(self, key: str) -> Fault | None:
        queue = self._by_key.get(key)
        if queue:
            return queue.popleft()
        if self._next:
            return self._next.popleft()
        if self._outage is not None:
            fault, until = self._outage
            if asyncio.get_running_loop().time() < until:
                return fault
            self._outage = None
        return None

    def _deliver(self, key: str, header_key: str | None) -> str:
        if header_key and header_key in self.ids_by_key:
            return self.ids_by_key[header_key]  # the dedupe the adapter's resends rely on
        message_id = f"gw-{uuid.uuid4().hex}"
        self.delivered_keys[key] += 1
        if header_key:
            self.ids_by_key[header_key] = message_id
        return message_id

    async def _faults(self, request: web.Request) -> web.Response:
        spec = _json_object(await request.read()) or {}
        try:
            times = int(spec.pop("times", 1))
            key = spec.pop("key", None)
            seconds = spec.pop("seconds", None)
            fault = Fault(**spec)
            if seconds is not None:
                self.fail_for(fault, float(seconds))
                return web.json_response({"scripted": asdict(fault), "seconds": seconds})
        except (TypeError, ValueError) as exc:
            return _error(400, f"bad fault: {exc}")
        if key:
            self.fail_key(str(key), fault, times)
        else:
            self.fail_next(fault, times)
        return web.json_response({"scripted": asdict(fault), "times": times, "key": key})


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _contract_problem(body: dict[str, Any] | None) -> str | None:
    if body is None:
        return "the body must be a JSON object"
    for name in ("to", "channel", "content"):
        if name not in body:
            return f"'{name}' is required"
    to = body["to"]
    if not isinstance(to, dict) or not (to.get("phone") or to.get("email")):
        return "'to' needs a phone or an email"
    if body["channel"] not in CHANNELS:
        return f"'channel' must be one of {sorted(CHANNELS)}"
    if not isinstance(body["content"], dict) or "type" not in body["content"]:
        return "'content' must be an object with a 'type'"
    return None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status, headers=headers)


async def _serve(args: argparse.Namespace) -> None:
    gateway = FakeGateway(
        auth_header=args.auth_header,
        auth_value=args.auth_value,
        idempotency_header=args.idempotency_header,
        latency=args.latency,
    )
    await serve_until_signalled(gateway, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.gateway", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--auth-header", default="Authorization")
    parser.add_argument("--auth-value", default="Bearer gw-test-token-0123456789")
    parser.add_argument("--idempotency-header", default="Idempotency-Key")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
