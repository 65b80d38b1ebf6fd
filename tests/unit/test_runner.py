"""The run state machine: every step kind on entry, every event of a waiting step,
stale events, the boleto flow of FLOW_FORMAT.md walked end to end, and properties
over arbitrary event sequences."""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import runner
from engine.errors import RenderError
from engine.flow.model import Flow, Step
from engine.flow.yaml_source import parse_yaml
from engine.models import OPEN_RUN_STATUSES, RunStatus
from engine.runner import (
    MAX_STEPS_PER_TRANSITION,
    CancelTimers,
    EnterStep,
    Finish,
    PatchContext,
    RunState,
    Send,
    StartAttendance,
    StartTimer,
    StepEvent,
    Transition,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
FLOW_FORMAT = Path("/work/shared/design/FLOW_FORMAT.md")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def _merged(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        current = out.get(key)
        out[key] = (
            _merged(current, value)
            if isinstance(value, Mapping) and isinstance(current, Mapping)
            else value
        )
    return out


class FakeScope:
    """``path OP literal`` / ``path`` expressions and ``{{ path }}`` values over the
    contact context (engine.render is written in parallel; this is enough here)."""

    def __init__(self, context: Mapping[str, Any] | None = None) -> None:
        self.context = dict(context or {})
        self.seen_patches: list[dict[str, Any]] = []

    def _lookup(self, path: str, patch: Mapping[str, Any]) -> Any:
        node: Any = {"context": _merged(self.context, patch)}
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise RenderError(f"`{path}` is undefined", step="", field="when")
            node = node[part]
        return node

    def test(self, expression: str, *, step: str, context_patch: Mapping[str, Any]) -> bool:
        self.seen_patches.append(dict(context_patch))
        match = re.fullmatch(r"\s*([\w.]+)\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*", expression)
        if match:
            left = self._lookup(match[1], context_patch)
            return _OPS[match[2]](left, ast.literal_eval(match[3]))
        return bool(self._lookup(expression.strip(), context_patch))

    def value(self, value: Any, *, step: str, context_patch: Mapping[str, Any]) -> Any:
        self.seen_patches.append(dict(context_patch))
        if isinstance(value, str) and (match := re.fullmatch(r"\{\{\s*([\w.]+)\s*\}\}", value)):
            return self._lookup(match[1], context_patch)
        return value


def flow(steps: dict[str, Any], start: str = "a") -> Flow:
    return Flow.model_validate({"flow": "t", "start": start, "steps": steps})


def at(step: str, seq: int = 1, status: RunStatus = RunStatus.WAITING) -> RunState:
    return RunState(step=step, status=status, step_seq=seq, vars={})


def handle(
    f: Flow, state: RunState, name: str, *, seq: int | None = None, scope: FakeScope | None = None,
    now: datetime = NOW, **data: Any,
) -> Transition:  # fmt: skip
    event = StepEvent(name=name, step_seq=seq, data=data)
    return runner.handle(f, state, event, scope or FakeScope(), now)


SEND = {"text": "oi"}
END = {"end": "completed"}


# ------------------------------------------------------------------ entering steps


def test_start_enters_a_send_step_and_waits_for_its_events() -> None:
    t = runner.start(flow({"a": {"send": SEND}}), FakeScope(), NOW)
    assert t.actions == (EnterStep(step="a", step_seq=1), Send(step="a", step_seq=1))
    assert t.state == RunState(step="a", status=RunStatus.WAITING, step_seq=1, vars={})
    assert not t.ignored


@pytest.mark.parametrize(
    ("wait", "extra", "timer"),
    [
        ("1h", {},
         StartTimer(step="a", step_seq=1, due_at=NOW + timedelta(hours=1), reason="wait")),
        ({"for": "reply", "up_to": "24h"}, {},
         StartTimer(step="a", step_seq=1, due_at=NOW + timedelta(hours=24), reason="timeout")),
        ({"for": "reply"}, {"timeout": {"after": "30m", "goto": "z"}},
         StartTimer(step="a", step_seq=1, due_at=NOW + timedelta(minutes=30), reason="timeout")),
        ({"for": "reply", "up_to": "2h"}, {"timeout": {"after": "30m", "goto": "z"}},
         StartTimer(step="a", step_seq=1, due_at=NOW + timedelta(hours=2), reason="timeout")),
        ({"for": "reply"}, {}, None),
    ],
)  # fmt: skip
def test_entering_a_wait_starts_its_timer(
    wait: Any, extra: dict[str, Any], timer: StartTimer | None
) -> None:
    t = runner.start(flow({"a": {"wait": wait, "next": "z", **extra}, "z": END}), FakeScope(), NOW)
    assert t.actions == (EnterStep(step="a", step_seq=1), *((timer,) if timer else ()))
    assert t.state.status == RunStatus.WAITING


@pytest.mark.parametrize("status", ["completed", "cancelled", "failed"])
def test_an_end_step_finishes_with_its_status_and_stays_there(status: str) -> None:
    t = runner.start(flow({"a": {"end": status}}), FakeScope(), NOW)
    assert t.actions == (
        EnterStep(step="a", step_seq=1),
        Finish(status=RunStatus(status), reason="reached end step `a`"),
    )
    assert (t.state.step, t.state.status, t.reason) == ("a", status, "reached end step `a`")


def test_steps_that_do_not_wait_chain_in_one_transition() -> None:
    f = flow(
        {
            "a": {"set": {"context.nps.pedido": True, "context.canal": "{{ context.origem }}"},
                  "next": "b"},
            "b": {"branch": [{"when": "context.nps.pedido", "goto": "c"}, {"else": "z"}]},
            "c": {"handoff": {"attendant": "Operador", "until": "1h"}, "next": "z"},
            "z": END,
        }
    )  # fmt: skip
    t = runner.start(f, FakeScope({"origem": "app"}), NOW)
    assert t.actions == (
        EnterStep(step="a", step_seq=1),
        PatchContext(patch={"nps": {"pedido": True}, "canal": "app"}),
        EnterStep(step="b", step_seq=2),
        EnterStep(step="c", step_seq=3),
        StartAttendance(attendant="Operador", until=NOW + timedelta(hours=1)),
        EnterStep(step="z", step_seq=4),
        Finish(status=RunStatus.COMPLETED, reason="reached end step `z`"),
    )
    assert t.state == RunState(step="z", status=RunStatus.COMPLETED, step_seq=4, vars={})


def test_set_patches_are_seen_by_later_values_and_branch_tests_in_the_same_transition() -> None:
    f = flow(
        {
            "a": {"set": {"context.tentativas": 2}, "next": "b"},
            "b": {"set": {"context.copia": "{{ context.tentativas }}"}, "next": "c"},
            "c": {"branch": [{"when": "context.tentativas >= 2", "goto": "d"}], "next": "z"},
            "d": {"send": SEND},
            "z": END,
        }
    )
    scope = FakeScope({"tentativas": 0})
    t = runner.start(f, scope, NOW)
    assert PatchContext(patch={"copia": 2}) in t.actions
    assert t.state.step == "d"
    assert scope.seen_patches[-1] == {"tentativas": 2, "copia": 2}


def test_set_mapping_values_merge_and_keys_nest() -> None:
    f = flow({"a": {"set": {"context.a": {"x": 1}, "context.a.y": 2}, "next": "z"}, "z": END})
    t = runner.start(f, FakeScope(), NOW)
    assert PatchContext(patch={"a": {"x": 1, "y": 2}}) in t.actions


@pytest.mark.parametrize("key", ["nps", "run.x", "context.", "context..a", "contexto.a"])
def test_set_keys_outside_the_contact_context_fail_the_run(key: str) -> None:
    # The flow model rejects these keys; the runner does not rely on it.
    unchecked = Step.model_construct(set_={key: 1}, next="z")
    f = Flow.model_construct(
        flow="t", start="a", steps={"a": unchecked, "z": Step.model_validate(END)}
    )
    t = runner.start(f, FakeScope(), NOW)
    assert t.state.status == RunStatus.FAILED
    assert f"`set` key `{key}`" in t.reason
    assert not any(isinstance(a, PatchContext) for a in t.actions)


@pytest.mark.parametrize(
    ("valor", "with_else", "extra", "step", "status"),
    [
        (1500, True, {}, "alto", RunStatus.WAITING),  # `> 1200` is true too; first case wins
        (1000, True, {}, "baixo", RunStatus.WAITING),
        (1000, False, {"next": "baixo"}, "baixo", RunStatus.WAITING),
        (1000, False, {}, "b", RunStatus.FAILED),
    ],
)
def test_branch_takes_the_first_true_case_then_else_then_next(
    valor: int, with_else: bool, extra: dict[str, Any], step: str, status: RunStatus
) -> None:
    cases: list[dict[str, Any]] = [
        {"when": "context.valor > 5000", "goto": "z"},
        {"when": "context.valor > 1000", "goto": "alto"},
        {"when": "context.valor > 1200", "goto": "z"},
    ]
    if with_else:
        cases.append({"else": "baixo"})
    steps = {"b": {"branch": cases, **extra}, "alto": {"send": SEND}, "baixo": {"send": SEND}}
    t = runner.start(flow({**steps, "z": END}, start="b"), FakeScope({"valor": valor}), NOW)
    assert (t.state.step, t.state.status) == (step, status)
    if status == RunStatus.FAILED:
        assert t.reason == "no branch of step `b` matched and it has no `else`"


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ({"set": {"context.x": 1}}, "step `a` has no next step; the run is complete"),
        ({"handoff": {}}, "step `a` has no next step; the run is complete"),
    ],
)
def test_falling_off_the_end_completes_the_run(step: dict[str, Any], reason: str) -> None:
    t = runner.start(flow({"a": step}), FakeScope(), NOW)
    assert (t.state.status, t.reason) == (RunStatus.COMPLETED, reason)
    assert t.actions[-1] == Finish(status=RunStatus.COMPLETED, reason=reason)


