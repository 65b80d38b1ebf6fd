"""`disparo serve`'s garbage-collector settings (checked in a child interpreter, so
the test process's own collector is left as it is)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json, weakref
from engine.gc_policy import tune_for_serving, YOUNG_THRESHOLD

class Node:
    pass

tune_for_serving()
frozen = gc.get_freeze_count()
threshold = gc.get_threshold()
# A cycle made after start-up (a request's objects, say) must still be reclaimed.
a, b = Node(), Node()
a.other, b.other = b, a
alive = weakref.ref(a)
del a, b
# No explicit gc.collect(): the allocations that follow must trigger it by themselves.
keep = [[] for _ in range(YOUNG_THRESHOLD * 3)]
print(json.dumps({"frozen": frozen, "threshold": threshold, "cycle_reclaimed": alive() is None}))
"""


def run_probe() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_start_up_objects_leave_the_collector_and_collections_are_spaced_out() -> None:
    probe = run_probe()
    assert probe["frozen"] > 1000  # the imported engine and its libraries
    assert probe["threshold"] == [10_000, 20, 20]


def test_cycles_made_after_start_up_are_still_reclaimed() -> None:
    assert run_probe()["cycle_reclaimed"] is True
