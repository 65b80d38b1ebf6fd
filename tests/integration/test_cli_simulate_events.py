"""`disparo simulate` takes its events as `POST /v1/events` takes them: an `id` names
the event (a redelivery of it changes nothing), it is never the button tapped."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import CONFIG, disparo

AT = "2026-11-23T10:00:00-03:00"


def survey(tmp_path: Path, events: list[dict[str, str]]) -> list[dict[str, object]]:
    contact = tmp_path / "maria.yaml"
    contact.write_text(
        'id: c-1\nphone: "+5511999998888"\nname: Maria Souza\n'
        'last_inbound_at: "2026-11-23T09:50:00-03:00"\n'  # the survey needs the window
    )
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    result = disparo(
        "simulate", "pesquisa_nps", "--config", str(CONFIG), "--contact", str(contact),
        "--at", AT, "--until", "2026-11-23T10:05:00-03:00", "--events", str(path), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_redelivered_reply_answers_once_as_serve_answers_it(tmp_path: Path) -> None:
    reply = {"type": "reply", "text": "oito", "id": "in-1"}
    lines = survey(
        tmp_path,
        [
            {**reply, "at": "2026-11-23T10:01:00-03:00"},
            {**reply, "at": "2026-11-23T10:02:00-03:00"},
        ],
    )

    # serve answers the second `duplicate`: one "tap the list" message, not two.
    sends = [line["step"] for line in lines if line["kind"] == "send"]
    assert sends == ["pergunta", "nao_entendi"]
    assert [line["type"] for line in lines if line["kind"] == "event"] == ["reply"]


def test_an_event_id_is_not_the_button_tapped(tmp_path: Path) -> None:
    lines = survey(
        tmp_path,
        [
            {"at": "2026-11-23T10:01:00-03:00", "type": "reply", "text": "oito", "id": "nota_8"},
            {"at": "2026-11-23T10:02:00-03:00", "type": "choice", "button_id": "nota_9",
             "id": "in-2"},
        ],
    )  # fmt: skip

    events = [line for line in lines if line["kind"] == "event"]
    assert [(e["type"], e.get("button_id")) for e in events] == [
        ("reply", None),
        ("choice", "nota_9"),
    ]
    assert "nota_9" in [line["step"] for line in lines if line["kind"] == "enter"]


def test_a_button_needs_button_id_as_the_api_says(tmp_path: Path) -> None:
    contact = tmp_path / "maria.yaml"
    contact.write_text('id: c-1\nphone: "+5511999998888"\nname: Maria\n')
    events = tmp_path / "events.jsonl"
    events.write_text('{"at": "2026-11-23T10:01:00-03:00", "type": "button", "id": "pagar"}\n')

    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(contact),
        "--at", AT, "--events", str(events),
    )  # fmt: skip

    assert result.returncode == 1
    assert "events.jsonl:1: a button event needs `button_id`" in result.stderr


def test_a_reply_needs_text_or_an_attachment_as_the_api_says(tmp_path: Path) -> None:
    # POST /v1/events answers such a reply 400: a simulation must not route it.
    contact = tmp_path / "maria.yaml"
    contact.write_text('id: c-1\nphone: "+5511999998888"\nname: Maria\n')
    events = tmp_path / "events.jsonl"
    events.write_text('{"at": "2026-11-23T10:01:00-03:00", "type": "reply", "text": ""}\n')

    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(contact),
        "--at", AT, "--events", str(events),
    )  # fmt: skip

    assert result.returncode == 1
    assert "events.jsonl:1: a reply event needs `text`" in result.stderr
    assert "`attachment`" in result.stderr
    assert "enter     transferir" not in result.stdout


def boleto(tmp_path: Path, events: list[dict[str, str]]) -> tuple[int, str, str]:
    contact = tmp_path / "maria.yaml"
    contact.write_text(
        'id: c-1\nphone: "+5511999998888"\nname: Maria Souza\n'
        'context: {valor: 1670, vencimento: "2026-11-30"}\n'
    )
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    result = disparo(
        "simulate", "cobranca_boleto", "--config", str(CONFIG), "--contact", str(contact),
        "--at", AT, "--until", "2026-11-23T13:00:00-03:00", "--events", str(path), "--json",
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def test_a_read_after_the_timeout_names_the_message_it_is_about(tmp_path: Path) -> None:
    # The reminder is read at 12:00:01, a second after the 2 h timeout sent the SMS.
    code, out, err = boleto(
        tmp_path,
        [{"at": "2026-11-23T12:00:01-03:00", "type": "status", "status": "read",
          "step": "lembrete"}],
    )  # fmt: skip

    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    [event] = [line for line in lines if line["kind"] == "event"]
    # As in serve: the reminder's read, which the finished run ignores; not a read of
    # the SMS (SMS has no read receipts).
    assert (event["type"], event["message_step"]) == ("read", "lembrete")
    assert [line["step"] for line in lines if line["kind"] == "send"] == ["lembrete", "sms"]


def test_a_status_for_a_step_that_sent_nothing_is_named(tmp_path: Path) -> None:
    code, _, err = boleto(
        tmp_path,
        [{"at": "2026-11-23T10:10:00-03:00", "type": "status", "status": "read", "step": "sms"}],
    )

    assert code == 0
    assert "no message of step `sms` to apply status read to" in err


def test_an_attachment_is_shown_as_serve_keeps_it(tmp_path: Path) -> None:
    # serve keeps a reply's attachment as the API read it: null fields dropped,
    # coordinates as numbers. The simulation showed the file's raw object instead.
    pin = {"type": "location", "latitude": "-23.55", "longitude": -46.63, "caption": None}
    code, out, err = boleto(
        tmp_path,
        [{"at": "2026-11-23T10:01:00-03:00", "type": "reply", "attachment": pin}],
    )

    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    [event] = [line for line in lines if line["kind"] == "event"]
    assert event["attachment"] == {"type": "location", "latitude": -23.55, "longitude": -46.63}