def test_handoff_without_until_attends_indefinitely() -> None:
    t = runner.start(flow({"a": {"handoff": {}, "next": "z"}, "z": END}), FakeScope(), NOW)
    assert StartAttendance(attendant=None, until=None) in t.actions


def test_a_loop_without_waiting_fails_after_the_safety_cap() -> None:
    f = flow({"a": {"set": {"context.x": 1}, "next": "b"}, "b": {"branch": [{"else": "a"}]}})
    t = runner.start(f, FakeScope(), NOW)
    enters = [a for a in t.actions if isinstance(a, EnterStep)]
    assert len(enters) == MAX_STEPS_PER_TRANSITION
    assert t.state.status == RunStatus.FAILED
    assert t.reason == f"flow looped through {MAX_STEPS_PER_TRANSITION} steps without waiting"


def test_a_missing_step_fails_the_run_instead_of_raising() -> None:
    t = runner.start(flow({"a": {"set": {"context.x": 1}, "next": "nowhere"}}), FakeScope(), NOW)
    assert (t.state.status, t.reason) == (
        RunStatus.FAILED,
        "step `nowhere` does not exist in flow `t`",
    )


def test_a_render_error_fails_the_run_and_keeps_earlier_steps() -> None:
    f = flow(
        {
            "a": {"set": {"context.x": 1}, "next": "b"},
            "b": {"branch": [{"when": "context.nao_existe > 1", "goto": "z"}], "next": "z"},
            "z": END,
        }
    )
    t = runner.start(f, FakeScope(), NOW)
    assert t.state == RunState(step="b", status=RunStatus.FAILED, step_seq=2, vars={})
    assert t.reason == "when: `context.nao_existe` is undefined"
    assert t.actions[:3] == (
        EnterStep(step="a", step_seq=1),
        PatchContext(patch={"x": 1}),
        EnterStep(step="b", step_seq=2),
    )


