"""A fake Robbu Invenio API that enforces /work/shared/providers/robbu-sendmessage.txt.

``POST /v1/login`` takes ``{"Company", "Username", "Password"}`` and answers
``{"access_token", "expires_in", "refresh_token", "token_type"}``; every login
invalidates the token before it (one valid token per API user, as the document says).
``POST /v1/sendmessage`` needs ``Authorization: Bearer <the current token>`` (401
otherwise) and a JSON body whose fields have the documented names, types and limits
(400 with ``{"message": ...}`` otherwise; a field the document does not name is
refused too, where Robbu would ignore it). Where the document gives Robbu's words,
the fake answers them exactly:

- ``text`` absent: ``{"message": "Object reference not set to an instance of an object."}``;
- ``attendantUserName`` together with ``discardSettings.InAttendance: true``, or
  ``InAttendance: true`` for a contact that a previous send assigned to an attendant:
  ``{"message": "message not sent: contact in attendance"}``.

Other refusals (``tests.fakes.robbu_contract``: wrong private token, a joker over its
limit, two files on a template, an e-mail without subject, a media-library URL
without its file extension as a template parameter, ...) are 400s with words
of the fake's own; a wrong Content-Type is 415; unknown paths are 404 ("URL
incorreta"). An accepted send answers 200 (the document shows no
success body; the fake answers ``{"message": "Mensagem enviada corretamente."}``).

Faults are scripted per path (``fail_next``) and taken before anything else:
``error`` (a status, e.g. 500 or 429 with Retry-After) answers and records nothing;
``unauthorized`` answers 401 whatever the token; on ``/v1/sendmessage``, ``hang`` and
``disconnect`` record the message as sent and then never answer / drop the
connection (on ``/v1/login`` they issue no token). ``login_elsewhere()`` plays
another client logging in with the same user, which kills the current token.

Standalone, for acceptance tests::

    python -m tests.fakes.robbu --port 0 [--company C --username U --password P
                                          --private-token T]

prints the port, serves ``GET /_stats`` and ``POST /_faults``
(``{"kind": "error", "status": 503, "times": 2, "path": "/v1/sendmessage"}``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from aiohttp import web

from tests.fakes.robbu_contract import send_problem
from tests.fakes.server import FakeServer, serve_until_signalled

FaultKind = Literal["error", "unauthorized", "hang", "disconnect"]
FAULT_KINDS = frozenset(get_args(FaultKind))
LOGIN, SEND = "/v1/login", "/v1/sendmessage"
IN_ATTENDANCE = "message not sent: contact in attendance"
DENIED = "Authorization has been denied for this request."
SENT = "Mensagem enviada corretamente."
TOKEN_LIFETIME = 287971200  # seconds, as in the document's login answer


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    message: str = "An error has occurred."

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {sorted(FAULT_KINDS)}")

    @classmethod
    def error(cls, status: int = 500, retry_after: str | None = None) -> Fault:
        return cls(kind="error", status=status, retry_after=retry_after)

    @classmethod
    def rate_limit(cls, retry_after: str | None = "7") -> Fault:
        return cls(kind="error", status=429, retry_after=retry_after, message="Too many requests")

    @classmethod
    def unauthorized(cls) -> Fault:
        return cls(kind="unauthorized", status=401, message=DENIED)

    @classmethod
    def hang(cls) -> Fault:
        return cls(kind="hang")

    @classmethod
    def disconnect(cls) -> Fault:
        return cls(kind="disconnect")


class FakeRobbu(FakeServer):
    """Robbu's login and SendMessage on 127.0.0.1; ``async with FakeRobbu() as robbu``."""

    def __init__(
        self,
        *,
        company: str = "acme",
        username: str = "api.disparo",
        password: str = "s3nha-da-api-robbu",
        private_token: str = "af5addfsdf52-a5dfsc-44fdf6-80bc-eda1d2af8",
    ) -> None:
        super().__init__()
        self.company, self.username, self.password = company, username, password
        self.private_token = private_token
        self.token: str | None = None  # the only valid token
        self.tokens_issued: list[str] = []
        self.requests: Counter[str] = Counter()  # every request per path, faults included
        self.received: list[dict[str, Any]] = []  # accepted SendMessage bodies, in order
        self.received_headers: list[dict[str, str]] = []
        self.refusals: list[tuple[int, str]] = []  # (status, message) of refused sends
        self.attended: set[tuple[int, int]] = set()  # (countryCode, phoneNumber) fidelized
        self._faults: dict[str, deque[Fault]] = {}

    # ------------------------------------------------------------------ scripting

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logins(self) -> int:
        return len(self.tokens_issued)

    def fail_next(self, fault: Fault, times: int = 1, path: str = SEND) -> None:
        """The next ``times`` requests to ``path`` get ``fault``."""
        self._faults.setdefault(path, deque()).extend([fault] * times)

    def login_elsewhere(self) -> str:
        """Another client logs in with the same user: the current token stops working."""
        return self._issue()

    def stats(self) -> dict[str, Any]:
        return {
            "logins": self.logins,
            "requests": dict(self.requests),
            "sent": len(self.received),
            "refusals": [list(r) for r in self.refusals],
        }

    # ------------------------------------------------------------------ lifecycle

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(LOGIN, self._login)
        router.add_post(SEND, self._send)
        router.add_post("/_faults", self._script)

    # ------------------------------------------------------------------ handlers

    async def _login(self, request: web.Request) -> web.StreamResponse:
        self.requests[LOGIN] += 1
        raw = await request.read()
        early = await self._fault(request, LOGIN)
        if early is not None:
            return early
        if request.content_type != "application/json":
            return _unsupported(request.content_type)
        body = _json_object(raw)
        if body is None:
            return _message(400, "The request is invalid: the body must be a JSON object.")
        fields = ("Company", "Username", "Password")
        missing = [f for f in fields if not isinstance(body.get(f), str) or not body[f]]
        if missing:
            return _message(400, f"The request is invalid: {', '.join(missing)} is required.")
        given = (body["Company"], body["Username"], body["Password"])
        expected = (self.company, self.username, self.password)
        if not all(
            secrets.compare_digest(a.encode(), b.encode())
            for a, b in zip(given, expected, strict=False)
        ):
            return _message(401, "Usuário ou senha inválidos.")
        return web.json_response(
            {
                "access_token": self._issue(),
                "expires_in": TOKEN_LIFETIME,
                "refresh_token": "",
                "token_type": "bearer",
            }
        )

    async def _send(self, request: web.Request) -> web.StreamResponse:
        self.requests[SEND] += 1
        raw = await request.read()
        fault = self._take(SEND)
        if fault is not None and fault.kind in ("error", "unauthorized"):
            return _message(fault.status, fault.message, fault.retry_after)
        given = request.headers.get("Authorization", "")
        if self.token is None or not secrets.compare_digest(
            given.encode(), f"Bearer {self.token}".encode()
        ):
            return _message(401, DENIED)
        if request.content_type != "application/json":
            return _unsupported(request.content_type)
        body = _json_object(raw)
        problem = send_problem(body, self.private_token)
        if problem is None and body is not None and self._in_attendance(body):
            problem = IN_ATTENDANCE
        if problem is not None:
            self.refusals.append((400, problem))
            return _message(400, problem)
        assert body is not None
        self.received.append(body)
        self.received_headers.append(dict(request.headers))
        if body["attendantUserName"]:
            self.attended.add(_destination_key(body))
        if fault is not None and fault.kind == "hang":
            await self.hang()
        elif fault is not None:  # disconnect: the message was taken, the answer is lost
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        return web.json_response({"message": SENT})

    async def _fault(self, request: web.Request, path: str) -> web.StreamResponse | None:
        fault = self._take(path)
        if fault is None:
            return None
        if fault.kind == "hang":
            await self.hang()
            return _message(500, fault.message)
        if fault.kind == "disconnect":
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        return _message(fault.status, fault.message, fault.retry_after)

    def _take(self, path: str) -> Fault | None:
        queue = self._faults.get(path)
        return queue.popleft() if queue else None

    def _issue(self) -> str:
        self.token = f"eyJhbGciOiJIUzI1NiIsInR5.{secrets.token_urlsafe(24)}"
        self.tokens_issued.append(self.token)
        return self.token

    def _in_attendance(self, body: dict[str, Any]) -> bool:
        discard = body.get("discardSettings") or {}
        if discard.get("InAttendance") is not True:
            return False
        return bool(body["attendantUserName"]) or _destination_key(body) in self.attended

    async def _script(self, request: web.Request) -> web.Response:
        spec = _json_object(await request.read()) or {}
        try:
            times = int(spec.pop("times", 1))
            path = str(spec.pop("path", SEND))
            fault = Fault(**spec)
        except (TypeError, ValueError) as exc:
            return _message(400, f"bad fault: {exc}")
        self.fail_next(fault, times, path)
        return web.json_response({"scripted": asdict(fault), "times": times, "path": path})


def _destination_key(body: dict[str, Any]) -> tuple[int, int]:
    destination = body.get("destination") or {}
    return (destination.get("countryCode", 0), destination.get("phoneNumber", 0))


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _message(status: int, message: str, retry_after: str | None = None) -> web.Response:
    headers = {"Retry-After": retry_after} if retry_after else None
    return web.json_response({"message": message}, status=status, headers=headers)


def _unsupported(content_type: str) -> web.Response:
    return _message(
        415,
        f"The request entity's media type '{content_type}' is not supported for this resource.",
    )


async def _serve(args: argparse.Namespace) -> None:
    robbu = FakeRobbu(
        company=args.company,
        username=args.username,
        password=args.password,
        private_token=args.private_token,
    )
    await serve_until_signalled(robbu, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.robbu", description=__doc__)
    defaults = FakeRobbu()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--company", default=defaults.company)
    parser.add_argument("--username", default=defaults.username)
    parser.add_argument("--password", default=defaults.password)
    parser.add_argument("--private-token", default=defaults.private_token)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
