"""One HTTP client for every adapter: a pooled aiohttp session that knows whether a
request left before it failed.

That one bit decides what the engine may do next:

- could not connect (refused, DNS, TLS) -> ``ProviderUnreachable`` (never left);
- timed out before the request was written -> ``ProviderUnavailable`` (never left);
- timed out, reset or disconnected after it was written -> ``ProviderAmbiguous``:
  the vendor may have the message, so a resend without an idempotency key could
  deliver it twice;
- any answer with a status -> ``Answer``; ``status_error`` maps a non-2xx answer;
- a body over ``MAX_ANSWER_BYTES`` is not read: a 2xx -> ``ProviderAmbiguous``, any
  other status -> its ``Answer`` without the body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from engine.errors import (
    ProviderAmbiguous,
    ProviderError,
    ProviderUnavailable,
    ProviderUnreachable,
)
from providers.base import (
    RECHECK_AFTER_SECONDS,
    Departure,
    ProviderState,
    SendWithdrawn,
    error_for_status,
    vendor_message,
    watched_departure,
)

# A vendor's answer is a few hundred bytes of JSON; one far beyond this is a broken
# gateway or a proxy in the way, and is not read whole into memory.
MAX_ANSWER_BYTES = 1 << 20
_ANSWER_CHUNK = 64 << 10

# The transports whose slot this task holds (``HttpTransport.slot``).
_held: ContextVar[tuple[HttpTransport, ...]] = ContextVar("disparo_held_slots", default=())


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def host_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: errors name the host only, since a path or
    query may carry a token and the user part a password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


CUT = "…"  # what ends a text cut to a length
MIN_CUT_SECRET = 4  # the shortest start of a secret hidden at a cut; fewer are ordinary words


class Redactor:
    """Replaces known secrets (and their longer fragments) in text shown to operators."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            if secret:
                self.secrets.append(secret)
                if secret.lower().startswith("bearer "):
                    self.secrets.append(secret[7:])
        self.secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        if text.endswith(CUT):  # cut to a length (``one_line``) inside a secret
            kept = text[: -len(CUT)]
            for secret in self.secrets:
                for size in range(len(secret) - 1, MIN_CUT_SECRET - 1, -1):
                    if kept.endswith(secret[:size]):
                        return kept[:-size] + "***" + CUT
        return text


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None (and the rest left unread) when it exceeds ``limit``."""
    if response.content_length is not None:
        if response.content_length > limit:
            return None
        # A declared length within the limit: the parser reads exactly that much.
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_ANSWER_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class HttpTransport:
    """A connection pool sized to ``max_in_flight``; at most that many requests at once."""

    def __init__(
        self, provider: str, *, timeout: float, max_in_flight: int, redact: Redactor | None = None
    ) -> None:
        self.provider = provider
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.redact = redact or Redactor()
        # The clock a Retry-After HTTP-date is measured on: the engine's (its store's)
        # when the provider has one, else the host's.
        self.clock: Callable[[], datetime] | None = None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._session: aiohttp.ClientSession | None = None

    async def start(self, state: ProviderState | None = None) -> None:
        """Open the pool; with the engine's ``state``, Retry-After dates are measured on
        the engine's clock."""
        if state is not None:
            self.clock = state.now
        if self._session is not None:
            return
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_mark_left)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_in_flight),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            trace_configs=[trace],
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request; transport failures raise the typed errors above."""
        session = self._session
        if session is None:
            raise RuntimeError(f"provider {self.provider} was used before start()")
        attempt = SimpleNamespace(left=False)
        status: int | None = None
        held = self.holding
        if held:
            await self._use_held_slot()
        else:
            await self._take_slot()
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=dict(headers or {}),
                allow_redirects=False,  # a redirected POST may be replayed as a GET
                trace_request_ctx=attempt,
            ) as response:
                status = response.status
                answer_headers = response.headers
                raw = await _read_at_most(response, MAX_ANSWER_BYTES)
                if raw is None:
                    raw = self._oversized(status, url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if status is not None:
                # The status already says what happened; only the body was lost.
                return Answer(status, answer_headers, b"")
            raise self.transport_error(exc, url, left=attempt.left) from exc
        finally:
            if not held:
                self._slots.release()
        return Answer(status, answer_headers, raw)

    def _oversized(self, status: int, url: str) -> bytes:
        """An answer larger than ``MAX_ANSWER_BYTES``: a 2xx cannot be read, so whether
        the vendor took the message is unknown; any other status says what happened."""
        if 200 <= status < 300:
            raise ProviderAmbiguous(
                f"{self.provider}: {host_of(url)} answered {status} with a body larger than "
                f"{MAX_ANSWER_BYTES} bytes, not read; the message may have been accepted",
                status=status,
                left=True,
            )
        return b""

    @property
    def holding(self) -> bool:
        """Whether this task holds one of this transport's slots (``slot``)."""
        return self in _held.get()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``max_in_flight`` slots for one send: the requests made
        inside (a login, then the message, one after the other) use it instead of
        queueing for their own. Reentrant: inside a held slot it holds nothing more.

        The engine enters it before it marks the message ``sending``, so a send that
        waits for a connection is never ``sending``: taking the slot writes nothing,
        and the departure watch is told only that the send is ``waiting`` meanwhile.
        """
        if self.holding:
            yield
            return
        watched = watched_departure()
        if watched is not None:
            watched.entered = True
            self._refuse_withdrawn(watched)
            watched.contended = self._slots.locked()
            watched.waiting = True
        try:
            await self._slots.acquire()
        finally:
            if watched is not None:
                watched.waiting = False
        token = _held.set((*_held.get(), self))
        try:
            if watched is not None:
                self._refuse_withdrawn(watched)  # while it waited
            yield
        finally:
            _held.reset(token)
            self._slots.release()

    async def _use_held_slot(self) -> None:
        """A request in a held slot: it may leave now, unless the send was withdrawn
        (or, after a wait since the send began, is no longer wanted)."""
        watched = watched_departure()
        if watched is None:
            return
        watched.entered = True
        waited = time.monotonic() - watched.started > RECHECK_AFTER_SECONDS
        await self._may_leave(watched, waited=waited)

    async def _take_slot(self) -> None:
        """One of the ``max_in_flight`` slots, reported to the engine's departure watch:
        waiting for it, nothing has been written; once taken, the request may be."""
        watched = watched_departure()
        if watched is None:
            await self._slots.acquire()
            return
        watched.entered = True
        self._refuse_withdrawn(watched)
        contended = self._slots.locked()
        watched.waiting = True
        try:
            await self._slots.acquire()
        finally:
            watched.waiting = False
        try:
            waited = contended or time.monotonic() - watched.started > RECHECK_AFTER_SECONDS
            await self._may_leave(watched, waited=waited)
        except BaseException:
            self._slots.release()
            raise

    async def _may_leave(self, watched: Departure, *, waited: bool) -> None:
        """With a slot: ask ``still_wanted`` after a wait, refuse a withdrawn send,
        else report that the request may leave from now on."""
        if not watched.withdrawn and waited and watched.still_wanted is not None:
            watched.withdrawn = not await watched.still_wanted()
        self._refuse_withdrawn(watched)
        watched.may_have_left = True

    def _refuse_withdrawn(self, watched: Departure) -> None:
        if watched.withdrawn and not watched.may_have_left:
            raise SendWithdrawn(f"{self.provider}: the send was withdrawn before it left")

    def transport_error(self, exc: BaseException, url: str, *, left: bool) -> ProviderError:
        where, name = host_of(url), self.provider
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return ProviderUnreachable(f"{name}: the host of {where} did not resolve", left=False)
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.strerror or type(exc.os_error).__name__
            return ProviderUnreachable(f"{name} could not connect to {where}: {reason}", left=False)
        if isinstance(exc, TimeoutError):
            if left:
                return ProviderAmbiguous(
                    f"{name}: no answer from {where} within {self.timeout:g}s "
                    "after the request was sent; it may have been delivered"
                )
            return ProviderUnavailable(
                f"{name}: timed out after {self.timeout:g}s before the request reached {where}",
                left=False,
            )
        kind = type(exc).__name__
        if left:
            return ProviderAmbiguous(
                f"{name}: the connection to {where} broke after the request was sent ({kind}); "
                "it may have been delivered"
            )
        return ProviderUnreachable(f"{name}: the connection to {where} failed ({kind})", left=False)

    def status_error(self, answer: Answer, said: str | None = None) -> ProviderError:
        """The typed error for a non-2xx answer, with the vendor's words (redacted)."""
        words = said if said is not None else vendor_message(answer.body)
        return error_for_status(
            answer.status,
            self.redact(words) if words else None,
            provider=self.provider,
            retry_after=answer.headers.get("Retry-After"),
            now=self.clock() if self.clock is not None else None,
        )


async def _mark_left(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    # From here on the vendor may have the request: a lost answer is ambiguous.
    context.trace_request_ctx.left = True
