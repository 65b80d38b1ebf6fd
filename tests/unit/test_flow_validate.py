"""Checks across steps: references, reachability, loops, events, windows, providers."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from engine.errors import FlowError, Problem
from engine.flow.loader import load_flow_text
from engine.flow.model import Flow
from engine.flow.validate import Locator, validate_flow
from engine.flow.yaml_source import parse_yaml

HEAD = "flow: x\ndefaults: {provider: sandbox}\nstart: a\nsteps:\n"  # steps start on line 5


def problems(steps: str, head: str = HEAD, **kwargs: object) -> list[str]:
    with pytest.raises(FlowError) as caught:
        load_flow_text(head + steps, "x.yaml", **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def loads(steps: str, head: str = HEAD) -> Flow:
    return load_flow_text(head + steps, "x.yaml").flow


def test_references_to_missing_steps_suggest_the_closest_step() -> None:
    steps = """\
  a:
    send: {text: oi, buttons: [{id: sim, title: Sim}]}
    on: {button.sim: fimm, reply: nada}
    timeout: {after: 1h, goto: fin}
    next: fim
  b:
    branch:
      - when: "context.x"
        goto: aa
      - else: a
  fim: {end: completed}
"""
    assert problems(steps, head=HEAD.replace("start: a", "start: b")) == [
        "x.yaml:7:22: `on: button.sim` in step `a` goes to `fimm`, which is not a step; "
        "did you mean `fim`?",
        "x.yaml:7:35: `on: reply` in step `a` goes to `nada`, which is not a step; "
        "steps: a, b, fim",
        "x.yaml:8:32: `timeout` in step `a` goes to `fin`, which is not a step; "
        "did you mean `fim`?",
        "x.yaml:13:15: case 1 of step `b` goes to `aa`, which is not a step; did you mean `a`?",
    ]


def test_a_misspelled_start_is_reported_at_its_value() -> None:
    assert problems("  lembrete: {end: completed}\n", head=HEAD.replace("a\n", "lembrte\n", 1)) == [
        "x.yaml:3:8: `start` goes to `lembrte`, which is not a step; did you mean `lembrete`?"
    ]


def test_unreachable_steps_are_errors_at_their_key() -> None:
    steps = "  a: {end: completed}\n  esquecido:\n    send: {text: oi}\n    next: a\n"
    assert problems(steps) == [
        "x.yaml:6:3: step `esquecido` is never reached: no path from `start` (`a`) leads to "
        "it; link it with next, goto or on, or remove it"
    ]


def test_a_loop_without_send_or_wait_would_spin_forever() -> None:
    steps = """\
  a:
    branch:
      - when: "context.tentativas < 3"
        goto: b
      - else: fim
  b:
    set: {context.tentativas: "{{ context.tentativas + 1 }}"}
    next: a
  fim: {end: completed}
"""
    assert problems(steps) == [
        "x.yaml:5:3: steps `a`, `b` loop without a `send` or `wait` step, so a run would "
        "spin forever; add a `wait:` step to the loop"
    ]
    with_wait = (
        steps.replace("    next: a\n", "    next: pausa\n") + "  pausa: {wait: 1h, next: a}\n"
    )
    assert loads(with_wait).start == "a"


def test_a_step_going_back_to_itself_without_waiting_is_a_loop() -> None:
    assert problems("  a:\n    set: {context.x: 1}\n    next: a\n") == [
        "x.yaml:5:3: step `a` leads back to itself without a `send` or `wait` step, so a run "
        "would spin forever; add a `wait:` step to the loop"
    ]


def test_a_flow_needs_no_end_step_and_a_branch_needs_no_else() -> None:
    flow = loads(
        "  a:\n    branch:\n      - when: context.vip\n        goto: b\n"
        "  b:\n    send: {text: Olá!}\n"
    )
    assert [step.kind for step in flow.steps.values()] == ["branch", "send"]


def test_an_else_that_is_not_last_hides_the_cases_after_it() -> None:
    steps = """\
  a:
    branch:
      - else: fim
      - when: context.vip
        goto: fim
  fim: {end: completed}
