"""The run events a provider status or a contact event means, for ``runner.handle``.

A status report can skip steps (``read`` may arrive before ``delivered``): the run
sees every status it implies, in order. A contact event becomes ``reply``,
``button.<id>`` or ``choice.<id>``; an opt-out cancels the run, and a reply that is
an opt-out keyword means nothing else. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine import runner
from engine.models import STATUS_RANK, MessageStatus
from engine.opt_out import DEFAULT_OPT_OUT_KEYWORDS, is_opt_out


def status_chain(current: MessageStatus, new: MessageStatus) -> list[str]:
    """Run events a status jump implies, in order: sending -> read is sent, delivered, read."""
    if new == MessageStatus.FAILED:
        return ["failed"]
    if new not in STATUS_RANK:
        return []
    low = STATUS_RANK.get(current, 0)
    return [
        str(s)
        for s in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)
        if low < STATUS_RANK[s] <= STATUS_RANK[new]
    ]


def status_step_events(
    message_id: str, step_seq: int, current: MessageStatus, new: MessageStatus
) -> list[runner.StepEvent]:
    """The run events of a report moving a message of step entry ``step_seq``."""
    return [
        runner.StepEvent(name=name, step_seq=step_seq, data={"message_id": message_id})
        for name in status_chain(current, new)
    ]


def inbound_step_events(
    payload: Any, opt_out_keywords: Sequence[str] = DEFAULT_OPT_OUT_KEYWORDS
) -> list[runner.StepEvent]:
    """The run event a contact event means: reply, button.<id>, choice.<id> (or none)."""
    kind = str(payload.get("type", ""))
    data = {k: v for k, v in payload.items() if v is not None}
    if kind == "reply":
        text = payload.get("text")
        if isinstance(text, str) and is_opt_out(text, opt_out_keywords):
            # "SAIR" is no answer to route: the opt-out stored with it cancels the run.
            return []
        return [runner.StepEvent(name="reply", data=data)]
    if kind in ("button", "choice") and payload.get("button_id"):
        return [runner.StepEvent(name=f"{kind}.{payload['button_id']}", data=data)]
    if kind == "opt_out":
        return [runner.StepEvent(name=runner.OPTED_OUT, data=data)]
    return []
