"""Opt-out keywords, phone normalisation, log redaction and status chains."""

from __future__ import annotations

import logging

import pytest

from engine.logs import RedactingFilter, mask_phone
from engine.models import MessageStatus as S
from engine.opt_out import is_opt_out, normalise
from engine.phones import InvalidPhone, normalise_phone
from engine.step_events import inbound_step_events, status_chain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SAIR", True),
        ("sair", True),
        ("  Parar! ", True),
        ("stop", True),
        ("Cancelar.", True),
        ("cancelár", True),
        ("quero sair do grupo", False),
        ("sim", False),
    ],
)
def test_opt_out_keywords_are_whole_messages_case_and_accent_insensitive(
    text: str, expected: bool
) -> None:
    assert is_opt_out(text) is expected


@pytest.mark.parametrize(
    "text",
    ["*SAIR*", "_sair_", "SAIR 👋", "Parar 🙏🙏", '"Stop"', "«cancelar»", "sair\n", "(PARAR)"],
)
def test_an_opt_out_keyword_dressed_in_symbols_or_formatting_still_opts_out(text: str) -> None:
    # WhatsApp users bold (*SAIR*), quote or add an emoji; the message is still only SAIR.
    assert is_opt_out(text)


def test_keyword_normalising_collapses_spaces_and_keeps_a_keyword_of_symbols() -> None:
    assert normalise("quero  desconto") == normalise("Quero\tdesconto!") == "QUERO DESCONTO"
    assert normalise("👍") == "👍"  # an emoji keyword is not emptied away
    assert not is_opt_out("sair do grupo 👋")


def test_opt_out_keywords_are_configurable() -> None:
    assert is_opt_out("descadastrar", ["DESCADASTRAR"])
    assert not is_opt_out("sair", ["DESCADASTRAR"])


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+55 11 99999-8888", "+5511999998888"),
        ("(21) 98765-4321", "+5521987654321"),
        ("11 8888-7777", "+5511988887777"),  # mobile written without the ninth digit
        ("+55 11 3333-4444", "+551133334444"),  # landline keeps eight digits
        ("+1 212 555 0100", "+12125550100"),
    ],
)
def test_phones_are_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize("raw", ["123", "abc", "+55 11 1234"])
def test_invalid_phones_say_how_to_write_them(raw: str) -> None:
    with pytest.raises(InvalidPhone, match="phone number"):
        normalise_phone(raw)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("sent to +5511999998888 ok", "sent to +55*******8888 ok"),
        # National forms, as Altu and Robbu echo a number back in their errors.
        ("sem WhatsApp: 35988005678", "sem WhatsApp: 35*****5678"),
        ("para +55 11 98765-4321", "para +55 ** *****-4321"),
        ("para (11) 98765-4321", "para (11) *****-4321"),
        ("fixo 11 3456-7890", "fixo 11 ****-7890"),
        # E.164 numbers of other countries are shorter than Brazil's 12 or 13 digits.
        ("for contact +12125551234", "for contact +12*****1234"),
        ("for contact +3361234567", "for contact +33****4567"),
    ],
)
def test_phone_numbers_are_masked_in_log_text(text: str, masked: str) -> None:
    assert mask_phone(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "deferred until 2026-11-23 10:00:00",
        "until 2026-11-23T10:00:00+00:00",
        "R$ 1.670,00 in 3 of 5 attempts",
        "message 3fa85f64-5717-4562-b3fc-2c963f66afa6",
        # A UUID whose last group is twelve digits (about 1 id in 300).
        "run 6432fe7f-b39b-4138-a723-007866226694 of qa_cron finished",
    ],
)
def test_dates_amounts_and_ids_are_not_taken_for_phones(text: str) -> None:
    assert mask_phone(text) == text


def test_redacting_filter_hides_secrets_and_phones() -> None:
    record = logging.LogRecord(
        "disparo.x",
        logging.INFO,
        __file__,
        1,
        "token=%s to %s",
        ("s3cr3t-token", "+5511999998888"),
        None,
    )
    RedactingFilter(["s3cr3t-token"]).filter(record)
    assert record.getMessage() == "token=*** to +55*******8888"


@pytest.mark.parametrize(
    ("current", "new", "events"),
    [
        (S.SENDING, S.SENT, ["sent"]),
        (S.SENDING, S.READ, ["sent", "delivered", "read"]),
        (S.SENT, S.READ, ["delivered", "read"]),
        (S.DELIVERED, S.FAILED, ["failed"]),
        (S.AMBIGUOUS, S.DELIVERED, ["sent", "delivered"]),
    ],
)
def test_a_status_jump_implies_the_statuses_in_between(
    current: S, new: S, events: list[str]
) -> None:
    assert status_chain(current, new) == events


def test_inbound_events_map_to_run_events() -> None:
    assert [e.name for e in inbound_step_events({"type": "reply", "text": "oi"})] == ["reply"]
    assert [e.name for e in inbound_step_events({"type": "button", "button_id": "pagar"})] == [
        "button.pagar"
    ]
    assert [e.name for e in inbound_step_events({"type": "choice", "button_id": "nota_9"})] == [
        "choice.nota_9"
    ]
    assert inbound_step_events({"type": "attendance_started"}) == []