def test_a_render_error_in_set_writes_nothing_for_that_step() -> None:
    t = runner.start(
        flow({"a": {"set": {"context.ok": 1, "context.y": "{{ context.nope }}"}, "next": "z"}}),
        FakeScope(),
        NOW,
    )
    assert t.state.status == RunStatus.FAILED
    assert not any(isinstance(a, PatchContext) for a in t.actions)


# ------------------------------------------------------------------ send step events

Moved = str  # the step entered after CancelTimers
Ended = tuple[RunStatus, str]
SEND_STEP = {
    "send": SEND,
    "on": {"button.pagar": "pay", "reply": "talk", "read": "done", "failed": "sms",
           "skipped": "done", "delivered": "done"},
    "timeout": {"after": "2h", "goto": "sms"},
}  # fmt: skip
ON_READ = {"send": SEND, "on": {"read": "done"}}
REPLY = {"for": "reply"}
OTHERS = {"pay": {"send": SEND}, "talk": {"send": SEND}, "done": END, "sms": {"send": SEND},
          "nxt": {"send": SEND}}  # fmt: skip


@pytest.mark.parametrize(
    ("step", "event", "data", "expected"),
    [
        (SEND_STEP, "button.pagar", {}, "pay"),
        (SEND_STEP, "button.outro", {}, "talk"),  # no exact entry: falls back to reply
        (SEND_STEP, "choice.linha_3", {}, "talk"),
        (SEND_STEP, "reply", {"text": "oi"}, "talk"),
        (SEND_STEP, "read", {}, "done"),
        (SEND_STEP, "delivered", {}, "done"),
        (SEND_STEP, "failed", {"error": "x"}, "sms"),
        (SEND_STEP, "skipped", {"reason": "opted_out"}, "done"),
        (SEND_STEP, "timeout", {}, "sms"),
        ({"send": SEND, "on": {"timeout": "sms"}}, "timeout", {}, "sms"),
        ({"send": SEND, "on": {"sent": "nxt"}, "timeout": {"after": "1h", "goto": "sms"}},
         "sent", {}, "nxt"),
        ({"send": SEND, "next": "nxt"}, "sent", {}, "nxt"),
        ({"send": SEND, "on": {"read": "done"}, "next": "nxt"}, "failed", {}, "nxt"),
        ({"send": SEND, "on": {"read": "done"}, "next": "nxt"}, "skipped", {}, "nxt"),
        ({"send": SEND}, "sent", {},
         (RunStatus.COMPLETED, "message sent; step `a` has no next step")),
        ({"send": SEND}, "failed", {"error": "HTTP 400: invalid number"},
         (RunStatus.FAILED, "message of step `a` failed: HTTP 400: invalid number")),
        ({"send": SEND}, "failed", {}, (RunStatus.FAILED, "message of step `a` failed")),
        ({"send": SEND}, "skipped", {},
         (RunStatus.COMPLETED, "send skipped; nothing else to do")),
        ({"send": SEND}, "skipped", {"reason": "opted_out"},
         (RunStatus.COMPLETED, "send skipped (opted_out); nothing else to do")),
    ],
)  # fmt: skip
def test_send_step_events_move_or_finish_the_run(
    step: dict[str, Any], event: str, data: dict[str, Any], expected: Moved | Ended
) -> None:
    t = handle(flow({"a": step, **OTHERS}), at("a"), event, **data)
    assert not t.ignored
    assert t.actions[0] == CancelTimers()
    if isinstance(expected, str):
        assert t.actions[1] == EnterStep(step=expected, step_seq=2)
        assert (t.state.step, t.state.step_seq) == (expected, 2)
    else:
        status, reason = expected
        assert t.actions == (CancelTimers(), Finish(status=status, reason=reason))
        assert (t.state.status, t.state.step, t.reason) == (status, "a", reason)


