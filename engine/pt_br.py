"""pt-BR formatting for message templates: money, dates, first names and phones.

Pure functions of their inputs; none touches the process locale (``setlocale`` is
process-global and not thread-safe), so Portuguese names come from the tables here.
Each raises ``FormatError`` with a plain-words message when it cannot format a value;
the message says what kind of value it got, never the value (a contact's data: the
message is logged and stored with the run).
"""

from __future__ import annotations

import re
from datetime import date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import phonenumbers

from engine.context_time import NotATime, in_zone, read_time
from engine.wording import json_kind

MONTHS = (
    "janeiro",
    "fevereiro",
    "março",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
)
MONTHS_SHORT = tuple(m[:3] for m in MONTHS)
WEEKDAYS = (  # Monday first, as date.weekday()
    "segunda-feira",
    "terça-feira",
    "quarta-feira",
    "quinta-feira",
    "sexta-feira",
    "sábado",
    "domingo",
)
WEEKDAYS_SHORT = ("seg", "ter", "qua", "qui", "sex", "sáb", "dom")
DEFAULT_DATE_FORMAT = "%d/%m/%Y"

_CENT = Decimal("0.01")
_PT_BR_NUMBER = re.compile(r"-?\d{1,3}(\.\d{3})*(,\d+)?|-?\d+(,\d+)?")
# "1.670": one thousand six hundred and seventy as Brazilians write it, 1.67 as a
# program writes it. Neither reading is safe to guess.
AMBIGUOUS_NUMBER = re.compile(r"[+-]?\d{1,3}\.\d{3}")
_PT_BR_THOUSANDS = re.compile(r"-?\d{1,3}(\.\d{3}){2,}")
_DIRECTIVE = re.compile(r"%(.)", re.DOTALL)


class FormatError(ValueError):
    """A template filter got a value it cannot format; the message says which and why."""


def _kind(value: Any) -> str:
    """What ``value`` is, for a message that must not quote it. A missing value
    (jinja's Undefined) raises here instead, naming its path."""
    repr(value)
    return json_kind(value)


# ------------------------------------------------------------------ money


def to_decimal(value: Any) -> Decimal:
    """``value`` as an exact Decimal: ints, Decimals, floats (by their shortest repr,
    so 2.675 is 2.675, not 2.67499...) and numeric strings, either plain (``1670.5``)
    or pt-BR (``1.670,50``, ``1670,5``). Booleans, NaN and infinities are refused."""
    if isinstance(value, bool):
        raise FormatError("`brl` needs a number, got a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if AMBIGUOUS_NUMBER.fullmatch(text):
            raise FormatError(
                "`brl` cannot tell whether a string like 1.670 is R$ 1.670,00 or R$ 1,67; store "
                "the number without a thousands separator (1670) or with a decimal comma "
                "(1.670,00)"
            )
        if ("," in text and _PT_BR_NUMBER.fullmatch(text)) or _PT_BR_THOUSANDS.fullmatch(text):
            text = text.replace(".", "").replace(",", ".")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise FormatError("`brl` needs a number, got a string that is not one") from None
    else:
        raise FormatError(f"`brl` needs a number, got {_kind(value)}")
    if not number.is_finite():
        raise FormatError("`brl` needs a finite number, got NaN or infinity")
    return number


def brl(value: Any) -> str:
    """Brazilian reais, rounded half-up to the cent: 1670 -> ``R$ 1.670,00``,
    -1234.5 -> ``-R$ 1.234,50``. A value that rounds to zero has no minus sign."""
    cents = to_decimal(value).quantize(_CENT, rounding=ROUND_HALF_UP)
    sign = "-" if cents < 0 else ""
    units, _, fraction = f"{abs(cents):f}".partition(".")
    grouped = f"{int(units):,}".replace(",", ".")
    return f"{sign}R$ {grouped},{fraction}"


# ------------------------------------------------------------------ dates


def to_datetime(value: Any, tz: tzinfo) -> date | datetime:
    """A date or datetime to print in ``tz``, read as the sweeps read context times
    (``engine.context_time``): ISO text, Unix seconds or milliseconds, dates and
    datetimes. Aware times (Unix times too) are converted to ``tz``; naive ones are
    taken as already local; dates stay dates."""
    try:
        moment = read_time(value)
        if isinstance(moment, datetime) and moment.tzinfo is not None:
            return in_zone(moment, tz)
    except NotATime as exc:
        _kind(value)
        raise FormatError(f"`date` needs a date: {exc}") from None
    return moment


def format_date(value: Any, fmt: str, tz: tzinfo) -> str:
    """strftime with Portuguese names for ``%B %b %A %a`` (``%d de %B`` -> ``30 de
    novembro``); every other directive is strftime's own."""
    moment = to_datetime(value, tz)

    def name(match: re.Match[str]) -> str:
        code = match[1]
        if code == "B":
            return MONTHS[moment.month - 1]
        if code == "b":
            return MONTHS_SHORT[moment.month - 1]
        if code == "A":
            return WEEKDAYS[moment.weekday()]
        if code == "a":
            return WEEKDAYS_SHORT[moment.weekday()]
        return match[0]

    return moment.strftime(_DIRECTIVE.sub(name, fmt))


# ------------------------------------------------------------------ names and phones


def _capitalised(word: str) -> str:
    # "maria" and "MARIA" become "Maria"; "McDonald" was written with care: kept.
    if word.islower() or word.isupper():
        return "-".join(part.capitalize() for part in word.split("-"))
    return word


def first_name(value: Any) -> str:
    """The first word of a full name, capitalised: ``maria da silva`` -> ``Maria``."""
    if not isinstance(value, str):
        raise FormatError(f"`first_name` needs a name (a string), got {_kind(value)}")
    words = value.split()
    return _capitalised(words[0]) if words else ""


def phone(value: Any) -> str:
    """An E.164 number as people read it: ``+5511999999999`` -> ``(11) 99999-9999``;
    numbers outside Brazil keep their country code (``+1 415-555-2671``)."""
    if not isinstance(value, str):
        raise FormatError(f"`phone` needs a phone number (a string), got {_kind(value)}")
    try:
        number = phonenumbers.parse(value, "BR")
    except phonenumbers.NumberParseException:
        raise FormatError(
            "`phone` needs a phone number like +5511999999999, got a string that is not one"
        ) from None
    style = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if number.country_code == 55
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(number, style)
