"""What a bulk start writes, decided in plain Python: both SQL stores plan with this.

Given the requests of a ``BulkStart``, the keys among them already stored and the
contacts already in the flow, ``plan_starts`` decides per request (in order) whether
it starts a run, repeats a key, or is refused because the contact is in the flow,
and builds the rows to insert as tuples (no objects per request: a sweep plans
thousands per second).
"""

from __future__ import annotations

import os
from collections.abc import Set
from dataclasses import dataclass, field

from storage.base import BulkStart, BulkStartResult
from storage.sqlite_codec import dumps

SKIP_REASON = "contact already has an open run of this flow"


@dataclass(slots=True)
class StartPlan:
    """Rows to insert. ``runs``: (run id, contact id, key, START payload JSON: the
    ``run.started`` data written when the run enters its first step); ``events``: the
    ``run.trigger_skipped`` rows (contact id, None, kind, data JSON, dedupe key), in
    request order."""

    runs: list[tuple[str, str, str, str]] = field(default_factory=list)
    events: list[tuple[str, str | None, str, str, str | None]] = field(default_factory=list)
    existing: int = 0
    skipped: list[str] = field(default_factory=list)

    def result(self) -> BulkStartResult:
        return BulkStartResult(
            started=len(self.runs), existing=self.existing, already_active=tuple(self.skipped)
        )


def plan_starts(starts: BulkStart, stored_keys: Set[str], busy: Set[str]) -> StartPlan:
    """Decide every request of ``starts``: ``stored_keys`` are the keys among them that
    already started a run, ``busy`` the contacts with an open run of the flow (only
    consulted for an exclusive flow)."""
    plan = StartPlan()
    runs, events, skipped = plan.runs, plan.events, plan.skipped
    seen = set(stored_keys)
    taken = set(busy) if starts.exclusive else set()
    exclusive = starts.exclusive
    base = {"flow": starts.flow, "version": starts.flow_version, "trigger": starts.trigger}
    plain = dumps(base)
    ids = iter(new_run_ids(len(starts.requests)))
    for contact_id, key, data in starts.requests:
        if key in seen:
            plan.existing += 1
            continue
        if contact_id in taken:
            skipped.append(contact_id)
            events.append(skip_event(contact_id, key, starts.flow, starts.trigger))
            continue
        seen.add(key)
        if exclusive:
            taken.add(contact_id)
        runs.append((next(ids), contact_id, key, dumps({**base, **data}) if data else plain))
    return plan


def skip_event(
    contact_id: str, key: str, flow: str, trigger: str
) -> tuple[str, None, str, str, str]:
    """The ``run.trigger_skipped`` row of a refused request (its dedupe key: once per key)."""
    data = {"flow": flow, "trigger": trigger, "key": key, "reason": SKIP_REASON}
    return (contact_id, None, "run.trigger_skipped", dumps(data), f"skipped:{key}")


def check_requests(starts: BulkStart) -> None:
    """``ValueError`` for a request that cannot be stored (empty id or key), or
    ``contacts`` that are not one per request with the request's contact id."""
    for contact_id, key, _ in starts.requests:
        if not contact_id or not key:
            raise ValueError(
                f"a bulk start of flow {starts.flow!r} needs a contact id and an idempotency "
                f"key in every request; got contact {contact_id!r}, key {key!r}"
            )
    if not starts.contacts:
        return
    if len(starts.contacts) != len(starts.requests):
        raise ValueError(
            f"a bulk start of flow {starts.flow!r} got {len(starts.contacts)} contacts for "
            f"{len(starts.requests)} requests; give one contact per request or none"
        )
    for index, (upsert, (contact_id, _, _)) in enumerate(
        zip(starts.contacts, starts.requests, strict=True)
    ):
        if upsert.id != contact_id:
            raise ValueError(
                f"a bulk start of flow {starts.flow!r}: contacts[{index}] has id "
                f"{upsert.id!r} but its request names contact {contact_id!r}"
            )


def starting_requests(starts: BulkStart, plan: StartPlan) -> list[int]:
    """The indexes of the requests ``plan`` starts a run for, in request order. A run
    is started by the first request with its (contact, key): a refused contact stays
    refused for the whole batch, and later requests with a started key repeat it."""
    started = {(contact_id, key) for _, contact_id, key, _ in plan.runs}
    out = []
    for index, (contact_id, key, _) in enumerate(starts.requests):
        if (contact_id, key) in started:
            started.discard((contact_id, key))
            out.append(index)
    return out


def new_run_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, like ``str(uuid.uuid4())``, from one
    read of the system's random source instead of one per id."""
    raw = os.urandom(16 * count).hex()
    ids = []
    for at in range(0, 32 * count, 32):
        h = raw[at : at + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return ids
