"""Loading flow files: what a bot designer sees when a file is wrong."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from engine.errors import FlowError
from engine.flow.loader import LoadedFlow, flow_version, load_flow, load_flow_text, load_flows

GOOD = """\
flow: lembrete_simples
defaults: {provider: sandbox}
start: lembrete
steps:
  lembrete:
    send:
      text: Oi {{ contact.first_name }}!
      buttons:
        - {id: pagar, title: Pagar agora}
    on:
      button.pagar: fim
  fim:
    end: completed
"""


def problems(text: str, filename: str = "x.yaml") -> list[str]:
    with pytest.raises(FlowError) as caught:
        load_flow_text(text, filename)
    return [str(p) for p in caught.value.problems]


def test_a_good_flow_loads_with_its_source_and_a_stable_version() -> None:
    loaded = load_flow_text(GOOD, "x.yaml")
    assert loaded.flow.flow == "lembrete_simples"
    assert loaded.source == GOOD
    assert loaded.version == flow_version(GOOD)
    assert len(loaded.version) == 16
    assert int(loaded.version, 16) >= 0
    assert load_flow_text(GOOD, "other.yaml").version == loaded.version
    assert load_flow_text(GOOD.replace("Oi", "Olá"), "x.yaml").version != loaded.version
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.version = "x"  # type: ignore[misc]


def test_a_misspelled_key_points_at_it_and_suggests_the_right_one() -> None:
    text = """\
flow: x
defaults: {provider: sandbox}
start: lembrete
steps:
  lembrete:
    send:
      buttns:
        - {id: pagar, title: Pagar}
      text: oi
"""
    assert problems(text) == [
        "x.yaml:7:7: unknown key `buttns` in step `lembrete`; did you mean `buttons`?"
    ]


def test_a_key_written_one_level_too_high_says_where_it_goes() -> None:
    # `valid_for` is a rule: a designer who writes it beside `send:` (or in
    # `defaults:`) was told only the keys allowed there.
    text = """\
flow: x
defaults:
  provider: sandbox
  valid_for: 6h
start: lembrete
steps:
  lembrete:
    send: {text: oi}
    buttons: [{id: pagar, title: Pagar}]
    valid_for: 2h
    next: lembrete
"""
    assert problems(text) == [
        "x.yaml:4:3: unknown key `valid_for` in `defaults`; it goes under `rules:`",
        "x.yaml:9:5: unknown key `buttons` in step `lembrete`; it goes under `send:`",
        "x.yaml:10:5: unknown key `valid_for` in step `lembrete`; it goes under `rules:`",
    ]


def test_three_different_mistakes_are_reported_in_one_pass_sorted_by_line() -> None:
    text = """\
flow: x
defaults: {provider: sandbox}
start: lembrete
steps:
  lembrete:
    send:
      text: oi
      buttns: [{id: a, title: A}]
    next: pagamnto
  pagamento:
    end: completd
"""
    assert problems(text) == [
        "x.yaml:8:7: unknown key `buttns` in step `lembrete`; did you mean `buttons`?",
        "x.yaml:9:11: `next` in step `lembrete` goes to `pagamnto`, which is not a step; "
        "did you mean `pagamento`?",
        "x.yaml:11:10: `end` in step `pagamento` must be one of completed, cancelled, failed; "
        "got `completd`; did you mean `completed`?",
    ]


def test_a_value_that_fits_no_alternative_of_a_union_is_one_plain_message() -> None:
    text = """\
flow: x
defaults:
  provider: sandbox
  rules:
    inactivity: dez minutos
start: a
steps:
  a: {end: completed}
