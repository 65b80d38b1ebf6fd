"""One render's budget of wall time and of text built in all (``engine.sandbox``).

Filter chains such as ``map`` can build a lot without any one value passing the
sandbox's size limits (100 lists of 100,000 items each are 80 MB); every text
character and collection item the sandbox checks spends from this budget, and a
render past either limit fails its message with ``TooMuchWork``. Without a budget
(``render_budget`` not entered) nothing is counted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from jinja2.exceptions import SecurityError

# One render's wall time and the characters all its texts add up to. A real message
# takes well under a millisecond and builds a few KB; the time is far above that, so
# a pause of the whole process (swapping, a long collection) fails no message.
MAX_RENDER_SECONDS = 5.0
MAX_PRODUCED = 4_000_000


class TooLarge(SecurityError):
    """A template tried to build a value past the sandbox's size limits."""


class TooMuchWork(TooLarge):
    """A render did more work than the sandbox allows: loop iterations, time or text
    built in all."""


class _Budget:
    __slots__ = ("deadline", "produced")

    def __init__(self, deadline: float) -> None:
        self.deadline, self.produced = deadline, 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("disparo_render_budget", default=None)


@contextlib.contextmanager
def render_budget() -> Iterator[None]:
    """One render's budget of time and built text; ``TooMuchWork`` past either."""
    token = _BUDGET.set(_Budget(time.monotonic() + MAX_RENDER_SECONDS))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def spend(characters: int) -> None:
    """Count ``characters`` of built text against the render's budget, and its time."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.produced += characters
    if budget.produced > MAX_PRODUCED:
        raise TooMuchWork(
            f"this template builds over {MAX_PRODUCED:,} characters of text (or list items) "
            "in one message; build less (a filter over a long list?)"
        )
    if time.monotonic() > budget.deadline:
        raise TooMuchWork(
            f"this template took over {MAX_RENDER_SECONDS:g} s to render one message; "
            "do less work in it (a slow filter over a long list?)"
        )
