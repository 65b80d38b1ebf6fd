"""Requests aiohttp refuses before disparo sees them, said once a minute.

A request that is not HTTP aiohttp can read (a header line over 8190 bytes, too
many headers, a broken chunk size, a method with a stray character) is answered
400 by aiohttp itself, in plain text: no hook lets an application shape that answer
(aio-libs/aiohttp#3287), so it is the one answer not in disparo's JSON error shape.
aiohttp also logs each at ERROR, with a traceback: a port open to the internet meets
such requests from scanners all day, and they would bury the lines an on-call person
needs. This filter on aiohttp's server logger turns them into one WARNING a minute,
with how many were kept quiet, naming the client and what aiohttp found wrong, not
the bytes it quotes (a header line may carry a token).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from engine.clock import Clock
from engine.warn_throttle import WarnThrottle

log = logging.getLogger("disparo.api")
AIOHTTP_SERVER = logging.getLogger("aiohttp.server")
WARN_EVERY = timedelta(minutes=1)


class BadHttpLog(logging.Filter):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self._throttle = WarnThrottle(WARN_EVERY)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno < logging.ERROR or not isinstance(exc, BadHttpMessage):
            return True  # aiohttp's DEBUG (TLS sent to this port), or no such request
        quiet = self._throttle.due("bad http", self._clock.now())
        if quiet is not None:
            client = record.args[0] if isinstance(record.args, tuple) and record.args else None
            # aiohttp's text, up to where it quotes what was sent ("...: b'Bearer ...")
            what = str(exc.message).split(":", 1)[0].strip() or type(exc).__name__
            more = f" ({quiet:,} more since the last one logged)" if quiet else ""
            log.warning(
                "a request from %s that is not valid HTTP answered 400 by aiohttp: %s%s",
                client or "an unknown address",
                what,
                more,
            )
        return False


def watch(app: web.Application, clock: Clock) -> None:
    """Filter aiohttp's server log while ``app`` runs."""
    bad_http = BadHttpLog(clock)

    async def start(app: web.Application) -> None:
        AIOHTTP_SERVER.addFilter(bad_http)

    async def stop(app: web.Application) -> None:
        AIOHTTP_SERVER.removeFilter(bad_http)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