@pytest.mark.parametrize(
    ("step", "event", "reason"),
    [
        (ON_READ, "delivered", "step `a` has no transition for `delivered`"),
        (ON_READ, "reply", "step `a` has no transition for `reply`"),
        (ON_READ, "button.x", "step `a` has no transition for `button.x`"),
        ({"send": SEND, "on": {"read": "done"}, "next": "nxt"}, "sent",
         "step `a` has no transition for `sent`"),
        (ON_READ, "timeout", "step `a` has no timeout"),
        ({"send": SEND, "next": "nxt"}, "read", "step `a` has no transition for `read`"),
    ],
)  # fmt: skip
def test_send_step_events_without_a_transition_are_ignored(
    step: dict[str, Any], event: str, reason: str
) -> None:
    state = at("a")
    t = handle(flow({"a": step, **OTHERS}), state, event)
    assert (t.ignored, t.reason, t.actions, t.state) == (True, reason, (), state)


def test_sent_starts_the_timeout_when_the_message_leaves() -> None:
    # Deferred by quiet hours: the message leaves at 08:00, hours after the step began.
    left_at = NOW + timedelta(hours=11)
    t = handle(flow({"a": SEND_STEP, **OTHERS}), at("a", 4), "sent", seq=4, now=left_at)
    timer = StartTimer(step="a", step_seq=4, due_at=left_at + timedelta(hours=2), reason="timeout")
    assert (t.ignored, t.actions, t.state) == (False, (timer,), at("a", 4))