"""
    assert problems(text) == [
        "x.yaml:5:17: `inactivity` in `defaults.rules`: 'dez minutos' is not a duration; "
        "write it like 30s, 10m, 2h, 1d or 1h30m"
    ]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            "defaults:\n  rules:\n    inactivity: true\nstart: a\nsteps:\n  a: {end: completed}\n",
            "x.yaml:4:17: `inactivity` in `defaults.rules`: true is not a duration; "
            "write it like 30s, 10m, 2h, 1d or 1h30m",
        ),
        (
            "start: a\nsteps:\n  a: {wait: false, next: b}\n  b: {end: completed}\n",
            "x.yaml:4:13: `wait` in step `a`: false is not a duration; "
            "write it like 30s, 10m, 2h, 1d or 1h30m",
        ),
        (
            "defaults:\n  rules:\n    max_per_day: true\nstart: a\nsteps:\n  a: {end: completed}\n",
            "x.yaml:4:18: `max_per_day` in `defaults.rules`: true is not a number of messages; "
            "write a whole number like 2",
        ),
        (
            "start: a\nsteps:\n  a:\n    send:\n"
            "      location: {latitude: true, longitude: -46.6}\n"
            "    next: b\n  b: {end: completed}\n",
            "x.yaml:6:28: `latitude` in `send.location` of step `a`: true is not a latitude; "
            "write a number like -23.5505",
        ),
    ],
)
def test_a_yaml_boolean_is_not_taken_for_one_or_zero(lines: str, expected: str) -> None:
    # A designer who writes `inactivity: true` means "on", not "1 second"; number
    # fields would otherwise take true and false as 1 and 0.
    assert problems("flow: x\n" + lines) == [expected]


def test_a_union_given_a_mapping_is_judged_as_the_mapping_alternative() -> None:
    text = """\
flow: x
start: a
steps:
  a:
    wait: {fro: reply}
"""
    assert problems(text) == ["x.yaml:5:12: unknown key `fro` in step `a`; did you mean `for`?"]


def test_a_union_given_the_wrong_shape_names_every_accepted_shape() -> None:
    text = "flow: x\nstart: a\nsteps:\n  a:\n    wait: [1h]\n"
    assert problems(text) == [
        "x.yaml:5:11: `wait` in step `a` must be a duration like 30s, 10m, 2h, 1d or 1h30m "
        "or a mapping with `for:`; got a list"
    ]


def test_a_trigger_with_a_typo_is_judged_as_the_trigger_it_resembles() -> None:
    text = """\
flow: x
triggers:
  - cron: "0 9 * * 1-5"
    audiance: "contact.context.ativo"
  - {}
start: a
steps:
  a: {end: completed}
