"""Reading a request's body: in time, or a 408; a client that hangs up half-way is
no bug.

A client that sends its headers and then trickles its body, or never sends the
rest, would hold a connection and a handler for as long as it likes; one doing it
on purpose holds hundreds. Every body is read within ``server.body_timeout``
seconds of its handler asking for it; past that the request is answered 408
``BODY_TIMEOUT`` and its connection closed (RFC 9110), and nothing of it is stored:
no handler stores anything before its body is read in full. A client that closes
the connection before its body is in (a vendor's own timeout, a dropped mobile
link) gets nothing stored either, and the log says so at INFO instead of an
"unexpected error" with a traceback. Each is said at most once a minute, with how
many were kept quiet since (slow clients by the hundred would otherwise write a
line each). The lines name the path without its query: a webhook's ``?token=`` is
a secret.
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


class BodyReads:
    """How long a body may take (``server.body_timeout``), and the log of the bodies
    that came too late or not at all."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.seconds = seconds
        self._clock = clock
        self._throttle = WarnThrottle(WARN_EVERY)

    def late(self, request: web.Request) -> None:
        self._say(
            "late",
            logging.WARNING,
            request,
            f"answered 408: its body did not arrive in full within {self.seconds:g}s "
            "(server.body_timeout)",
            "; a client on a very slow link, or one holding connections open on purpose",
        )

    def cut(self, request: web.Request) -> None:
        self._say(
            "cut",
            logging.INFO,
            request,
            "closed the connection before its body arrived in full",
            "; nothing of it was stored",
        )

    def _say(self, key: str, level: int, request: web.Request, what: str, then: str) -> None:
        quiet = self._throttle.due(key, self._clock.now())
        if quiet is None:
            return
        more = (
            f" ({counted(quiet, 'more such request')} since the last one logged)" if quiet else ""
        )
        log.log(
            level,
            "%s %s from %s %s%s%s",
            request.method,
            request.rel_url.raw_path,  # percent-encoded: no line breaks, and no query
            request.remote or "an unknown address",
            what,
            more,
            then,
        )


BODY_READS = web.AppKey("body_reads", BodyReads)


async def read_body(request: web.Request) -> bytes:
    """The request's body; a 408 ``RequestError`` once ``server.body_timeout`` has
    passed without all of it, a 400 one (that nobody reads) when the client hung up."""
    reads = request.app[BODY_READS]
    try:
        async with asyncio.timeout(reads.seconds):
            return await request.read()
    except TimeoutError:
        reads.late(request)
        raise RequestError(
            status=408,
            code="BODY_TIMEOUT",
            message=f"the body did not arrive in full within {reads.seconds:g} seconds "
            "(server.body_timeout); send the whole body at once, and retry",
        ) from None
    except ConnectionError:  # aiohttp's "Connection lost": the client closed it
        reads.cut(request)
        raise RequestError(
            status=400,
            code="BODY_INCOMPLETE",
            message="the connection closed before the whole body arrived; nothing was stored",
        ) from None
