"""Every test also checks what disparo logged meanwhile: no phone number in clear.

Log lines outlive the data they describe (retention, erasure) and travel to log
stores operators do not control, so a phone appears masked (``+55*******8888``)
in every line of every logger under ``disparo``, at every level, whatever the test
exercises. Each line is checked as ``disparo serve`` writes it, through the
``RedactingFilter`` its log handler has. The levels are left as each test sets them
(other tests read ``caplog``): WARNING and above always, lower when a test asks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from engine.logs import RedactingFilter

# A Brazilian number in any way it is written: with or without +55, the area code
# in brackets or not, spaces, dots or dashes between the groups.
_CLEAR_PHONE = re.compile(
    r"(?<![\w*+])(?:\+?55[ .-]?)?\(?\d{2}\)?[ .-]?9?\d{4}[ .-]?\d{4}(?![\w-])"
)
_AS_SERVE_WRITES = RedactingFilter()


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]}"
        self.lines.append(f"{record.name} {record.levelname}: {_AS_SERVE_WRITES.clean(text)}")


@pytest.fixture(autouse=True)
def _no_clear_phone_in_logs() -> Iterator[None]:
    disparo = logging.getLogger("disparo")
    kept = _Kept()
    disparo.addHandler(kept)
    try:
        yield
    finally:
        disparo.removeHandler(kept)
    leaks = [line for line in kept.lines if _CLEAR_PHONE.search(line)]
    assert not leaks, "a phone number in clear in disparo's log:\n" + "\n".join(leaks[:5])
