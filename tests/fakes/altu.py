"""A fake of Altu's Zenvia outbound API that enforces its document
(``/work/shared/providers/altu-zenvia-outbound.txt``; the rules and the document's
example bodies live in ``tests.fakes.altu_contract``).

Contract:

- ``POST /zenvia/<slug>/<integration id>``; any other path is 404.
- ``Authorization: <altu token>``, the bare token: ``Bearer <token>`` or a missing
  header is 401. ``Content-Type: application/json``, else 400.
- ``destination`` (required): the WhatsApp number as the document writes it, DDD +
  number, digits only (``35988001234``).
- either ``templateId`` (required for a template; ``fields`` an object of string
  keys and values) or ``contents`` (rich notification: a non-empty list), not both.
- optional ``context`` (object), ``externalId`` (string), ``restartContact``
  (boolean), ``inactivityTime`` (whole minutes, >= 0).
- ``contents`` items: ``file`` (``fileUrl`` http(s), ``fileMimeType`` a MIME type —
  image/jpeg or image/png for images, image/webp for stickers — ``fileCaption``,
  ``fileName``); ``button`` (optional ``header`` ``{"type": "file", "fileUrl"}``,
  ``body`` required, ``footer``, 1 to 3 ``buttons`` with ``id`` and ``title``);
  ``list`` (``header``, ``body`` required, ``footer``, ``button`` required and at most
  20 characters, ``sections`` with ``title`` and ``rows`` — at most 10 rows, each with
  ``id`` and ``title`` required and ``description``); ``location`` (``latitude``,
  ``longitude`` in range, ``name``, ``address``, ``url``). Unknown fields are 400, so
  a misspelt field in the adapter shows up here.

Errors: this copy of the document shows only the 200 answer. Altu's published page
(docs.altu.d1.cx/connect/apis/outbound/zenvia) lists 400 (a parameter in the wrong
format or a required one missing), 401 (the Authorization header is not the altu
token) and 500, without bodies; the fake answers them as ``{"message": "..."}``.

Answer: ``{"status": "pending", "external_id", "message_id", "contact_id"}``;
message ids count from 218 and contact ids per destination from 874, the document's
example. A repeated ``externalId`` is sent again: the document does not say Altu
drops it. ``delivered_by_external_id`` counts deliveries, so a value above 1 is a
duplicate the contact would see.

Status webhooks: with ``status_webhook`` set, every accepted message is reported
there, one POST per status (default sent, delivered, read), as ``status_event``
builds them — the shape ``providers.altu_webhook`` reads.

Faults are scripted per request (``fail_next``): ``rate_limit`` (429 +
Retry-After), ``error`` (5xx), ``reject`` (400), ``answer`` (a given status and JSON
body) answer before sending; ``hang``, ``disconnect`` and ``html`` send first and then
fail to answer properly.

Standalone, for acceptance tests::

    python -m tests.fakes.altu --port 0 [--token T] [--slug S] [--integration I]
        [--status-webhook URL] [--statuses sent,delivered,read] [--status-delay 0.05]

prints the port it listens on and serves ``GET /_stats``, ``GET /_received`` and
``POST /_faults`` (``{"kind": "error", "status": 503, "times": 2}``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import aiohttp
from aiohttp import web

from tests.fakes.altu_contract import contract_problem
from tests.fakes.server import FakeServer, serve_until_signalled

FaultKind = Literal["rate_limit", "error", "reject", "answer", "hang", "disconnect", "html"]
FAULT_KINDS = frozenset(get_args(FaultKind))
ANSWERS_FIRST = frozenset({"rate_limit", "error", "reject", "answer"})

FIRST_MESSAGE_ID = 218
FIRST_CONTACT_ID = 874

UNAUTHORIZED = (
    "Não autorizado: o header Authorization deve conter o altu token da integração (sem prefixo)"
)
INTERNAL = "Erro interno"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One scripted misbehaviour."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    message: str = "falha simulada"
    body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {sorted(FAULT_KINDS)}")

    @classmethod
    def rate_limit(cls, retry_after: str | None = "1") -> Fault:
        return cls(
            kind="rate_limit", status=429, retry_after=retry_after, message="Muitas requisições"
        )

    @classmethod
    def error(cls, status: int = 500, retry_after: str | None = None) -> Fault:
        return cls(kind="error", status=status, retry_after=retry_after, message=INTERNAL)

    @classmethod
    def reject(cls, message: str, status: int = 400) -> Fault:
        return cls(kind="reject", status=status, message=message)

    @classmethod
    def answer(cls, body: dict[str, Any], status: int = 200) -> Fault:
        return cls(kind="answer", status=status, body=body)

    @classmethod
    def hang(cls) -> Fault:
        return cls(kind="hang")

    @classmethod
    def disconnect(cls) -> Fault:
        return cls(kind="disconnect")

    @classmethod
    def html(cls) -> Fault:
        return cls(kind="html")


def status_event(
    status: str,
    *,
    external_id: str | None,
    message_id: int | str | None,
    contact_id: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One status webhook item, in the shape ``providers.altu_webhook`` documents."""
    event: dict[str, Any] = {"status": status}
    if external_id is not None:
        event["external_id"] = external_id
    if message_id is not None:
        event["message_id"] = message_id
    if contact_id is not None:
        event["contact_id"] = contact_id
    if at is not None:
        event["timestamp"] = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return event


