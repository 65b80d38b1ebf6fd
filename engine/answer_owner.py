"""Which run a tapped button or list row answers, when a contact has several runs.

A tap names only the id of what was tapped. Two runs of one contact may wait at
once (two flows, or a flow with ``concurrency: many``), and a step with no entry for
the tapped ``button.<id>`` takes it as a reply (``on.reply``): a "Sim" tapped on a
survey would hand the contact to an attendant in the boleto run waiting beside it.

So a tap answers the run whose message offered that id, the most recent such
message when several did; the contact's other runs ignore it, saying which run it
answers. Vendors may name a tap by the title the contact saw (``engine.typed_choice``):
a message offered it too when one of its buttons or rows has that title. A template
sent in place of a step's buttons offers that step's buttons (its quick replies).
A tap no message offered reaches every open run, as a typed reply does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from engine.models import HANDED_OVER_STATUSES, Message, MessageStatus
from engine.opt_out import normalise
from engine.runner import StepEvent
from storage.base import Store

Option = tuple[str, dict[str, Any]]  # ("button" | "choice", {"id", "title", ...})
# The buttons or list rows of the step that sent a template message, from its flow.
StepOptions = Callable[[Message], Awaitable[list[Option]]]

_TAPS = ("button.", "choice.")
# The contact's newest runs looked at: older ones are long over.
RUNS_LOOKED_AT = 50


def offered_ids(payload: Mapping[str, Any]) -> set[str]:
    """The button and list row ids a rendered message showed."""
    return {str(option.get("id")) for _, option in payload_options(payload)}


def shown(message: Message) -> bool:
    """Whether the contact may have seen ``message`` (it was handed to a provider; one
    that failed before that, or was skipped, showed nothing to tap)."""
    return message.status in HANDED_OVER_STATUSES or (
        message.status == MessageStatus.FAILED and MessageStatus.SENT in message.status_at
    )


def payload_options(payload: Mapping[str, Any]) -> list[Option]:
    """The buttons and list rows a rendered message showed, each with its kind."""
    options: list[Option] = [
        ("button", b) for b in payload.get("buttons") or () if isinstance(b, dict)
    ]
    options += [
        ("choice", row)
        for section in payload.get("sections") or ()
        for row in (section.get("rows") or () if isinstance(section, dict) else ())
        if isinstance(row, dict)
    ]
    return options


async def _offered(
    message: Message, tapped: str, titles: set[str], step_options: StepOptions | None
) -> bool:
    if not shown(message):
        return False
    if message.payload.get("type") == "template" and step_options is not None:
        options = await step_options(message)
    else:
        options = payload_options(message.payload)
    return any(
        str(option.get("id")) == tapped or normalise(str(option.get("title", ""))) in titles
        for _, option in options
    )


async def answered_elsewhere(
    store: Store,
    run_id: str,
    contact_id: str,
    events: Sequence[StepEvent],
    step_options: StepOptions | None = None,
) -> str | None:
    """Why ``events`` (a tap) answer another run of the contact than ``run_id``, or None."""
    if len(events) != 1 or not events[0].name.startswith(_TAPS):
        return None
    tapped = events[0].name.split(".", 1)[1]
    # What the vendor said: the id or title tapped, and the title as text.
    said = (events[0].data.get("button_id"), events[0].data.get("text"), tapped)
    titles = {normalise(words) for words in said if isinstance(words, str)} - {""}
    # One read for the newest runs' messages, not one per run.
    messages = await store.list_contact_messages(contact_id, runs=RUNS_LOOKED_AT)
    offers = [
        message for message in messages if await _offered(message, tapped, titles, step_options)
    ]
    if not offers:
        return None
    latest = max(message.created_at for message in offers)
    newest = [message for message in offers if message.created_at == latest]
    if any(message.run_id == run_id for message in newest):
        return None  # this run's message, or one sent with it: it answers this run
    owner = newest[0]
    return (
        f"`{events[0].name}` answers a message of run {owner.run_id} ({owner.flow}, step "
        f"`{owner.step}`), not one of this run"
    )
