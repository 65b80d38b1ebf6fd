"""SIGHUP from the first moment of `disparo serve`.

SIGHUP's default action ends the process, and `serve` installs its reload handler
only once the engine is up (a second or more). A logrotate or `systemctl reload`
hook cannot tell start-up from serving, so ``hold_reloads`` (called before anything
heavy is imported) keeps a SIGHUP that arrives meanwhile, and `serve` reloads once
it listens (``reload_asked``). Light on purpose: nothing is imported but ``signal``.
"""

from __future__ import annotations

import signal
from types import FrameType

_asked: list[bool] = []


def _keep(signum: int, frame: FrameType | None) -> None:
    _asked.append(True)


def hold_reloads() -> None:
    if hasattr(signal, "SIGHUP"):  # not on Windows
        signal.signal(signal.SIGHUP, _keep)


def reload_asked() -> bool:
    return bool(_asked)