# ------------------------------------------------------------------ stale & late events


@pytest.mark.parametrize(
    ("event", "seq", "data", "reason"),
    [
        ("timeout", 1, {"step": "lembrete"},
         "timer of lembrete (entry 1) fired after the run left it for `a`"),
        ("timeout", 2, {}, "timer of a step (entry 2) fired after the run left it for `a`"),
        ("read", 2, {}, "`read` belongs to step entry 2; the run is at entry 3 (`a`)"),
        ("reply", 4, {}, "`reply` belongs to step entry 4; the run is at entry 3 (`a`)"),
    ],
)  # fmt: skip
def test_events_of_another_step_entry_are_ignored(
    event: str, seq: int, data: dict[str, Any], reason: str
) -> None:
    state = at("a", 3)
    t = handle(flow({"a": SEND_STEP, **OTHERS}), state, event, seq=seq, **data)
    assert (t.ignored, t.reason, t.actions, t.state) == (True, reason, (), state)


def test_an_event_without_a_step_entry_belongs_to_the_current_one() -> None:
    t = handle(flow({"a": SEND_STEP, **OTHERS}), at("a", 7), "reply")
    assert t.actions[1] == EnterStep(step="talk", step_seq=8)


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_events_after_the_run_finished_are_ignored(status: RunStatus) -> None:
    state = at("done", 2, status)
    t = handle(flow({"a": SEND_STEP, **OTHERS}), state, "reply")
    assert (t.ignored, t.state, t.actions) == (True, state, ())
    assert t.reason == f"the run is already {status}; `reply` ignored"


def test_an_event_before_the_run_entered_a_step_is_ignored() -> None:
    state = RunState(step=None, status=RunStatus.ACTIVE, step_seq=0, vars={})
    assert handle(flow({"a": SEND_STEP, **OTHERS}), state, "reply").ignored


def test_a_step_that_does_not_wait_ignores_events() -> None:
    t = handle(flow({"a": {"set": {"context.x": 1}, "next": "z"}, "z": END}), at("a"), "reply")
    assert (t.ignored, t.reason) == (True, "step `a` (set) does not wait for events")


def test_a_run_on_a_step_the_flow_no_longer_has_fails() -> None:
    t = handle(flow({"a": SEND_STEP, **OTHERS}), at("gone"), "reply")
    assert (t.state.status, t.reason) == (
        RunStatus.FAILED,
        "step `gone` does not exist in flow `t`",
    )


# ------------------------------------------------------------------ wait step events


@pytest.mark.parametrize(
    ("step", "event", "seq", "expected"),
    [
        ({"wait": "1h", "next": "nxt"}, "timeout", 1, "nxt"),
        ({"wait": "1h", "next": "nxt", "on": {"timeout": "sms"}}, "timeout", 1, "sms"),
        ({"wait": "1h", "next": "nxt", "on": {"reply": "talk"}}, "reply", 1, "talk"),
        ({"wait": "1h", "next": "nxt", "on": {"reply": "talk"}}, "button.sim", 1, "talk"),
        ({"wait": "1h"}, "timeout", 1,
         (RunStatus.COMPLETED, "the wait is over; step `a` has no next step")),
        ({"wait": {"for": "reply", "up_to": "1d"}, "next": "nxt"}, "reply", 1, "nxt"),
        ({"wait": {"for": "reply"}, "next": "nxt"}, "button.sim", 1, "nxt"),
        ({"wait": {"for": "reply"}, "next": "nxt"}, "choice.r1", 1, "nxt"),
        ({"wait": REPLY, "next": "nxt", "on": {"reply": "talk"}}, "choice.r1", 1, "talk"),
        ({"wait": REPLY, "next": "nxt", "on": {"button.sim": "pay"}}, "button.sim", 1, "pay"),
        ({"wait": {"for": "reply", "up_to": "1d"}, "next": "nxt", "on": {"timeout": "sms"}},
         "timeout", 1, "sms"),
        ({"wait": {"for": "reply"}, "timeout": {"after": "1h", "goto": "sms"}, "next": "nxt"},
         "timeout", 1, "sms"),
        ({"wait": {"for": "reply", "up_to": "1d"}, "next": "nxt"}, "timeout", 1, "nxt"),
        ({"wait": REPLY}, "reply", 1,
         (RunStatus.COMPLETED, "`reply` arrived; step `a` has no next step")),
        # read/delivered of the message sent before the wait (an earlier entry) count.
        ({"wait": {"for": "read"}, "next": "nxt"}, "read", 0, "nxt"),
        ({"wait": {"for": "delivered"}, "next": "nxt"}, "delivered", 0, "nxt"),
        ({"wait": {"for": "delivered"}, "next": "nxt"}, "read", 0, "nxt"),
        ({"wait": {"for": "event"}, "next": "nxt"}, "delivered", 1, "nxt"),
    ],
)  # fmt: skip
def test_wait_step_events(
    step: dict[str, Any], event: str, seq: int, expected: Moved | Ended
) -> None:
    t = handle(flow({"a": step, **OTHERS}), at("a", 1), event, seq=seq)
    assert not t.ignored
    assert t.actions[0] == CancelTimers()
    if isinstance(expected, str):
        assert t.actions[1] == EnterStep(step=expected, step_seq=2)
    else:
        assert (t.state.status, t.reason) == expected


