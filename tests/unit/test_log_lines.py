"""A value written into a text log line cannot start a line of its own: a contact id
or a vendor's message with a line break would forge a record (log injection). And
no line keeps a person's e-mail or CPF in clear."""

from __future__ import annotations

import logging

import pytest

from engine.logs import Lines, RedactingFilter


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("disparo.x", logging.INFO, __file__, 1, msg, args, None)


FORGED = "c-evil\n2026-12-07 15:00:00,000 ERROR   disparo.fake: forged\r"


def test_a_line_break_in_a_value_is_escaped_in_text_logs() -> None:
    record = _record("started run %s for contact %s (%d tries)", "r-1", FORGED, 2)
    RedactingFilter(one_line=True).filter(record)
    assert record.getMessage() == (
        "started run r-1 for contact c-evil\\n2026-12-07 15:00:00,000 ERROR   disparo.fake: "
        "forged\\r (2 tries)"
    )


def test_an_exception_value_is_escaped_too() -> None:
    record = _record("store unavailable: %s", ValueError("line one\nline two"))
    RedactingFilter(one_line=True).filter(record)
    assert record.getMessage() == "store unavailable: line one\\nline two"


def test_lines_meant_to_be_several_stay_several() -> None:
    record = _record("problems:\n%s", Lines("a.yaml:1:1: one\nb.yaml:2:2: two"))
    RedactingFilter(one_line=True).filter(record)
    assert record.getMessage() == "problems:\na.yaml:1:1: one\nb.yaml:2:2: two"


def test_json_lines_keep_the_value_as_it_is() -> None:
    record = _record("contact %s", FORGED)
    RedactingFilter().filter(record)  # JSON escapes line breaks itself
    assert record.getMessage() == f"contact {FORGED}"


@pytest.mark.parametrize(
    ("said", "logged"),
    [
        ("invalid recipient joao.silva@joaosilva.com.br", "invalid recipient j***@***.br"),
        ("to: <maria+boletos@gmail.com>", "to: <m***@***.com>"),
        ("CPF 529.982.247-25 recusado", "CPF ***.***.***-** recusado"),
        ("cpf=12345678909;", "cpf=***********;"),
        ("CNPJ 12.345.678/0001-95", "CNPJ **.***.***/****-**"),
        ("from 11987654321", "from 11*****4321"),  # a national mobile stays a phone
        ("at postgresql://disparo@db.example.com", "at postgresql://disparo@db.example.com"),
        ("v 2026.11.30 at 2026-11-30T10:00:00Z", "v 2026.11.30 at 2026-11-30T10:00:00Z"),
    ],
)
def test_emails_and_cpfs_are_masked_in_every_line(said: str, logged: str) -> None:
    assert RedactingFilter().clean(said) == logged