"""
    assert problems(text) == [
        "x.yaml:4:5: unknown key `audiance` in item 1 of `triggers`; did you mean `audience`?",
        "x.yaml:5:5: item 2 of `triggers` must be a mapping with one of: `api:`, `cron:`, "
        "`after:` and `since:`, `event:`; got an empty mapping",
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "    send: {text: 10, provider: p}\n",
            'x.yaml:5:18: `text` in step `a` must be text; write it in quotes: "10"',
        ),
        (
            "    send: {template: {name: t, params: {Nome: Maria, Valor: 1670}}, provider: p}\n",
            "x.yaml:5:61: `Valor` in `send.template.params` of step `a` must be text; "
            'write it in quotes: "1670"',
        ),
        (
            "    wait: -3600\n",
            "x.yaml:5:11: `wait` in step `a`: -3600 is negative; write how long, like 3600, "
            "30s, 10m or 1h",
        ),
        (
            "    send: {text: oi, channel: whatsap, provider: p}\n",
            "x.yaml:5:31: `channel` in step `a` must be one of whatsapp, sms, email; "
            "got `whatsap`; did you mean `whatsapp`?",
        ),
        (
            "    wait: 1h\n    on: {lido: b}\n",
            "x.yaml:6:10: `lido` in `on` of step `a` is not an event: sent, delivered, read, "
            "failed, reply, skipped, timeout, button.<id> or choice.<row id>",
        ),
        (
            "    set: {nps: 10}\n",
            "x.yaml:5:11: `nps` in step `a` is not a context field like `context.nps_nota`",
        ),
        (
            "    wait: 1h\n    timeout: {after: 2h}\n",
            "x.yaml:6:5: missing key `goto` in `timeout` of step `a` "
            "(the id of a step in this flow)",
        ),
        (
            "    send: {text: oi, provider: p}\n    end: completed\n",
            "x.yaml:4:3: step `a`: a step does one thing, but this one has send and end; "
            "split it into steps linked with `next:`",
        ),
        (
            "    description: nada\n",
            "x.yaml:4:3: step `a`: this step does nothing; give it one of send, wait, branch, "
            "set, handoff or end",
        ),
    ],
)
def test_structural_mistakes_in_a_step_read_as_plain_words(snippet: str, expected: str) -> None:
    # the step's key `a:` is on line 4, its content from line 5
    text = "flow: x\nstart: a\nsteps:\n  a:\n" + snippet
    assert problems(text) == [expected]


def test_a_missing_top_level_key_says_what_it_is_for() -> None:
    assert problems("flow: x\nsteps:\n  a: {end: completed}\n") == [
        "x.yaml:1:1: missing key `start` (the first step)"
    ]


def test_empty_steps_and_empty_files_and_lists_are_explained() -> None:
    assert problems("flow: x\nstart: a\nsteps: {}\n") == ["x.yaml:3:8: `steps` must not be empty"]
    assert problems("") == [
        "x.yaml:1:1: the file is empty; a flow needs `flow:`, `start:` and `steps:`"
    ]
    assert problems("- a\n- b\n") == [
        "x.yaml:1:1: the file must be a mapping with `flow:`, `start:`, `steps:`; got a list"
    ]


def test_yaml_one_one_booleans_stay_text_so_on_is_a_key() -> None:
    loaded = load_flow_text(GOOD.replace("Pagar agora", "no"), "x.yaml")
    step = loaded.flow.steps["lembrete"]
    assert step.on == {"button.pagar": "fim"}
    assert step.send is not None
    assert step.send.buttons is not None
    assert step.send.buttons[0].title == "no"


def test_duplicate_keys_point_at_the_second_one() -> None:
    text = "flow: x\nstart: a\nsteps:\n  a: {end: completed}\n  a:\n    end: failed\n"
    assert problems(text) == ["x.yaml:5:3: duplicate key `a` (first written on line 4); keep one"]


def test_python_object_tags_are_rejected_without_running_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    monkeypatch.setattr("os.system", lambda command: ran.append(command))
    text = "flow: !!python/object/apply:os.system ['touch pwned']\nstart: a\nsteps: {}\n"
    assert problems(text) == [
        "x.yaml:1:7: the YAML tag `!!python/object/apply:os.system` is not allowed; "
        "this file holds plain data only"
    ]
    assert ran == []


def test_an_alias_bomb_is_rejected_fast() -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    started = time.perf_counter()
    found = problems("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 2.0
    assert len(found) == 1
    assert "the file expands to more than 100000 values" in found[0]


def test_too_many_aliases_and_too_deep_nesting_are_rejected() -> None:
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    assert problems(many)[0].endswith("the file uses more than 100 YAML aliases (`*name`)")
    deep = "a: " + "[" * 60 + "]" * 60 + "\n"
    assert problems(deep)[0].endswith("the file is nested more than 50 levels deep")


@pytest.mark.parametrize("number", ["0x" + "f" * 5000, "0o" + "7" * 5000, "9" * 5000])
def test_a_number_of_thousands_of_digits_is_a_problem_of_the_file_not_a_crash(
    number: str,
) -> None:
    # Python reads any length of hex or octal digits; the problem message then could
    # not print the number, and `disparo check` died with a traceback.
    found = problems(GOOD.replace("  fim:\n", f"  fim:\n    peso: {number}\n"))
    assert len(found) == 1
    assert f"`{number[:37]}...` does not fit the tag `!!int`" in found[0]
    assert len(found[0]) < 200


def test_a_300_kib_file_is_rejected_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "grande.yaml"
    big.write_text(GOOD + "# " + "x" * 300 * 1024 + "\n")
    with pytest.raises(FlowError) as caught:
        load_flow(big)
    assert [str(p) for p in caught.value.problems] == [
        f"{big}: the file is 300 KiB; files are limited to 256 KiB"
    ]
    assert problems("# " + "x" * 300 * 1024)[0].endswith("files are limited to 256 KiB")


def test_yaml_syntax_errors_point_at_the_line_in_plain_words() -> None:
    assert problems("flow: x\nsteps:\n\ta: 1\n") == [
        "x.yaml:3:1: a tab is used for indentation here; YAML needs spaces"
    ]
    assert problems("flow: x\nstart: 'a\n") == [
        "x.yaml:2:8: a quote or bracket opened here is never closed"
    ]


def test_load_flow_reads_a_file_and_remembers_its_path(tmp_path: Path) -> None:
    path = tmp_path / "lembrete.yaml"
    path.write_text(GOOD, encoding="utf-8")
    loaded = load_flow(path)
    assert isinstance(loaded, LoadedFlow)
    assert loaded.path == path
    assert loaded.filename == str(path)
    assert loaded.version == flow_version(GOOD)


def test_load_flows_reads_yaml_and_yml_and_skips_other_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yml").write_text(GOOD.replace("lembrete_simples", "outro"))
    (tmp_path / "flow.schema.json").write_text("{}")
    (tmp_path / ".#a.yaml").write_text("not: [yaml")
    assert sorted(load_flows(tmp_path)) == ["lembrete_simples", "outro"]


def test_load_flows_collects_problems_of_every_file_and_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    (tmp_path / "c.yaml").write_text(GOOD.replace("next", "nxt").replace("on:", "onn:"))
    with pytest.raises(FlowError) as caught:
        load_flows(tmp_path)
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'b.yaml'}:1:7: flow `lembrete_simples` is also defined in "
        f"{tmp_path / 'a.yaml'}; each flow needs its own name",
        f"{tmp_path / 'c.yaml'}:10:5: unknown key `onn` in step `lembrete`; did you mean `on`?",
    ]


def test_load_flows_on_a_missing_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match="no such flows directory"):
        load_flows(tmp_path / "nope")


def test_merge_keys_share_routes_and_keys_written_in_place_win() -> None:
    text = """\
