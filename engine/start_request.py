"""What a run request asked for, kept with the run it started so that its
idempotency key, reused with another body, is refused instead of silently
answering with the old run (the usual idempotency-key contract).

The ``run.started`` event keeps one digest per field of the request: the flow,
each contact field, each key of ``context`` and of ``contact.context``. Digests,
not values: the request's data is the contact's, and an erasure removes the run's
events anyway, but nothing of it needs to be kept twice. A digest is salted with
the key, so equal values under two keys do not look alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from engine.errors import FieldError, RequestError
from engine.models import ContactUpsert, Run
from storage.base import Store

REQUEST = "request"  # the key of the digests in the run.started event's data


def request_digests(
    flow: str, contact: ContactUpsert, context: Mapping[str, Any] | None, key: str
) -> dict[str, str]:
    """A digest per field the request gives (a field it leaves out has none)."""
    fields: dict[str, Any] = {
        "flow": flow,
        "contact.id": contact.id,
        "contact.phone": contact.phone,
        "contact.email": contact.email,
        "contact.name": contact.name,
        "contact.tags": list(contact.tags) if contact.tags is not None else None,
        "contact.timezone": contact.timezone,
    }
    for name, values in (("contact.context", contact.context), ("context", context)):
        fields.update({f"{name}.{k}": v for k, v in (values or {}).items()})
    salt = hashlib.blake2b(key.encode(), digest_size=32).digest()
    return {name: _digest(salt, name, v) for name, v in fields.items() if v is not None}


def differing(stored: Mapping[str, str], asked: Mapping[str, str]) -> list[str]:
    """The fields in which two requests' digests differ, sorted."""
    return sorted(name for name in set(stored) | set(asked) if stored.get(name) != asked.get(name))


def _digest(salt: bytes, name: str, value: Any) -> str:
    """A keyed BLAKE2 of the field's name and value (every start with a key computes
    these, so the cheap path for text: tagged, "1" and 1 never digest alike)."""
    if isinstance(value, str):
        text = "s" + value
    else:
        text = "j" + json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.blake2b(f"{name}\0{text}".encode(), digest_size=12, key=salt)
    return digest.hexdigest()


async def refuse_another_request(
    store: Store,
    run: Run,
    *,
    flow: str,
    contact_id: str,
    key: str | None,
    digests: Mapping[str, str] | None,
) -> None:
    """409 ``IDEMPOTENCY_KEY_REUSED`` naming each field in which this request differs
    from the one that started ``run`` with the same ``key``; a true retry passes.
    A run started before digests were kept is compared by flow and contact."""
    differ = [
        name
        for name, same in (("flow", run.flow == flow), ("contact.id", run.contact_id == contact_id))
        if not same
    ]
    if not differ and digests is not None:
        started = await store.list_events(run_id=run.id, kind_prefix="run.started", limit=1)
        stored = started[0].data.get(REQUEST) if started else None
        if isinstance(stored, Mapping):
            differ = differing(stored, digests)
    if differ:
        raise RequestError(
            status=409,
            code="IDEMPOTENCY_KEY_REUSED",
            message=f"idempotency key {key!r} already started run {run.id} with another "
            f"request (it differs in {', '.join(differ)}); send that request unchanged to "
            "get its run, or use a new key for a new request",
            details=[
                FieldError(field=name, message=f"differs from the request that started {run.id}")
                for name in differ
            ],
        )


async def replayed_run(
    store: Store,
    *,
    flow: str,
    contact: ContactUpsert,
    context: Mapping[str, Any] | None,
    key: str,
) -> Run | None:
    """The run an earlier request with ``key`` started, when this request is a true
    retry of it (409 when it is another request); None when no run has the key. For a
    retry that arrives after the flow was taken off disk: the client asks whether its
    run exists, and it does."""
    run = await store.get_run_by_key(key)
    if run is None:
        return None
    await refuse_another_request(
        store,
        run,
        flow=flow,
        contact_id=contact.id,
        key=key,
        digests=request_digests(flow, contact, context, key),
    )
    return run
