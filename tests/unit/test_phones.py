"""Brazilian phone numbers as contact lists write them, normalised to E.164."""

from __future__ import annotations

import pytest

from engine.phones import InvalidPhone, normalise_phone


@pytest.mark.parametrize(
    "raw",
    [
        "11 99999-8888",
        "(11) 99999-8888",
        "+55 11 99999-8888",
        "+55 (11) 9 9999-8888",
        "5511999998888",  # country code without the plus, as spreadsheets keep it
        "55 11 99999-8888",
        "011 99999-8888",  # long-distance prefix
        "0 21 11 99999-8888",  # long-distance prefix with a carrier code
        "  11999998888  ",
    ],
)
def test_the_same_mobile_written_every_usual_way_is_one_e164_number(raw: str) -> None:
    assert normalise_phone(raw) == "+5511999998888"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        # 8 digits after the DDD starting with 9 is no landline: a mobile missing its 9.
        ("(11) 9999-8888", "+5511999998888"),
        ("11 8888-7777", "+5511988887777"),
        ("+55 21 8765-4321", "+5521987654321"),
        ("551188887777", "+5511988887777"),
    ],
)
def test_mobiles_written_without_the_ninth_digit_get_it(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(11) 3333-4444", "+551133334444"),
        ("+55 11 5555-4444", "+551155554444"),
        ("(61) 2222-3333", "+556122223333"),
    ],
)
def test_landlines_keep_their_eight_digits(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


def test_an_eight_digit_number_valid_as_written_gets_no_extra_digit() -> None:
    # phonenumbers lists DDD + 7xxx-xxxx as a (radio) mobile range that never took the 9.
    assert normalise_phone("(61) 7777-6666") == "+556177776666"


def test_other_countries_are_read_from_their_country_code() -> None:
    assert normalise_phone("+1 212 555 0100") == "+12125550100"
    assert normalise_phone("+351 912 345 678") == "+351912345678"


def test_the_default_region_reads_numbers_without_a_country_code() -> None:
    assert normalise_phone("912 345 678", default_region="PT") == "+351912345678"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("11 9999-ABCD", "has letters"),
        ("0800 FLORES", "has letters"),
        ("123", "not a valid phone number"),
        ("+55 11 1234", "not a valid phone number"),
        ("(11) 1999-8888", "not a valid phone number"),  # neither landline nor mobile
        ("+", "not a phone number"),
    ],
)
def test_invalid_numbers_say_what_is_wrong_and_how_to_write_them(raw: str, says: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalise_phone(raw)

    assert says in str(caught.value)
    assert "e.g. 11 99999-8888 or +55 11 99999-8888" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("+55 11 98765-43210999", "'+55 ** *****-****0999' is not a"),
        ("1198765x4321", "'11*****x4321' is not a phone number: it has letters"),
        ("(11) 1999-8888", "'(11) ****-8888' is not a valid phone number"),
        ("11 1234", "'11 1234' is not a valid phone number"),
    ],
)
def test_a_wrong_number_is_quoted_with_its_middle_digits_masked(raw: str, quoted: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalise_phone(raw)

    assert quoted in str(caught.value)
