"""`disparo simulate` and the times it is given: the contact file tells the past, the
simulation runs forward from --at to --until, and events dated before --at still show."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import CONFIG, disparo

AT = "2026-11-23T10:00:00-03:00"


def contact_file(tmp_path: Path, *extra: str) -> Path:
    path = tmp_path / "maria.yaml"
    path.write_text(
        'id: c-1\nphone: "+5511999998888"\nname: Maria Souza\n'
        'context: {valor: 1670, vencimento: "2026-11-30"}\n' + "".join(f"{e}\n" for e in extra)
    )
    return path


def simulate(contact: Path, *args: str) -> tuple[int, str, str]:
    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(contact), *args
    )
    return result.returncode, result.stdout, result.stderr


def test_an_until_before_the_start_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = simulate(contact_file(tmp_path), "--at", AT, "--until", "2026-11-22T10:00:00Z")

    assert code == 2
    assert out == ""
    assert err.strip() == (
        "--until (2026-11-22T10:00:00+00:00) is before the simulation starts "
        "(2026-11-23T13:00:00+00:00); give a later --until"
    )


def test_a_start_at_the_end_of_the_calendar_is_a_usage_error(tmp_path: Path) -> None:
    # --at 9999-12-31 crashed with a traceback computing the default --until.
    for flags in (
        ["--at", "9999-12-31T20:00:00-03:00"],
        ["--at", AT, "--until", "9999-12-31T00:00:00Z"],
    ):
        code, out, err = simulate(contact_file(tmp_path), *flags)

        assert code == 2
        assert out == ""
        assert "Traceback" not in err
        assert "must be before the year 9000" in err


def test_a_start_or_stop_that_is_not_a_time_is_a_usage_error_as_a_late_one_is(
    tmp_path: Path,
) -> None:
    # A script told a mistyped --at (exit 1, "fix your files") from a --until before
    # the start (exit 2): one flag, two meanings. Both are the command line's.
    for flags, flag in (
        (["--at", "amanha"], "--at"),
        (["--at", "2026-11-23T10:00:00"], "--at"),  # no offset
        (["--at", AT, "--until", "depois"], "--until"),
    ):
        code, out, err = simulate(contact_file(tmp_path), *flags)

        assert code == 2, flags
        assert out == ""
        assert err.startswith(f"{flag}: ")
        assert "ISO-8601" in err
        assert "Traceback" not in err


def test_a_contact_fact_after_the_start_is_refused_naming_it(tmp_path: Path) -> None:
    contact = contact_file(tmp_path, 'last_inbound_at: "2026-11-25T09:00:00-03:00"')

    code, out, err = simulate(contact, "--at", AT)

    assert code == 1
    assert out == ""
    assert err.strip() == (
        f"{contact}: last_inbound_at (2026-11-25T12:00:00+00:00) is after the simulation "
        "starts (2026-11-23T13:00:00+00:00); the contact file tells what happened before: "
        "move it earlier, or start later with --at"
    )


def test_a_misspelt_contact_time_zone_is_named_without_a_traceback(tmp_path: Path) -> None:
    contact = contact_file(tmp_path, "timezone: America/Sao Paulo")

    code, _, err = simulate(contact, "--at", AT)

    assert code == 1
    assert "Traceback" not in err
    assert err.strip().startswith(f"{contact}: timezone: `America/Sao Paulo` is not a time zone")
    assert "America/Sao_Paulo" in err


def test_a_reply_dated_before_the_start_shows_and_answers_nothing(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"at": "2026-11-22T10:00:00-03:00", "type": "reply", "text": "sim"}\n')

    code, out, err = simulate(contact_file(tmp_path), "--at", AT, "--events", str(events), "--json")

    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    replies = [line for line in lines if line["kind"] == "event" and line.get("type") == "reply"]
    assert [r["at"] for r in replies] == ["2026-11-22T13:00:00+00:00"]
    assert not any(line["kind"] == "enter" and line["step"] == "atendimento" for line in lines)


def test_an_answer_the_step_has_no_route_for_says_it_was_ignored(tmp_path: Path) -> None:
    # The engine records `run.event_ignored` with the reason; without it in the
    # output, a designer saw the event and then nothing happening, with no why.
    flow = tmp_path / "so_botoes.yaml"
    flow.write_text(
        "flow: so_botoes\ndefaults: {provider: sandbox}\nstart: oferta\nsteps:\n"
        "  oferta:\n    send:\n      text: Quer?\n      buttons: [{id: sim, title: Sim}]\n"
        "    on: {button.sim: fim}\n    timeout: {after: 1h, goto: fim}\n"
        "  fim: {end: completed}\n"
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"at": "2026-11-23T10:30:00-03:00", "type": "reply", "text": "e o frete?"}\n'
    )
    args = ("--config", str(CONFIG), "--contact", str(contact_file(tmp_path)), "--at", AT)
    args = (*args, "--events", str(events))

    result = disparo("simulate", str(flow), *args, "--json")

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [line["kind"] for line in lines]
    assert lines[kinds.index("event") + 1] == {
        "at": "2026-11-23T13:30:00+00:00",
        "kind": "ignored",
        "step": "oferta",
        "reason": "step `oferta` has no transition for `reply`",
    }
    text = disparo("simulate", str(flow), *args).stdout
    assert "2026-11-23 10:30:00  ignored   step `oferta` has no transition for `reply`" in text
    assert "2026-11-23 10:30:00  event     reply text=e o frete?\n" in text


def test_a_run_that_breaks_on_an_expression_exits_1_but_an_end_failed_step_does_not(
    tmp_path: Path,
) -> None:
    # A `when:` reading a value the contact lacks fails the run in production too;
    # simulate answered 0, so a CI job running it passed.
    flow = tmp_path / "decide.yaml"
    flow.write_text(
        "flow: decide\ndefaults: {provider: sandbox}\nstart: b\nsteps:\n"
        "  b:\n    branch:\n      - when: context.limite > 10\n        goto: recusa\n"
        "      - else: ok\n  recusa: {end: failed}\n  ok: {end: completed}\n"
    )
    args = ("--config", str(CONFIG), "--contact", str(contact_file(tmp_path)), "--at", AT)

    broken = disparo("simulate", str(flow), *args)
    flow.write_text(flow.read_text().replace("context.limite", "context.valor"))
    refused = disparo("simulate", str(flow), *args)

    assert broken.returncode == 1
    assert "end       failed: decide/b/when: `context.limite` is not defined" in broken.stdout
    assert broken.stderr.strip().endswith("the run failed; the `end` line above says why")
    assert refused.returncode == 0, refused.stderr
    assert "end       failed: reached end step `recusa`" in refused.stdout


def test_a_flow_file_the_engine_would_refuse_is_refused_with_check_words(tmp_path: Path) -> None:
    # Simulated by path, a template missing from the catalogue failed at send time
    # with a story about a pinned flow version predating a catalogue change.
    flow = tmp_path / "aviso.yaml"
    flow.write_text(
        "flow: aviso\ndefaults: {provider: sandbox}\nstart: a\nsteps:\n"
        "  a:\n    send:\n      template: {name: consulta_lembrete}\n    next: fim\n"
        "  fim: {end: completed}\n"
    )
    args = ("--config", str(CONFIG), "--contact", str(contact_file(tmp_path)), "--at", AT)

    result = disparo("simulate", str(flow), *args)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"{flow}:7:24: template `consulta_lembrete` is not in the template catalogue"
    )
    assert "pinned" not in result.stderr


def test_an_attendance_dated_before_the_start_is_known_when_the_run_begins(
    tmp_path: Path,
) -> None:
    # It was injected after the first send, which then went out to an attended contact.
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"at": "2026-11-23T09:55:00-03:00", "type": "attendance_started", "attendant": "Ana"}\n'
    )

    code, out, err = simulate(contact_file(tmp_path), "--at", AT, "--events", str(events), "--json")

    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["kind"] for line in lines][:2] == ["event", "enter"]
    attendance = next(line for line in lines if line.get("rule") == "in_attendance")
    assert attendance["outcome"] == "skip"
    assert not any(line["kind"] == "send" for line in lines)


def test_events_after_until_are_said_to_be_left_out(tmp_path: Path) -> None:
    # A read receipt at 11:30 with --until 11:00 vanished without a word: the user
    # saw the run still waiting and could not tell their event was never applied.
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"at": "2026-11-23T10:30:00-03:00", "type": "reply", "text": "oi"}\n'
        '{"at": "2026-11-23T11:30:00-03:00", "type": "status", "status": "read"}\n'
    )
    for flags in ((), ("--json",)):
        code, out, err = simulate(
            contact_file(tmp_path), "--at", AT, "--until", "2026-11-23T11:00:00-03:00",
            "--events", str(events), *flags,
        )  # fmt: skip

        assert code == 0, err
        assert err.strip() == (
            f"1 event of {events} is dated after --until (2026-11-23T14:00:00+00:00) and "
            "was not applied; give a later --until to see it"
        )
        if flags:  # the 10:30 reply was applied, the 11:30 read receipt was not
            lines = [json.loads(line) for line in out.splitlines()]
            assert [x["type"] for x in lines if x["kind"] == "event"] == ["reply"]


def test_a_time_without_an_offset_is_refused_in_the_user_s_words(tmp_path: Path) -> None:
    code, _, err = simulate(contact_file(tmp_path), "--at", "2026-11-23T10:00:00")

    assert code == 2
    assert "naive" not in err  # Python's word, not the user's
    assert err.strip() == (
        "--at: '2026-11-23T10:00:00' is not an ISO-8601 time with a timezone "
        "(2026-11-23T10:00:00 has no offset; add one, e.g. 2026-11-23T10:00:00-03:00 or "
        "2026-11-23T10:00:00Z)"
    )
