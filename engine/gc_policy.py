"""Garbage-collector settings for a long-running `disparo serve` process.

CPython's defaults (a young-generation collection every 700 net allocations of
container objects) suit short scripts. A serving engine allocates a few hundred
short-lived containers per message; nearly all of them die by reference counting,
and the cyclic collector mostly re-walks survivors that live for the whole
process (flows, compiled templates, pydantic models, imported modules).

Measured with ``gc.callbacks`` over a 5,500-message ``bench/dispatch.py`` engine
round on a 2-core machine: the defaults ran about 500 collections for 460-490 ms
in all (about 5% of the round's CPU), full ones pausing the loop up to 50 ms
while every request in flight waited. After :func:`tune_for_serving`: 9 young
collections for 15-20 ms, the longest 6 ms, plus the one full collection it makes
itself at start-up (about 40 ms, before any request).
"""

from __future__ import annotations

import gc

# Net allocations of container objects between two young-generation collections.
YOUNG_THRESHOLD = 10_000
# Young collections per middle-generation collection, and middle per full
# (CPython also skips a full collection until a quarter of the long-lived objects
# are new).
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 20


def tune_for_serving() -> None:
    """Collect once, keep everything alive now out of later collections, space them.

    Call it when start-up is over (flows loaded, app built): what exists then lives
    as long as the process, so ``gc.freeze`` moves it to a generation no collection
    walks again. Cycles created later are still collected, only less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