"""
    assert problems(steps) == [
        "x.yaml:8:9: case 2 of step `a` is never tried: it comes after `else`, which always "
        "matches; move `else` to the end"
    ]


def test_free_form_whatsapp_with_window_template_needs_a_template() -> None:
    head = HEAD.replace("{provider: sandbox}", "{provider: sandbox, rules: {window: template}}")
    steps = "  a:\n    send: {text: oi}\n    next: b\n  b:\n    send: {text: sms, channel: sms}\n"
    assert problems(steps, head=head) == [
        "x.yaml:6:5: step `a` sends free-form content with `window: template` but has no "
        "`template:` to send when the 24 h window is closed"
    ]
    with_template = steps.replace("{text: oi}", "{text: oi, template: {name: boleto}}")
    assert loads(with_template, head=head).steps["a"].send is not None
    step_says_skip = steps.replace("    next: b\n", "    rules: {window: skip}\n    next: b\n")
    assert loads(step_says_skip, head=head).rules_for("a").window == "skip"


def test_button_and_choice_events_must_match_the_content_sent() -> None:
    steps = """\
  a:
    send:
      text: Pagar?
      buttons: [{id: pagar, title: Pagar}, {id: ajuda, title: Ajuda}]
    on: {button.pagr: fim, choice.x: fim, button.pagar: fim}
  fim: {end: completed}
"""
    assert problems(steps) == [
        "x.yaml:9:10: `on: button.pagr` in step `a` never happens: its buttons are `pagar`, "
        "`ajuda`; did you mean `pagar`?",
        "x.yaml:9:28: `on: choice.x` in step `a` never happens: the step sends no list",
    ]


def test_list_rows_are_checked_and_template_only_sends_take_any_button() -> None:
    steps = """\
  a:
    send:
      text: Nota?
      list:
        button: Escolher
        sections: [{rows: [{id: dez, title: "10"}, {id: nove, title: "9"}]}]
    on: {choice.des: fim, choice.dez: b}
  b:
    send: {template: {name: convite}}
    on: {button.responder: fim}
  fim: {end: completed}
"""
    assert problems(steps) == [
        "x.yaml:11:10: `on: choice.des` in step `a` never happens: its list rows are `dez`, "
        "`nove`; did you mean `dez`?"
    ]


def test_wait_steps_only_get_the_events_they_can_receive() -> None:
    steps = """\
  a:
    wait: 1h
    on: {read: fim, reply: fim}
    next: b
  b:
    wait: {for: read}
    on: {read: fim, timeout: fim}
  fim: {end: completed}
"""
    assert problems(steps) == [
        "x.yaml:7:10: `on: read` in step `a` never happens: a `wait` step gets reply, "
        "button.<id>, choice.<id>, timeout",
        "x.yaml:11:21: `on: timeout` in step `b` never happens: the wait has no `up_to:`, "
        "so it never times out",
    ]


def test_on_timeout_of_a_send_needs_a_timeout() -> None:
    steps = "  a:\n    send: {text: oi}\n    on: {timeout: fim}\n  fim: {end: completed}\n"
    assert problems(steps) == [
        "x.yaml:7:10: `on: timeout` in step `a` never happens: the step has no "
        "`timeout: {after: ..., goto: ...}`"
    ]


def test_events_and_next_on_steps_that_never_use_them() -> None:
    steps = """\
  a:
    set: {context.x: 1}
    on: {reply: fim}
    timeout: {after: 1h, goto: fim}
    next: fim
  fim:
    end: completed
    next: a
