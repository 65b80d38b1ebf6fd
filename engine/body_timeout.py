"""Request bodies that do not arrive in time: 408, said in the log.

A client that sends its headers and then trickles its body, or never sends the
rest, would hold a connection and a handler for as long as it likes; one doing it
on purpose holds hundreds. Every body is read within ``server.body_timeout``
seconds of its handler asking for it; past that the request is answered 408
``BODY_TIMEOUT`` and its connection closed (RFC 9110), and nothing of it is stored:
no handler stores anything before its body is read in full. The log says so at most
once a minute, with how many were kept quiet since (slow clients by the hundred
would otherwise write a line each). The line names the path without its query: a
webhook's ``?token=`` is a secret.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from aiohttp import web

from engine.clock import Clock
from engine.errors import RequestError
from engine.warn_throttle import WarnThrottle
from engine.wording import counted

log = logging.getLogger("disparo.api")

WARN_EVERY = timedelta(minutes=1)


class BodyTimeout:
    """How long a body may take (``server.body_timeout``), and the log of those late."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.seconds = seconds
        self._clock = clock
        self._throttle = WarnThrottle(WARN_EVERY)

    def late(self, request: web.Request) -> None:
        quiet = self._throttle.due("body", self._clock.now())
        if quiet is None:
            return
        more = f" ({counted(quiet, 'more such request')} since the last warning)" if quiet else ""
        log.warning(
            "%s %s from %s answered 408: its body did not arrive in full within %gs "
            "(server.body_timeout)%s; a client on a very slow link, or one holding "
            "connections open on purpose",
            request.method,
            request.rel_url.raw_path,  # percent-encoded: no line breaks, and no query
            request.remote or "an unknown address",
            self.seconds,
            more,
        )


BODY_TIMEOUT = web.AppKey("body_timeout", BodyTimeout)


async def read_body(request: web.Request) -> bytes:
    """The request's body, or a 408 ``RequestError`` once ``server.body_timeout``
    has passed without all of it."""
    timeout = request.app[BODY_TIMEOUT]
    try:
        async with asyncio.timeout(timeout.seconds):
            return await request.read()
    except TimeoutError:
        timeout.late(request)
        raise RequestError(
            status=408,
            code="BODY_TIMEOUT",
            message=f"the body did not arrive in full within {timeout.seconds:g} seconds "
            "(server.body_timeout); send the whole body at once, and retry",
        ) from None