@pytest.mark.parametrize(
    ("step", "event", "seq"),
    [
        ({"wait": "1h", "next": "nxt"}, "reply", 1),
        ({"wait": {"for": "reply"}, "next": "nxt"}, "read", 1),
        ({"wait": {"for": "read"}, "next": "nxt"}, "delivered", 0),
        ({"wait": {"for": "read"}, "next": "nxt"}, "reply", 0),  # earlier entries: status only
        ({"wait": {"for": "reply"}, "next": "nxt"}, "reply", 0),
        ({"wait": {"for": "event"}, "next": "nxt"}, "reply", 0),
    ],
)  # fmt: skip
def test_wait_step_ignores_what_it_does_not_wait_for(
    step: dict[str, Any], event: str, seq: int
) -> None:
    assert handle(flow({"a": step, **OTHERS}), at("a", 1), event, seq=seq).ignored


def test_a_reply_then_a_wait_drops_the_old_timers_before_starting_new_ones() -> None:
    f = flow(
        {"a": {"send": SEND, "on": {"reply": "w"}}, "w": {"wait": "1h", "next": "z"}, "z": END}
    )
    t = handle(f, at("a", 1), "reply")
    assert t.actions == (
        CancelTimers(),
        EnterStep(step="w", step_seq=2),
        StartTimer(step="w", step_seq=2, due_at=NOW + timedelta(hours=1), reason="wait"),
    )


# ------------------------------------------------------------------ cancel


def test_cancel_finishes_an_open_run_and_drops_its_timers() -> None:
    t = runner.cancel(at("a", 3), "cancelled through the API")
    assert t.actions == (
        CancelTimers(),
        Finish(status=RunStatus.CANCELLED, reason="cancelled through the API"),
    )
    assert t.state == at("a", 3, RunStatus.CANCELLED)
    assert t.reason == "cancelled through the API"


def test_cancelling_a_finished_run_is_ignored() -> None:
    state = at("done", 3, RunStatus.COMPLETED)
    t = runner.cancel(state, "too late")
    assert (t.ignored, t.state, t.actions) == (True, state, ())


# ------------------------------------------------------------------ the boleto flow


@pytest.fixture(scope="module")
def boleto() -> Flow:
    text = FLOW_FORMAT.read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert match, "FLOW_FORMAT.md has no yaml example"
    # The engine's reader: YAML 1.2 scalars, so the key `on:` stays text.
    return Flow.model_validate(parse_yaml(match[1], "FLOW_FORMAT.md").data)


