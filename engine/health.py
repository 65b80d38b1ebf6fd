"""The store check behind ``GET /healthz``: an answer in bounded time, one ping at a time.

When the database neither answers nor refuses (a network partition, a host that
froze), a ping waits for the driver's own timeouts: up to a minute for a statement,
half a minute for a free connection. A load balancer's probe gives up long before,
and every probe repeated meanwhile would take one more connection of the pool.
So a probe waits at most ``timeout`` seconds (``server.health_timeout``, 2 by
default) for the ping, then answers that
the store did not answer in time; the ping goes on in the background, and probes
that arrive while it is still out wait on that same ping instead of starting
another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from engine.errors import StoreUnavailable


class HealthProbe:
    """``check()``: None when the store answered, else the ``StoreUnavailable`` to report."""

    def __init__(self, ping: Callable[[], Awaitable[None]], timeout: float) -> None:
        self._ping = ping
        self.timeout = timeout
        self._pending: asyncio.Task[None] | None = None

    async def check(self) -> StoreUnavailable | None:
        task = self._pending
        if task is None or task.done():
            task = self._pending = asyncio.ensure_future(self._ping())
            task.add_done_callback(_consume)
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            return StoreUnavailable(
                f"the store did not answer within {self.timeout:g} s (the ping is still "
                "waiting; the process goes on retrying by itself)"
            )
        error = task.exception()
        if error is None:
            return None
        if isinstance(error, StoreUnavailable):
            return error
        raise error

    async def close(self) -> None:
        """Cancel a ping still out (at shutdown)."""
        task, self._pending = self._pending, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _consume(task: asyncio.Task[None]) -> None:
    # A ping that ends after its probes gave up: its error is reported by the next
    # probe that finds it (or by none), never as "exception was never retrieved".
    if not task.cancelled():
        task.exception()
