"""What every fake vendor shares: an aiohttp app on 127.0.0.1 (port 0 picks a free
one), used as ``async with Fake() as fake`` in tests, or standalone until SIGINT or
SIGTERM with its port printed on stdout (``python -m tests.fakes.<vendor>``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Any, Self

from aiohttp import web

# A hung request is released by the client leaving, by close(), or after this long.
HANG_LIMIT = 30.0


class FakeServer:
    """Serves ``add_routes`` plus ``GET /_stats`` (what ``stats()`` says)."""

    port: int = 0
    _runner: web.AppRunner | None = None

    def __init__(self) -> None:
        self._released = asyncio.Event()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError

    async def hang(self) -> None:
        """Hold a request without answering until the server closes (or HANG_LIMIT)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), HANG_LIMIT)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def started(self) -> None:
        """After the server listens (open clients here)."""

    async def stopping(self) -> None:
        """Before the server stops (release held requests, cancel background tasks)."""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        self.add_routes(app.router)
        app.router.add_get("/_stats", self._stats)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = int(self._runner.addresses[0][1])
        await self.started()

    async def close(self) -> None:
        self._released.set()
        await self.stopping()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_until_signalled(fake: FakeServer, host: str, port: int) -> None:
    """Serve ``fake``, print its port, stop on SIGINT or SIGTERM."""
    await fake.start(host, port)
    sys.stdout.write(f"{fake.port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.close()
