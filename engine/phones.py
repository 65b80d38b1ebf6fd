"""Phone numbers: everything inside disparo is E.164 (``+5511999998888``)."""

from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    pass


def normalise_phone(raw: str, default_region: str = "BR") -> str:
    """Parse a phone as people type it and return E.164.

    Brazilian mobiles written without the ninth digit (``+55 11 8888-7777``) get it
    added, as Anatel required since 2016; a number phonenumbers deems impossible is
    rejected with a message that says what was wrong.
    """
    text = raw.strip()
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"{raw!r} is not a phone number ({exc})") from None
    if number.country_code == 55:
        national = str(number.national_number)
        # DDD + 8 digits starting 6-9 is a mobile missing its ninth digit.
        if len(national) == 10 and national[2] in "6789":
            number = phonenumbers.parse(f"+55{national[:2]}9{national[2:]}", None)
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(
            f"{raw!r} is not a valid phone number; write it with the country code, "
            "e.g. +55 11 99999-8888"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
