"""The one Robbu access token of a provider instance, and the login that renews it.

Robbu's ``POST /v1/login`` answers a token that lasts for years, and every new login
invalidates the previous token. So a token is fetched once, on the first send, and
kept; it is renewed only when a send answers 401, and then once for everybody:
the first caller that presents a stale token starts the login, every other caller
(holding the same stale token, or arriving while the login runs) waits for that
same login instead of starting its own. A caller whose stale token was already
replaced simply gets the new one. Twenty sends refused at once cost one login.

A login never carries a message, so every login failure says ``left=False``: a
timeout after the login request left is ``ProviderUnavailable``, not ambiguous.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from engine.errors import (
    ProviderAmbiguous,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from providers.base import vendor_message
from providers.transport import HttpTransport, Redactor


class RobbuLogin:
    """Single-flight holder of the access token (never logged, redacted everywhere)."""

    def __init__(
        self,
        provider: str,
        *,
        url: str,
        company: str,
        username: str,
        password: str,
        http: HttpTransport,
        redact: Redactor,
    ) -> None:
        self.provider = provider
        self.logins = 0  # successful logins, for tests and metrics
        self._url, self._company, self._username = url, company, username
        self._body = json.dumps(
            {"Company": company, "Username": username, "Password": password}, ensure_ascii=False
        ).encode()
        self._http, self._redact = http, redact
        self._token: str | None = None
        self._pending: asyncio.Task[str] | None = None

    async def token(self) -> str:
        """The current token, logging in first if there is none yet."""
        if self._pending is not None:
            return await asyncio.shield(self._pending)
        if self._token is not None:
            return self._token
        return await self._join()

    async def renew(self, stale: str) -> str:
        """A token other than ``stale`` (which Robbu refused): the one another caller
        already obtained, or the result of the one login in flight."""
        if self._pending is not None:
            return await asyncio.shield(self._pending)
        if self._token is not None and self._token != stale:
            return self._token
        self._token = None  # known bad: a failed renewal must not leave it in use
        return await self._join()

    def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    async def _join(self) -> str:
        task = asyncio.get_running_loop().create_task(self._login())
        self._pending = task
        task.add_done_callback(self._settled)
        return await asyncio.shield(task)

    def _settled(self, task: asyncio.Task[str]) -> None:
        if self._pending is task:
            self._pending = None
        if not task.cancelled():
            task.exception()  # retrieved here so a login nobody awaits anymore logs nothing

    async def _login(self) -> str:
        name = self.provider
        try:
            answer = await self._http.request(
                "POST", self._url, body=self._body, headers={"Content-Type": "application/json"}
            )
        except ProviderAmbiguous as exc:
            raise ProviderUnavailable(
                f"{name}: the Robbu login got no answer ({exc}); no message was sent", left=False
            ) from exc
        if not answer.ok:
            raise self._refused(self._http.status_error(answer))
        token = _access_token(answer.body)
        if token is None:
            said = vendor_message(answer.body, limit=200)
            raise ProviderUnavailable(
                f"{name}: the Robbu login answered {answer.status} without an access_token"
                + (f": {self._redact(said)}" if said else ""),
                status=answer.status,
                left=False,
            )
        self._redact.add(token)
        self._token = token
        self.logins += 1
        return token

    def _refused(self, error: ProviderError) -> ProviderError:
        said = f": {error.vendor_message}" if error.vendor_message else ""
        details: dict[str, Any] = {
            "status": error.status,
            "vendor_message": error.vendor_message,
            "retry_after": error.retry_after,
            "left": False,
        }
        if isinstance(error, ProviderRateLimited | ProviderUnavailable):
            return type(error)(
                f"{self.provider}: the Robbu login answered {error.status}{said}; no message "
                "was sent",
                **details,
            )
        return ProviderAuthError(
            f"{self.provider}: Robbu refused the login of user {self._username!r} of company "
            f"{self._company!r} ({error.status}){said}; check company, username and password "
            "(the user must be of type API)",
            **details,
        )


def _access_token(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    token = data.get("access_token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None
