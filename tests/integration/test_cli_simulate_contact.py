"""The contact file of `disparo simulate` is held to the rules `PUT /v1/contacts`
applies: a contact the API would refuse is refused here, naming the field, instead
of a traceback or a simulation of a contact production can never have."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cli_simulate_times import AT, simulate


def _contact(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "contato.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: c-1\ncontext: [1, 2]\n", "context: must be a JSON object ({...}), not a list"),
        ('id: c-1\nphone: "abc"\n', "phone: 'abc' is not a phone number: it has letters"),
        ("id: c-1\nphone: '+5511999998888'\ntags: vip\n", "tags: "),
        ("id: c-1\nphone: '+5511999998888'\nemail: maria.com\n", "email: 'maria.com' is not"),
    ],
)
def test_a_contact_the_api_would_refuse_is_refused_naming_the_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _contact(tmp_path, text)

    code, out, err = simulate(path, "--at", AT)

    assert code == 1
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith(f"{path}: {expected}")


def test_numbers_written_bare_in_yaml_are_an_id_and_a_phone(tmp_path: Path) -> None:
    # `id: 12345` and `phone: 5511999998888` are how a YAML file holds them.
    path = _contact(
        tmp_path,
        "id: 12345\nphone: 5511999998888\nname: Maria\n"
        "context: {valor: 10, vencimento: '2026-11-30'}\n",
    )

    code, out, err = simulate(path, "--at", AT, "--json")

    assert code == 0, err
    assert '"to": "+5511999998888"' in out


def test_an_attendance_that_is_not_a_mapping_shows_how_to_write_it(tmp_path: Path) -> None:
    path = _contact(tmp_path, "id: c-1\nphone: '+5511999998888'\nattendance: yes\n")

    code, _, err = simulate(path, "--at", AT)

    assert code == 1
    assert err.strip() == (
        f"{path}: attendance: write it as {{since: ISO time, until: ISO time, attendant: "
        "name} (until and attendant may be left out)"
    )


ON_TIME = '"at": "2026-11-23T10:30:00-03:00"'


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f'{{{ON_TIME}, "type": "reply", "text": 5}}', "text: Input should be a valid string"),
        (f'{{{ON_TIME}, "type": "button", "button_id": ["a"]}}', "button_id: "),
        (
            f'{{{ON_TIME}, "type": "reply", "text": "oi", "txt": 1}}',
            "txt: unknown field; remove it or check its spelling",
        ),
        (f'{{{ON_TIME}, "type": "attendance_started", "attendant": [1]}}', "attendant: "),
        (
            '{"at": "9999-12-31T23:59:59-03:00", "type": "opt_out"}',
            "at: ",
        ),
    ],
)
def test_an_event_post_v1_events_would_refuse_is_refused_naming_line_and_field(
    tmp_path: Path, line: str, expected: str
) -> None:
    # These crashed with a traceback, ended "the store is unavailable" (exit 3), or
    # were simulated as if the field were not there.
    events = tmp_path / "events.jsonl"
    events.write_text(line + "\n")
    contact = _contact(
        tmp_path, "id: c-1\nphone: '+5511999998888'\nname: Maria\n"
        "context: {valor: 10, vencimento: '2026-11-30'}\n"
    )  # fmt: skip

    code, out, err = simulate(contact, "--at", AT, "--events", str(events))

    assert code == 1
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith(f"{events}:1: {expected}")


def test_an_events_file_saved_with_a_bom_is_read(tmp_path: Path) -> None:
    # Notepad's "UTF-8 with BOM", with Windows line ends: the contact file and the
    # CSV of `disparo trigger` take it; the events file said "Unexpected UTF-8 BOM".
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b'\xef\xbb\xbf{"at": "2026-11-23T10:30:00-03:00", "type": "status", "status": "read"}\r\n'
    )
    contact = _contact(
        tmp_path, "id: c-1\nphone: '+5511999998888'\nname: Maria\n"
        "context: {valor: 10, vencimento: '2026-11-30'}\n"
    )  # fmt: skip

    code, out, err = simulate(contact, "--at", AT, "--events", str(events))

    assert code == 0, err
    assert "enter     aguardando_resposta" in out


def test_a_timestamp_left_null_is_no_timestamp_not_an_unknown_field(tmp_path: Path) -> None:
    # `disparo export` writes every timestamp, null when there is none; such a file
    # was refused as "unknown contact field(s) last_inbound_at; known: ...,
    # last_inbound_at, ...".
    path = _contact(
        tmp_path,
        "id: c-1\nphone: '+5511999998888'\nname: Maria\nlast_inbound_at: null\n"
        "opted_out_at: null\nattendance: null\ncontext: {valor: 10, vencimento: '2026-11-30'}\n",
    )

    code, out, err = simulate(path, "--at", AT)

    assert code == 0, err
    assert "window: template (window_closed_template)" in out