def test_boleto_unread_reminder_falls_back_to_sms_then_completes(boleto: Flow) -> None:
    scope = FakeScope({"valor": 350})
    t = runner.start(boleto, scope, NOW)
    assert t.actions == (EnterStep(step="lembrete", step_seq=1), Send(step="lembrete", step_seq=1))

    t = runner.handle(boleto, t.state, StepEvent(name="sent", step_seq=1), scope, NOW)
    assert t.actions == (
        StartTimer(step="lembrete", step_seq=1, due_at=NOW + timedelta(hours=2), reason="timeout"),
    )
    t = runner.handle(boleto, t.state, StepEvent(name="delivered", step_seq=1), scope, NOW)
    assert t.ignored

    later = NOW + timedelta(hours=2)
    timer = StepEvent(name="timeout", step_seq=1, data={"step": "lembrete", "reason": "timeout"})
    t = runner.handle(boleto, t.state, timer, scope, later)
    assert t.actions == (
        CancelTimers(),
        EnterStep(step="sms", step_seq=2),
        Send(step="sms", step_seq=2),
    )

    # A duplicate of the old timer, or the late `read` of the WhatsApp message: ignored.
    assert runner.handle(boleto, t.state, timer, scope, later).ignored
    assert runner.handle(boleto, t.state, StepEvent(name="read", step_seq=1), scope, later).ignored

    t = runner.handle(boleto, t.state, StepEvent(name="sent", step_seq=2), scope, later)
    assert t.actions == (
        CancelTimers(),
        EnterStep(step="fim", step_seq=3),
        Finish(status=RunStatus.COMPLETED, reason="reached end step `fim`"),
    )
    assert t.state == RunState(step="fim", status=RunStatus.COMPLETED, step_seq=3, vars={})


@pytest.mark.parametrize(
    ("valor", "path"),
    [
        (1500, ["pagamento", "atendimento", "fim"]),
        (1000, ["pagamento", "fim"]),
    ],
)
def test_boleto_pay_button_branches_on_the_amount(
    boleto: Flow, valor: int, path: list[str]
) -> None:
    scope = FakeScope({"valor": valor})
    state = runner.start(boleto, scope, NOW).state
    t = runner.handle(boleto, state, StepEvent(name="button.pagar"), scope, NOW)
    entered = [a.step for a in t.actions if isinstance(a, EnterStep)]
    assert entered == path
    assert t.actions[0] == CancelTimers()
    assert (StartAttendance(attendant="Operador", until=None) in t.actions) == (
        "atendimento" in path
    )
    assert (t.state.step, t.state.status) == ("fim", RunStatus.COMPLETED)


@pytest.mark.parametrize(
    ("event", "first_step"),
    [
        ("button.ajuda", "atendimento"),
        ("button.desconhecido", "atendimento"),  # falls back to `reply`
        ("reply", "atendimento"),
        ("read", "fim"),
        ("failed", "sms"),
        ("skipped", "fim"),
    ],
)
def test_boleto_reminder_reacts_to_each_event(boleto: Flow, event: str, first_step: str) -> None:
    scope = FakeScope({"valor": 10})
    state = runner.start(boleto, scope, NOW).state
    t = runner.handle(boleto, state, StepEvent(name=event, step_seq=1), scope, NOW)
    assert t.actions[1] == EnterStep(step=first_step, step_seq=2)


# ------------------------------------------------------------------ properties

EVENT_NAMES = ["sent", "delivered", "read", "failed", "reply", "button.pagar", "button.ajuda",
               "button.x", "choice.y", "skipped", "timeout"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    valor=st.integers(0, 3000),
    events=st.lists(
        st.tuples(st.sampled_from(EVENT_NAMES), st.one_of(st.none(), st.integers(0, 5))),
        max_size=12,
    ),
)
def test_any_event_sequence_moves_forward_and_never_raises(
    boleto: Flow, valor: int, events: list[tuple[str, int | None]]
) -> None:
    scope = FakeScope({"valor": valor})
    t = runner.start(boleto, scope, NOW)
    for name, seq in events:
        before = t.state
        t = runner.handle(boleto, before, StepEvent(name=name, step_seq=seq), scope, NOW)
        assert t.state.step_seq >= before.step_seq
        if t.ignored:
            assert (t.state, t.actions) == (before, ())
            assert t.reason
        if before.status not in OPEN_RUN_STATUSES:
            assert t.ignored
        entered = [a.step_seq for a in t.actions if isinstance(a, EnterStep)]
        assert entered == list(range(before.step_seq + 1, t.state.step_seq + 1))
        if entered:
            assert t.actions[0] == CancelTimers()
        finished = [a for a in t.actions if isinstance(a, Finish)]
        assert len(finished) == int(not t.ignored and t.state.status not in OPEN_RUN_STATUSES)