"""
    assert problems(steps) == [
        "x.yaml:7:5: `on:` in step `a` is never used: a `set` step moves on at once and gets "
        "no events",
        "x.yaml:8:5: `timeout:` in step `a` is never used: a `set` step moves on at once and "
        "gets no events",
        "x.yaml:12:5: `next:` in step `fim` is never used: an `end` step finishes the run",
    ]


def test_rules_on_a_step_that_sends_nothing_are_never_used() -> None:
    # Rules decide a step's send; on a wait or branch they silently did nothing
    # (`valid_for: 2h` on a wait did not end the wait).
    steps = """\
  a:
    wait: {for: reply, up_to: 1d}
    rules: {valid_for: 2h}
    on: {reply: b}
  b:
    send: {text: oi}
    rules: {valid_for: 2h}
    next: fim
  fim: {end: completed}
"""
    assert problems(steps) == [
        "x.yaml:7:5: `rules:` in step `a` is never used: rules decide when a step's message "
        "goes out, and a `wait` step sends none; put them on a `send` step "
        "(or in `defaults.rules`)",
    ]


def test_a_button_event_of_an_empty_button_list_says_the_step_sends_none() -> None:
    # It read "never happens: its buttons are " with nothing after it.
    steps = """\
  a:
    send: {text: oi, buttons: []}
    on: {button.sim: fim}
  fim: {end: completed}
"""
    assert "x.yaml:7:10: `on: button.sim` in step `a` never happens: the step sends no buttons" in (
        problems(steps)
    )


def test_sends_need_a_provider_and_it_must_be_configured() -> None:
    head = "flow: x\nstart: a\nsteps:\n"
    steps = (
        "  a:\n    send: {text: oi}\n    next: b\n  b:\n    send: {text: oi, provider: sandbx}\n"
    )
    assert problems(steps, head=head) == [
        "x.yaml:5:5: step `a` has no provider; set `provider:` in its `send:` or in `defaults:`"
    ]
    configured = {"sandbox": object(), "sandbox_sms": object()}
    assert problems(steps, head=head, providers=configured) == [
        "x.yaml:5:5: step `a` has no provider; set `provider:` in its `send:` or in `defaults:`",
        "x.yaml:8:32: provider `sandbx` is not configured; did you mean `sandbox`?; "
        "configured: sandbox, sandbox_sms",
    ]


def test_an_unconfigured_default_provider_is_reported_once_at_defaults() -> None:
    steps = "  a:\n    send: {text: oi}\n    next: b\n  b:\n    send: {text: tchau}\n"
    assert problems(steps, providers={"gateway": object()}) == [
        "x.yaml:2:22: provider `sandbox` is not configured; configured: gateway"
    ]


def test_time_zones_and_cron_expressions_are_checked() -> None:
    head = (
        "flow: x\ntimezone: America/Sao_Pablo\ntriggers:\n  - cron: '0 9 * *'\nstart: a\nsteps:\n"
    )
    assert problems("  a: {end: completed}\n", head=head) == [
        "x.yaml:2:11: `America/Sao_Pablo` is not a time zone; did you mean `America/Sao_Paulo`?",
        "x.yaml:4:11: `cron` of trigger 1 has 4 fields; write five (minute hour day month "
        'weekday), like "0 9 * * 1-5"',
    ]


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "right/America/Sao_Paulo"])
def test_a_zone_only_this_host_has_is_refused(zone: str) -> None:
    """The host's own zone files load with ZoneInfo, and mean another zone (or
    nothing) where the engine runs: only IANA's names are accepted."""
    head = f"flow: x\ntimezone: {zone}\nstart: a\nsteps:\n"
    [problem] = problems("  a: {end: completed}\n", head=head)
    assert problem.startswith(f"x.yaml:2:11: `{zone}` is not a time zone")


def test_an_iana_link_name_is_accepted() -> None:
    head = "flow: x\ntimezone: Brazil/East\nstart: a\nsteps:\n"
    assert loads("  a: {end: completed}\n", head=head).timezone == "Brazil/East"