flow: x
defaults: {provider: sandbox}
start: a
steps:
  a:
    send: {text: oi}
    on: &rotas {reply: fim, failed: fim}
    next: b
  b:
    send: {text: tchau}
    on:
      <<: *rotas
      reply: a
  fim: {end: completed}
"""
    steps = load_flow_text(text, "x.yaml").flow.steps
    assert steps["a"].on == {"reply": "fim", "failed": "fim"}
    assert steps["b"].on == {"reply": "a", "failed": "fim"}


def test_dates_and_numbers_keep_the_type_a_designer_expects() -> None:
    text = GOOD.replace(
        "  fim:\n",
        "    next: marca\n  marca:\n    set: {context.vence: 2026-11-30, "
        "context.valor: 1670.5, context.ok: true}\n    next: fim\n  fim:\n",
    )
    step = load_flow_text(text, "x.yaml").flow.steps["marca"]
    assert step.set_ == {"context.vence": "2026-11-30", "context.valor": 1670.5, "context.ok": True}


def test_a_broken_part_does_not_also_report_what_its_removal_would_imply() -> None:
    text = """\
flow: x
defaults: {provider: sandbox, rules: {window: template}}
start: a
steps:
  a:
    send:
      text: oi
      template: boleto_vencendo
"""
    # the template is the wrong shape; "no template" would only be an echo of that
    assert problems(text) == [
        "x.yaml:8:17: `template` in step `a` must be a mapping with `name:`; got `boleto_vencendo`"
    ]


def test_a_broken_button_does_not_make_its_route_look_unreachable() -> None:
    text = """\
flow: x
defaults: {provider: sandbox}
start: a
steps:
  a:
    send:
      text: Pagar?
      buttons:
        - {id: 1, title: Sim}
    on: {button.1: fim}
  fim: {end: completed}
