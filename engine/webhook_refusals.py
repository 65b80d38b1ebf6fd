"""What a provider's webhook could not take, said in the log.

A refused item still gets its webhook a 200 (the others were kept), so the vendor
does not retry it; a vendor whose every status report is refused (a field renamed
on its side) would leave runs waiting with nothing in the log. Each refusal is
warned about, at most once a minute per provider, with how many were kept quiet.
Refusals name the field and why, never the value (``providers.generic_webhook``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from engine.clock import Clock
from engine.wording import counted

log = logging.getLogger("disparo.api")

WARN_EVERY = timedelta(minutes=1)
SHOWN = 3  # refused items named in one line


class RefusalLog:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._warned: dict[str, datetime] = {}
        self._quiet: dict[str, int] = {}

    def items(self, provider: str, errors: Sequence[str]) -> None:
        """Some items of a webhook were refused, the others kept."""
        why = "; ".join(errors[:SHOWN]) + (" ..." if len(errors) > SHOWN else "")
        self._say(
            provider, f"{counted(len(errors), 'item')} refused (the others, if any, kept)", why
        )

    def body(self, provider: str, why: str) -> None:
        """A whole webhook was refused (400)."""
        self._say(provider, "the whole body refused (400)", why)

    def _say(self, provider: str, what: str, why: str) -> None:
        now = self._clock.now()
        last = self._warned.get(provider)
        if last is not None and now - last < WARN_EVERY:
            self._quiet[provider] = self._quiet.get(provider, 0) + 1
            return
        self._warned[provider] = now
        quiet = self._quiet.pop(provider, 0)
        more = f" ({counted(quiet, 'more refusal')} since the last warning)" if quiet else ""
        log.warning("webhook %s: %s%s: %s", provider, what, more, why)