def test_a_flow_reads_one_time_zone_for_cron_and_rules() -> None:
    head = (
        "flow: x\ntimezone: Europe/Lisbon\n"
        "defaults: {provider: sandbox, rules: {timezone: America/Sao_Paulo}}\nstart: a\nsteps:\n"
    )
    assert problems("  a: {end: completed}\n", head=head) == [
        "x.yaml:3:49: `defaults.rules.timezone` (America/Sao_Paulo) differs from the flow's "
        "`timezone` (Europe/Lisbon); cron triggers and the rules must read one zone: keep one "
        "of the two (contacts with a `timezone` of their own keep theirs)"
    ]
    same = head.replace("Europe/Lisbon", "America/Sao_Paulo")
    assert loads("  a: {end: completed}\n", head=same).timezone == "America/Sao_Paulo"


def test_a_time_zone_per_step_is_refused_where_it_is_written() -> None:
    steps = """\
  a:
    send: {text: oi}
    rules: {quiet_hours: "21:00-08:00", timezone: Europe/Lisbon}
    next: fim
  fim: {end: completed}
"""
    assert problems(steps) == [
        "x.yaml:7:41: `timezone` is set for the whole flow, not per step (step `a`); move it "
        "to `defaults.rules` or the flow's `timezone`"
    ]


def test_extra_checks_add_positioned_problems() -> None:
    text = HEAD + "  a:\n    send: {text: oi, buttons: [{id: s, title: Sim}]}\n"
    seen: list[str] = []

    def no_buttons(flow: Flow, at: Locator) -> Iterable[Problem]:
        seen.append(flow.flow)
        for sid, step in flow.steps.items():
            if step.send is not None and step.send.buttons:
                yield at.problem(("steps", sid, "send", "buttons"), "sandbox has no buttons")

    with pytest.raises(FlowError) as caught:
        load_flow_text(text, "x.yaml", extra_checks=[no_buttons])
    assert [str(p) for p in caught.value.problems] == ["x.yaml:6:31: sandbox has no buttons"]
    assert seen == ["x"]


def test_validate_flow_without_positions_still_names_the_problem() -> None:
    document = parse_yaml(HEAD + "  a: {wait: 1h, next: b}\n", "x.yaml")
    flow = Flow.model_validate(document.data)
    found = validate_flow(flow, None, "x.yaml")
    assert [str(p) for p in found] == [
        "x.yaml: `next` in step `a` goes to `b`, which is not a step; steps: a"
    ]
    assert found[0].path == "steps.a.next"
    positioned = validate_flow(flow, document.source_map, "x.yaml")
    assert [(p.line, p.column) for p in positioned] == [(5, 23)]


@pytest.mark.parametrize(
    ("written", "column", "why"),
    [
        ('"20:00-8:60"', 26, "'8:60' is not a time of day; write it like 08:00, 20:30 or 24:00"),
        ('"25:00-08:00"', 26, "'25:00' is not a time of day; write it like 08:00"),
        ('"24:00-06:00"', 26, "'24:00-06:00' cannot start at 24:00; use 00:00"),
        (
            '{range: "22:00-07:70", days: [mon]}',
            34,
            "'07:70' is not a time of day; write it like 08:00",
        ),
    ],
)
def test_an_impossible_quiet_hours_range_is_refused_at_its_value(
    written: str, column: int, why: str
) -> None:
    # The send-time rule could never apply it: the dispatcher would retry it forever.
    found = problems(f"  a:\n    send: {{text: oi}}\n    rules: {{quiet_hours: {written}}}\n")
    assert len(found) == 1
    assert found[0].startswith(f"x.yaml:7:{column}: ")
    assert why in found[0]


def test_a_valid_for_of_zero_is_refused_where_it_is_written() -> None:
    head = "flow: x\ndefaults: {provider: sandbox, rules: {valid_for: 0s}}\nstart: a\nsteps:\n"
    steps = "  a:\n    send: {text: oi}\n    rules: {valid_for: 0}\n"
    assert problems(steps, head=head) == [
        "x.yaml:2:50: `valid_for: 0s` would fail every message before it is sent; write how "
        "long a message stays worth sending, like 2h, or remove it",
        "x.yaml:7:24: `valid_for: 0` would fail every message before it is sent; write how "
        "long a message stays worth sending, like 2h, or remove it",
    ]
    flow = loads(steps.replace("valid_for: 0", "valid_for: 90m"))
    assert flow.rules_for("a").valid_for == "90m"