"""
    # `on: button.1` is fine once the id is quoted: no "the step sends no buttons"
    assert problems(text) == [
        "x.yaml:9:16: `id` in item 1 of `send.buttons` in step `a` must be text; "
        'write it in quotes: "1"'
    ]


def test_repeated_merges_are_worked_out_once_per_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    # `<<: [*a, *a]` level after level: without memory, 2**levels walks of `{k: 1}`
    # (49 levels hung `disparo check` and a SIGHUP reload; 12 show it quickly).
    from engine.flow import yaml_source

    walks = 0
    merged_pairs = yaml_source._Builder._merged_pairs

    def counting(self: yaml_source._Builder, node: Any) -> object:
        nonlocal walks
        walks += 1
        return merged_pairs(self, node)

    monkeypatch.setattr(yaml_source._Builder, "_merged_pairs", counting)
    lines = ["x0: &a0 {k: 1}"]
    lines += [f"x{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}" for i in range(1, 13)]

    found = problems("\n".join(lines) + "\n")

    assert walks <= 14  # each of the 13 mappings and the document, once
    assert any(p.startswith("x.yaml:1:1: unknown key `x0`") for p in found)


@pytest.mark.parametrize(
    "merge",
    [
        "x: &a {k: 1, <<: *a}",
        "x: &a {k: 1, <<: [*a]}",
        "x: &a {k: 1, y: &b {<<: *a}, <<: *b}",
    ],
)
def test_a_merge_of_a_mapping_into_itself_is_a_problem_not_a_crash(merge: str) -> None:
    # It recursed until Python's stack ran out: a RecursionError out of `disparo
    # check`, of a reload and of the config, instead of a line to fix.
    found = problems(merge + "\n")

    assert any("`<<` merges the mapping it is written in" in p for p in found), found


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("99999999999999999999999d", "longer than 100 years"),
        ("99999999999999999999", "longer than 100 years"),
        ("9" * 400, "longer than 100 years"),
        ("-" + "9" * 400, "longer than 100 years"),
        ("1e400", "longer than 100 years"),
        (".inf", "longer than 100 years"),
        ("9999999d", "longer than 100 years"),
        (".nan", "is not a duration"),
    ],
)
def test_a_duration_too_long_for_the_calendar_is_a_problem_not_a_crash(
    written: str, said: str
) -> None:
    # A timeout of 27,000 years passed `check` and then crashed every transition of
    # the step at run time (now + timeout leaves the calendar), resending its message.
    found = problems(
        GOOD.replace(
            "      button.pagar: fim",
            f"      button.pagar: fim\n    timeout: {{after: {written}, goto: fim}}",
        )
    )
    assert len(found) == 1, found
    assert found[0].startswith("x.yaml:12:"), found
    assert said in found[0], found


def test_the_longest_duration_still_loads() -> None:
    text = GOOD.replace(
        "      button.pagar: fim",
        "      button.pagar: fim\n    timeout: {after: 36500d, goto: fim}",
    )
    assert load_flow_text(text, "x.yaml").flow.steps["lembrete"].timeout is not None


def test_a_line_out_of_step_with_its_siblings_is_called_an_indentation_problem() -> None:
    # PyYAML's "expected <block end>, but found '<block mapping start>'" means
    # nothing to a bot designer; the line and column were already right.
    said = "this line is indented differently from the lines above it at its level"
    key = GOOD.replace("\n    on:\n", "\n     on:\n")
    fix = "line it up with the keys (or `- ` items) it belongs with"
    assert problems(key) == [f"x.yaml:10:6: {said}; {fix}"]
    item = GOOD.replace("Pagar agora}\n", "Pagar agora}\n         - {id: ajuda, title: Ajuda}\n")
    assert problems(item) == [f"x.yaml:10:10: {said}; {fix}"]
    after_quote = GOOD.replace("Oi {{ contact.first_name }}!", '"Oi" {{ contact.first_name }}!')
    assert problems(after_quote) == [
        "x.yaml:7:18: unexpected text after a closing quote or bracket; "
        "put the whole value in quotes"
    ]


def test_an_id_with_accents_says_letters_without_accents_and_how_to_write_it() -> None:
    # "made of letters" read as a lie to a designer whose `confirmação` is all letters.
    text = "flow: notificação\nstart: confirmação\nsteps:\n  confirmação: {end: completed}\n"
    rule = "an id of unaccented letters, digits, `_` and `-` that starts with a letter or `_`"
    assert problems(text) == [
        f"x.yaml:1:7: `flow` must be {rule}; got `notificação`; write `notificacao`",
        f"x.yaml:2:8: `start` must be {rule}; got `confirmação`; write `confirmacao`",
        f"x.yaml:4:3: `confirmação` in `steps` is not {rule}; write `confirmacao`",
    ]


def test_a_button_id_with_a_space_in_on_says_ids_take_no_spaces() -> None:
    # "is not an event" read as a lie to a designer whose button id is `Pagar agora`.
    text = (
        "flow: f\ndefaults: {provider: sandbox}\nstart: a\nsteps:\n  a:\n"
        "    send: {text: oi, buttons: [{id: Pagar agora, title: Pagar}]}\n"
        "    on: {button.Pagar agora: fim}\n  fim: {end: completed}\n"
    )
    [problem] = problems(text)
    assert problem.startswith("x.yaml:7:10: `button.Pagar agora` in `on` of step `a` is not ")
    assert problem.endswith(
        "; an id in an event has no spaces: give the button an id like `Pagar_agora`"
    )
