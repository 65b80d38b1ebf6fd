"""Holds the API's answers to its OpenAPI document (``engine.openapi``).

``Conformance.middleware`` sits outside the app's own middlewares, so it sees every
answer as the client gets it. Each answer's status must be one the document lists
for the operation, and its body must match the schema listed for that status. The
``api`` fixture puts it in front of every API test, so the document is checked
against every answer the API tests provoke, errors included.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from engine.api import build_app
from engine.openapi import document
from engine.runtime import Engine

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Conformance:
    doc: dict[str, Any] = field(default_factory=document)
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[str, str, str]] = field(default_factory=set)  # (path, method, status)
    _validators: dict[str, Draft202012Validator] = field(default_factory=dict)

    def _validator(self, pointer: str, schema: dict[str, Any]) -> Draft202012Validator:
        if pointer not in self._validators:
            # The schema's "#/components/..." references resolve against this root.
            root = {"components": self.doc["components"], "allOf": [schema]}
            self._validators[pointer] = Draft202012Validator(root)
        return self._validators[pointer]

    def _response_of(self, path: str | None, method: str, status: str) -> dict[str, Any] | None:
        if path is None:  # no route: the error shape of a 404 or a 405
            return self.doc["components"]["responses"]["NotFound"]
        operation = self.doc["paths"].get(path, {}).get(method)
        if operation is None:
            return None
        response: dict[str, Any] | None = operation["responses"].get(status)
        if response is not None and "$ref" in response:
            name = response["$ref"].rpartition("/")[2]
            response = self.doc["components"]["responses"][name]
        return response

    def check(self, request: web.Request, response: web.StreamResponse) -> None:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        method = "get" if request.method == "HEAD" else request.method.lower()
        status = str(response.status)
        where = f"{request.method} {request.path} -> {status}"
        described = self._response_of(path, method, status)
        if described is None:
            self.problems.append(f"{where}: the document lists no such answer of {path}")
            return
        self.seen.add((path or "", method, status))
        media = response.content_type
        content = described.get("content", {})
        if media not in content:
            self.problems.append(f"{where}: {media} is not among {sorted(content)}")
            return
        body = getattr(response, "body", None)
        if media != "application/json" or request.method == "HEAD" or not isinstance(body, bytes):
            return
        instance = json.loads(body)
        pointer = f"{path} {method} {status}"
        for error in self._validator(pointer, content[media]["schema"]).iter_errors(instance):
            at = "/".join(str(p) for p in error.absolute_path) or "(the body)"
            self.problems.append(f"{where}: at {at}: {error.message[:300]}")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        self.check(request, response)
        return response

    def install(self, app: web.Application) -> web.Application:
        """Put the check in front of ``app``'s own middlewares (before it starts)."""
        app.middlewares.insert(0, self.middleware)
        return app


@contextlib.asynccontextmanager
async def checked_client(engine: Engine) -> AsyncIterator[TestClient[Any, Any]]:
    """A test client of ``engine``'s API whose every answer is held to the document;
    on leaving, any answer it does not describe fails the test."""
    conformance = Conformance()
    client = TestClient(TestServer(conformance.install(build_app(engine))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
    assert not conformance.problems, "answers the OpenAPI document does not describe:\n" + (
        "\n".join(conformance.problems)
    )
