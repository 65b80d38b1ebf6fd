"""A ``wait: {for: read}`` (or ``delivered``) entered after its message was already
read (or delivered) moves on at once.

Such a wait is about the message sent before it, and that message's report may
come before the run reaches the wait: read during a ``wait: 10m`` pause placed
between the send and the wait, where a plain wait ignores it. The wait would then
hang on a report that already came, time out and send the "not read" SMS to a
contact who read. So when a transition parks a run in such a wait, the status the
run's latest earlier message already has is fed to the run as that report.
"""

from __future__ import annotations

from engine import runner
from engine.flow.model import Flow, WaitFor
from engine.models import STATUS_RANK, MessageStatus, RunStatus
from storage.base import Store

_REPORTS = (MessageStatus.DELIVERED, MessageStatus.READ)
# Reports fed to one commit at most: a wait whose `on: read` leads back to a wait for
# the same read would take it for ever; past this the run waits at that step.
MAX_REPORTS_FED = 10


def _entered_wait(flow: Flow, transition: runner.Transition) -> runner.EnterStep | None:
    """The ``wait: {for: read|delivered}`` step ``transition`` parked the run in."""
    if transition.state.status != RunStatus.WAITING:
        return None
    entered = [a for a in transition.actions if isinstance(a, runner.EnterStep)]
    if not entered:
        return None
    step = flow.steps.get(entered[-1].step)
    wait = step.wait if step is not None else None
    if not isinstance(wait, WaitFor) or wait.for_ not in ("read", "delivered"):
        return None
    return entered[-1]


async def already_reported(
    store: Store, flow: Flow, run_id: str, transition: runner.Transition
) -> list[runner.StepEvent]:
    """The report the run's wait awaits, when its message already has it (else none)."""
    entered = _entered_wait(flow, transition)
    if entered is None:
        return []
    message = await store.latest_message_before(run_id, entered.step_seq)
    if message is None:
        return []
    reached = [s for s in _REPORTS if STATUS_RANK.get(message.status, 0) >= STATUS_RANK[s]]
    if message.status == MessageStatus.FAILED or not reached:
        return []
    return [
        runner.StepEvent(
            name=str(reached[-1]), step_seq=message.step_seq, data={"message_id": message.id}
        )
    ]