class FakeAltu(FakeServer):
    """The Altu outbound API as an aiohttp app on 127.0.0.1; ``async with FakeAltu() as altu``."""

    def __init__(
        self,
        *,
        token: str = "altu-test-token-0123456789",
        slug: str = "disparo",
        integration: str = "4321",
        status_webhook: str | None = None,
        statuses: tuple[str, ...] = ("sent", "delivered", "read"),
        status_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.token, self.slug, self.integration = token, slug, integration
        self.status_webhook, self.statuses, self.status_delay = (
            status_webhook,
            statuses,
            status_delay,
        )
        self.requests = 0
        self.received: list[dict[str, Any]] = []  # accepted bodies, in arrival order
        self.received_headers: list[dict[str, str]] = []
        self.answers: list[dict[str, Any]] = []  # the 200 answers, in order
        self.delivered_by_external_id: Counter[str] = Counter()
        self.webhook_answers: list[int] = []
        self._next_message_id = FIRST_MESSAGE_ID
        self._contacts: dict[str, int] = {}
        self._faults: deque[Fault] = deque()
        self._reports: set[asyncio.Task[None]] = set()
        self._client: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ scripting

    def fail_next(self, fault: Fault, times: int = 1) -> None:
        """The next ``times`` requests that pass auth and the contract get ``fault``."""
        self._faults.extend([fault] * times)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "delivered": sum(self.delivered_by_external_id.values()),
            "delivered_by_external_id": dict(self.delivered_by_external_id),
            "duplicates": {k: n - 1 for k, n in self.delivered_by_external_id.items() if n > 1},
            "webhook_answers": list(self.webhook_answers),
        }

    async def reports_done(self) -> None:
        """Wait until every scheduled status webhook was posted."""
        while self._reports:
            await asyncio.gather(*list(self._reports), return_exceptions=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def path(self) -> str:
        return f"/zenvia/{self.slug}/{self.integration}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(self.path, self._send)
        router.add_get("/_received", self._received)
        router.add_post("/_faults", self._script)

    async def started(self) -> None:
        if self.status_webhook:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def stopping(self) -> None:
        for task in list(self._reports):
            task.cancel()
        await asyncio.gather(*list(self._reports), return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ------------------------------------------------------------------ handlers

    async def _send(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests += 1
        given = request.headers.get("Authorization", "")
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return _error(401, UNAUTHORIZED)
        if request.content_type != "application/json":
            return _error(400, "Content-Type deve ser application/json")
        try:
            body: Any = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "o corpo não é JSON válido")
        problem = contract_problem(body)
        if problem is not None:
            return _error(400, problem)
        fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.kind in ANSWERS_FIRST:
            if fault.kind == "answer":
                return web.json_response(fault.body, status=fault.status)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return _error(fault.status, fault.message, headers)
        answer = self._deliver(body, dict(request.headers))
        if fault is None:
            return web.json_response(answer)
        if fault.kind == "hang":
            await self.hang()
            return web.json_response(answer)
        if fault.kind == "disconnect":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # nothing may be written on the dropped connection
        return web.Response(text="<html><body>Bad Gateway</body></html>", content_type="text/html")

    def _deliver(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        self.received.append(body)
        self.received_headers.append(headers)
        external_id = body.get("externalId")
        self.delivered_by_external_id[external_id or ""] += 1
        message_id = self._next_message_id
        self._next_message_id += 1
        contact_id = self._contacts.setdefault(
            body["destination"], FIRST_CONTACT_ID + len(self._contacts)
        )
        answer = {
            "status": "pending",
            "external_id": external_id,
            "message_id": message_id,
            "contact_id": contact_id,
        }
        self.answers.append(answer)
        if self._client is not None:
            task = asyncio.create_task(self._report(answer))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)
        return answer

    async def _report(self, answer: dict[str, Any]) -> None:
        assert self._client is not None
        assert self.status_webhook is not None
        for status in self.statuses:
            if self.status_delay:
                await asyncio.sleep(self.status_delay)
            event = status_event(
                status,
                external_id=answer["external_id"],
                message_id=answer["message_id"],
                contact_id=answer["contact_id"],
                at=datetime.now(UTC),
            )
            try:
                async with self._client.post(self.status_webhook, json=event) as response:
                    self.webhook_answers.append(response.status)
            except (aiohttp.ClientError, TimeoutError):
                self.webhook_answers.append(0)

    async def _received(self, request: web.Request) -> web.Response:
        return web.json_response({"bodies": self.received, "answers": self.answers})

    async def _script(self, request: web.Request) -> web.Response:
        try:
            spec = json.loads(await request.read())
            times = int(spec.pop("times", 1))
            fault = Fault(**spec)
        except (TypeError, ValueError, AttributeError) as exc:
            return _error(400, f"bad fault: {exc}")
        self.fail_next(fault, times)
        return web.json_response({"scripted": asdict(fault), "times": times})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


# ---------------------------------------------------------------------- standalone


async def _serve(args: argparse.Namespace) -> None:
    altu = FakeAltu(
        token=args.token,
        slug=args.slug,
        integration=args.integration,
        status_webhook=args.status_webhook,
        statuses=tuple(s for s in args.statuses.split(",") if s),
        status_delay=args.status_delay,
    )
    await serve_until_signalled(altu, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.altu", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--token", default="altu-test-token-0123456789")
    parser.add_argument("--slug", default="disparo")
    parser.add_argument("--integration", default="4321")
    parser.add_argument("--status-webhook", default=None, help="URL that gets status webhooks")
    parser.add_argument("--statuses", default="sent,delivered,read")
    parser.add_argument("--status-delay", type=float, default=0.05, help="seconds between them")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
