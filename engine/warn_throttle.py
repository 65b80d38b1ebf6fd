"""At most one warning per key in a period, counting the ones kept quiet.

A fault that repeats (a vendor whose every webhook is refused, a sender whose clock
is hours ahead) would otherwise write a warning per request and bury the log.
"""

from __future__ import annotations

from datetime import datetime, timedelta


class WarnThrottle:
    def __init__(self, every: timedelta) -> None:
        self._every = every
        self._warned: dict[str, datetime] = {}
        self._quiet: dict[str, int] = {}

    def due(self, key: str, now: datetime) -> int | None:
        """None when ``key`` was warned about less than ``every`` ago (this one is kept
        quiet); else how many were kept quiet since its last warning, to say in this one."""
        last = self._warned.get(key)
        if last is not None and now - last < self._every:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return None
        self._warned[key] = now
        return self._quiet.pop(key, 0)
