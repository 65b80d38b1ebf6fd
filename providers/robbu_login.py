"""The one Robbu access token of a provider instance, and the login that renews it.

Robbu's ``POST /v1/login`` answers a token that lasts for years, and every new login
invalidates the previous token. So a token is fetched once, on the first send, and
kept; it is renewed only when a send answers 401, and then once for everybody:
the first caller that presents a stale token starts the login, every other caller
(holding the same stale token, or arriving while the login runs) waits for that
same login instead of starting its own. A caller whose stale token was already
replaced simply gets the new one. Twenty sends refused at once cost one login.

With several engine processes the token lives in the engine's store
(``ProviderHost.provider_state``), one per Robbu API user for the whole deployment,
so a restart keeps it too. The single flight then spans processes: a process whose
token was refused asks the store to claim the renewal for the version it holds.
If another process already stored a newer token, it takes that one (no login); if
another process holds the claim, it polls the store until that token arrives (or
the claim's lease lapses, when its holder died); only the claimant logs in, and
stores the token with a compare-and-set on the version. The store holds the token
as issued: the database is trusted like the config file that holds the password
(anyone who can read either can send as this user).

A login never carries a message, so every login failure says ``left=False``: a
timeout after the login request left is ``ProviderUnavailable``, not ambiguous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from engine.errors import (
    ProviderAmbiguous,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from engine.shared_state import ProviderCredential
from providers.base import ProviderState, config_error, vendor_message
from providers.transport import HttpTransport, Redactor

# How often a process waiting for another process's login looks for the new token.
POLL_SECONDS = 0.2


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
        lease: float = 45.0,
    ) -> None:
        self.provider = provider
        self.logins = 0  # successful logins, for tests and metrics
        self._url, self._company, self._username = url, company, username
        self._body = json.dumps(
            {"Company": company, "Username": username, "Password": password}, ensure_ascii=False
        ).encode()
        self._http, self._redact = http, redact
        self._token: str | None = None
        self._version = 0  # the stored version of ``_token`` (0: not from the store)
        self._pending: asyncio.Task[str] | None = None
        self._state: ProviderState | None = None
        # One token per Robbu API user: every instance and process of that user shares it.
        self.credential = f"robbu {url.removesuffix('/v1/login')} {company}/{username}"
        self._lease = lease  # longer than a login may take: the claim lapses after it

    def share_through(self, state: ProviderState | None) -> None:
        """Keep the token in the engine's store (None: in this process only)."""
        self._state = state

    async def token(self) -> str:
        """The current token, logging in first if there is none yet."""
        if self._pending is not None:
            return await asyncio.shield(self._pending)
        if self._token is not None:
            return self._token
        return await self._join(stale_version=None)

    async def renew(self, stale: str) -> str:
        """A token other than ``stale`` (which Robbu refused): the one another caller
        already obtained, or the result of the one login in flight."""
        if self._pending is not None:
            return await asyncio.shield(self._pending)
        if self._token is not None and self._token != stale:
            return self._token
        self._token = None  # known bad: a failed renewal must not leave it in use
        return await self._join(stale_version=self._version)

    def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    async def _join(self, *, stale_version: int | None) -> str:
        """Start the one obtaining of a token; ``stale_version`` None: none refused yet."""
        task = asyncio.get_running_loop().create_task(self._obtain(stale_version))
        self._pending = task
        task.add_done_callback(self._settled)
        return await asyncio.shield(task)

    def _settled(self, task: asyncio.Task[str]) -> None:
        if self._pending is task:
            self._pending = None
        if not task.cancelled():
            task.exception()  # retrieved here so a login nobody awaits anymore logs nothing

    async def _obtain(self, stale_version: int | None) -> str:
        state = self._state
        if state is None:
            return self._adopt(await self._login(), version=0)
        if stale_version is None:
            stored = await state.credential(self.credential)
            if stored is not None:  # another process (or this one, before a restart) has it
                return self._adopt(stored.value, version=stored.version)
            stale_version = 0
        return await self._obtain_shared(state, stale_version)

    async def _obtain_shared(self, state: ProviderState, stale_version: int) -> str:
        """The token after ``stale_version``: another process's, or one login of ours."""
        while True:
            renewal = await state.claim_credential_renewal(
                self.credential, stale_version=stale_version, lease=self._lease
            )
            if renewal.current is not None:
                return self._adopt_stored(renewal.current)
            if renewal.claimed:
                return await self._login_for_all(state, renewal.stored_version)
            wait = POLL_SECONDS
            if renewal.busy_until is not None:
                wait = min(wait, max(0.0, (renewal.busy_until - state.now()).total_seconds()))
            await state.sleep(wait)

    async def _login_for_all(self, state: ProviderState, replaces_version: int) -> str:
        try:
            token = await self._login()
        except BaseException:
            # Robbu issued nothing: let the next process (or send) try at once. If the
            # store fails too, the claim lapses by itself after its lease.
            with contextlib.suppress(Exception):
                await state.release_credential_renewal(self.credential)
            raise
        stored = await state.store_renewed_credential(
            self.credential, token, replaces_version=replaces_version
        )
        if stored is None:
            # Our claim had lapsed and another process stored its token first; ours may
            # still be the valid one, but every process uses the stored one: a 401 on
            # it costs one more login, never a disagreement.
            current = await state.credential(self.credential)
            if current is not None:
                return self._adopt_stored(current)
            return self._adopt(token, version=0)
        return self._adopt_stored(stored)

    def _adopt_stored(self, credential: ProviderCredential) -> str:
        return self._adopt(credential.value, version=credential.version)

    def _adopt(self, token: str, *, version: int) -> str:
        self._redact.add(token)
        self._token, self._version = token, version
        return token

    async def _login(self) -> str:
        """One ``POST /v1/login``: the new token (not yet adopted)."""
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
        if error.status == 404:  # the document: "URL incorreta"
            return config_error(
                self.provider,
                f"{self.provider}: the Robbu login at {self._url} answered 404 (URL incorreta)"
                f"{said}: the address is wrong, not the credentials; Robbu's is "
                "https://api.robbu.global",
                setting="base_url",
                status=404,
                vendor_message=error.vendor_message,
                left=False,
            )
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
