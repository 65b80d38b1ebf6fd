"""What a provider's webhook could not take, said in the log.

A refused item still gets its webhook a 200 (the others were kept), so the vendor
does not retry it; a vendor whose every status report is refused (a field renamed
on its side) would leave runs waiting with nothing in the log. Each refusal is
warned about, at most once a minute per provider, with how many were kept quiet.
Refusals name the field and why, never the value (``providers.generic_webhook``).
A webhook refused for its ``?token=`` is warned about the same way, apart from the
others, and never with the token it carried; one for a provider name the config
lacks too, once a minute for all names together (an outsider could make up any
number). Both are answered the same 404, so only the log tells them apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from engine.clock import Clock
from engine.warn_throttle import WarnThrottle
from engine.wording import counted

log = logging.getLogger("disparo.api")

WARN_EVERY = timedelta(minutes=1)
SHOWN = 3  # refused items named in one line
NAME_SHOWN = 64  # characters of an unknown provider name said in the log


class RefusalLog:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._throttle = WarnThrottle(WARN_EVERY)

    def items(self, provider: str, errors: Sequence[str]) -> None:
        """Some items of a webhook were refused, the others kept."""
        why = "; ".join(errors[:SHOWN]) + (" ..." if len(errors) > SHOWN else "")
        self._say(
            provider, f"{counted(len(errors), 'item')} refused (the others, if any, kept)", why
        )

    def body(self, provider: str, why: str) -> None:
        """A whole webhook was refused (400)."""
        self._say(provider, "the whole body refused (400)", why)

    def unauthorized(self, provider: str, *, given: bool) -> None:
        """A webhook came with a wrong or no ``?token=`` (404): a vendor configured
        with an old URL keeps every report out, and nothing else would say so."""
        self._say(
            provider,
            f"a request with {'a wrong' if given else 'no'} ?token= refused (404)",
            f"the URL configured at the vendor must end in ?token=<providers.{provider}."
            "webhook_secret>; until it does, its status reports and replies are lost to "
            "disparo",
            key=f"{provider} token",
        )

    def unknown(self, name: str, *, known: Sequence[str]) -> None:
        """A webhook for a provider name the config lacks (404): a vendor posting to
        a mistyped or old URL, or someone looking for the names that exist."""
        self._say(
            repr(name[:NAME_SHOWN]),  # an outsider's text: quoted, control characters escaped
            "no provider of that name is configured; a request refused (404)",
            "a vendor posting to a mistyped or old URL, or someone probing for provider "
            f"names; the configured ones: {', '.join(known) or 'none'}",
            key="unknown provider",  # one key for all names: an outsider picks them
        )

    def _say(self, provider: str, what: str, why: str, *, key: str | None = None) -> None:
        quiet = self._throttle.due(key or provider, self._clock.now())
        if quiet is None:
            return
        more = f" ({counted(quiet, 'more refusal')} since the last warning)" if quiet else ""
        log.warning("webhook %s: %s%s: %s", provider, what, more, why)