def test_a_window_margin_of_a_day_or_more_is_refused_where_it_is_written() -> None:
    # The window lasts 24 h: a margin that long treats every WhatsApp send as outside
    # it, and the flow silently sends only templates (or skips).
    head = (
        "flow: x\ndefaults: {provider: sandbox, rules: {window: skip, window_margin: 1d}}\n"
        "start: a\nsteps:\n"
    )
    steps = "  a:\n    send: {text: oi}\n    rules: {window_margin: 30h}\n"
    assert problems(steps, head=head) == [
        "x.yaml:2:68: `window_margin: 1d` closes the 24 h window before it opens: every "
        "WhatsApp send would be taken as outside it; write less than 24h, like 1h",
        "x.yaml:7:28: `window_margin: 30h` closes the 24 h window before it opens: every "
        "WhatsApp send would be taken as outside it; write less than 24h, like 1h",
    ]
    flow = loads(steps.replace("window_margin: 30h", "window_margin: 23h"))
    assert flow.rules_for("a").window_margin == "23h"


def test_quiet_hours_that_name_an_empty_list_of_days_are_refused() -> None:
    # `days: []` read as "every day" (as if left out): a designer who emptied the list
    # to switch quiet hours off got them every night instead.
    steps = (
        '  a:\n    send: {text: oi}\n    rules: {quiet_hours: {range: "20:00-08:00", days: []}}\n'
    )
    assert problems(steps) == [
        "x.yaml:7:55: `days: []` of `quiet_hours` names no day; name the days, leave "
        "`days` out for every day, or write `quiet_hours: null` for none",
    ]


def test_a_step_rule_left_blank_is_a_problem_not_a_rule_turned_off() -> None:
    # `null` turns a default off for the step; a key left without its value (an edit
    # not finished) must not switch quiet hours off in silence.
    head = 'flow: x\ndefaults: {provider: sandbox, rules: {quiet_hours: "20:00-08:00"}}\n'
    head += "start: a\nsteps:\n"
    steps = "  a:\n    send: {text: oi}\n    rules:\n      quiet_hours:\n      max_per_day: ~\n"
    assert problems(steps, head=head) == [
        "x.yaml:8:19: `quiet_hours` in step `a` has no value; write `null` to turn the "
        "default off for this step, or give it a value",
    ]
    flow = loads(steps.replace("quiet_hours:\n", "quiet_hours: null\n"), head=head)
    assert flow.rules_for("a").quiet_hours is None


def test_a_wait_timed_twice_names_the_time_that_is_never_used() -> None:
    # up_to: 1h ends the wait; the designer read `after: 2h` as the limit.
    steps = (
        "  a:\n"
        "    wait: {for: reply, up_to: 1h}\n"
        "    timeout: {after: 2h, goto: b}\n"
        "    on: {reply: b}\n"
        "  b: {end: completed}\n"
    )
    assert problems(steps) == [
        "x.yaml:7:22: `timeout.after` (2h) in step `a` is never used: the wait ends after "
        "`up_to: 1h`; give the time once, in `up_to`, and keep `timeout.goto` (or `on: "
        "timeout`) for where it goes"
    ]
    # The time given once, in `timeout`, is the wait's limit: no problem.
    assert loads(steps.replace(", up_to: 1h", "")).steps["a"].timeout is not None


def test_a_wait_given_the_same_time_twice_loads() -> None:
    # Redundant, not wrong: flows written so before this check still load.
    steps = (
        "  a:\n"
        "    wait: {for: reply, up_to: 1h}\n"
        "    timeout: {after: 60m, goto: b}\n"
        "  b: {end: completed}\n"
    )
    assert loads(steps).steps["a"].timeout is not None
