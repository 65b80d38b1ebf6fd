"""Phone numbers: everything inside disparo is E.164 (``+5511999998888``).

Parsing, validity and the kind of a number (mobile, landline) all come from
``phonenumbers`` (Google's libphonenumber metadata); the only thing added here is
Brazil's ninth digit, decided with that same metadata.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType

_EXAMPLE = "write it with the DDD, e.g. 11 99999-8888 or +55 11 99999-8888"


class InvalidPhone(ValueError):
    pass


def _quoted(raw: str) -> str:
    """``raw`` as an error quotes it: a wrong number is often a real one mistyped, and
    errors reach API answers and CSV reports, so every digit but the first two and the
    last four is ``*`` (as in the logs)."""
    positions = [i for i, c in enumerate(raw) if c.isdigit()]
    hidden = set(positions[2:-4])
    return repr("".join("*" if i in hidden else c for i, c in enumerate(raw)))


def normalise_phone(raw: str, default_region: str = "BR") -> str:
    """Parse a phone as people type it and return E.164.

    Numbers without a country code are read as ``default_region`` numbers. A
    number valid as written is kept as written: landlines (``11 3333-4444``) and
    the 8-digit numbers the metadata still lists as mobiles get no extra digit. A
    Brazilian number invalid as written whose 8 digits after the DDD begin with
    6-9, and that is a valid mobile once a 9 goes after the DDD, gets that 9
    (``11 8888-7777``, ``(11) 9999-8888``: mobiles written the way they were before
    the ninth digit, Anatel 2012-2016). Anything else phonenumbers deems invalid is
    rejected with a message that says how to write it.
    """
    text = raw.strip()
    if not text:
        raise InvalidPhone(f"the phone number is empty; {_EXAMPLE}")
    if any(ch.isalpha() for ch in text):
        # phonenumbers reads letters as keypad digits (1-800-FLOWERS); a contact list never does.
        raise InvalidPhone(f"{_quoted(raw)} is not a phone number: it has letters; {_EXAMPLE}")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"{_quoted(raw)} is not a phone number ({exc}); {_EXAMPLE}") from None
    if not phonenumbers.is_valid_number(number):
        fixed = _with_ninth_digit(number)
        if fixed is None:
            raise InvalidPhone(f"{_quoted(raw)} is not a valid phone number; {_EXAMPLE}")
        number = fixed
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _with_ninth_digit(number: PhoneNumber) -> PhoneNumber | None:
    """The Brazilian mobile ``number`` names once its ninth digit is added, if any."""
    national = str(number.national_number)
    # Eight-digit mobile numbers began with 6-9; other first digits were never mobiles.
    if number.country_code != 55 or len(national) != 10 or national[2] not in "6789":
        return None
    candidate = PhoneNumber(country_code=55, national_number=int(f"{national[:2]}9{national[2:]}"))
    if not phonenumbers.is_valid_number(candidate):
        return None
    if phonenumbers.number_type(candidate) != PhoneNumberType.MOBILE:
        return None
    return candidate
