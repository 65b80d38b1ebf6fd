"""Logging: one line per thing that happened; text by default, JSON with --log-format json.

Phone numbers, e-mail addresses and CPFs/CNPJs are masked and registered secrets
redacted in every record, whatever logger emitted it, so a careless f-string or a
vendor's answer that echoes the request (``invalid recipient joao@...``) cannot
leak them: a log line outlives the contact's erasure.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

# International numbers as a run of 12-17 digits (E.164 with or without the +; with
# the +, from 8 digits: +1 and many European numbers are shorter than Brazil's), and
# Brazilian numbers as vendors echo them: national digits (11987654321) or written
# out ("+55 11 98765-4321", "(11) 98765-4321"). Dates and times never match: their
# groups are joined by "-" or ":" where a phone has a space.
# Lookbehinds up front: the regex runs over every log line. The second keeps ids
# whole: a UUID's last group can be twelve digits (about 1 id in 300).
_PHONE = re.compile(
    r"(?<![\w+])(?<![0-9a-fA-F]{4}-)(?:(?:\+\d{8,17}|\d{12,17})\b"
    r"|(?:\+?55 ?)?(?:\(\d{2}\)|\d{2}) ?9?\d{4}[ -]?\d{4}(?![\w-]))"
)


# An address as vendors echo it: what precedes the @ and the domain's labels. Kept:
# the first character and the last label (``j***@***.br``), enough to tell two
# apart in one incident; a personal domain (joaosilva.com.br) says who it is. The
# user of a URL (postgresql://disparo@db.example.com) is no address: left as it is.
_EMAIL = re.compile(r"(?<![\w.+-])(?<!//)([\w+-])[\w.+-]*@[\w-]+(?:\.[\w-]+)*\.([A-Za-z]{2,})\b")
# A CPF as written (``529.982.247-25``) or as 11 digits, a CNPJ as written
# (``12.345.678/0001-95``); 14 digits in a row are masked as a phone.
_TAX_ID = re.compile(
    r"(?<![\w.])(?:\d{3}\.\d{3}\.\d{3}-\d{2}|\d{11}|\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2})(?![\w-])"
)


def mask_personal(text: str) -> str:
    """``text`` with phones, e-mail addresses and CPFs/CNPJs masked (``mask_phone``,
    ``j***@***.br``, ``***.***.***-**``)."""
    text = mask_phone(text)  # first: a national mobile's 11 digits are a phone, not a CPF
    text = _EMAIL.sub(lambda m: f"{m[1]}***@***.{m[2]}", text)
    return _TAX_ID.sub(lambda m: re.sub(r"\d", "*", m.group()), text)


def _masked(match: re.Match[str]) -> str:
    """Every digit but the first two and the last four becomes ``*``; separators stay."""
    text = match.group()
    positions = [i for i, c in enumerate(text) if c.isdigit()]
    hidden = set(positions[2:-4])
    masked = "".join("*" if i in hidden else c for i, c in enumerate(text))
    return masked if masked.startswith(("+", "(")) or len(positions) < 12 else f"+{masked}"


def mask_phone(text: str) -> str:
    """``+5511999999999`` -> ``+55*******9999`` and ``(11) 98765-4321`` ->
    ``(11) *****-4321`` wherever a phone-like number appears."""
    return _PHONE.sub(_masked, text)


class Lines(str):
    """A log value meant to span several lines (a list of problems, one a line)."""


# Line breaks and other control characters (tab aside) of a value in a text log line.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _one_line(value: object) -> object:
    """``value`` with its control characters escaped (``\\n``), so that a contact id
    or a vendor's answer cannot start a log line of its own; numbers as they are."""
    if isinstance(value, int | float | Lines):
        return value
    text = str(value)
    if not _CONTROL.search(text):
        return value
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class RedactingFilter(logging.Filter):
    """Masks phone numbers, e-mails and CPFs (``mask_personal``) and replaces known
    secret values with ``***``; with
    ``one_line`` (text logs) escapes the line breaks of the values a message quotes."""

    def __init__(self, secrets: Iterable[str] = (), *, one_line: bool = False) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.one_line = one_line

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return mask_personal(text)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.one_line and isinstance(record.args, tuple):
            record.args = tuple(_one_line(arg) for arg in record.args)
        message = self.clean(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(
    log_format: str = "text", secrets: Iterable[str] = (), level: int = logging.INFO
) -> None:
    """Route every ``disparo.*`` and library log line through one redacting handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secrets, one_line=log_format != "json"))
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    # Neither format shows the caller, thread or process: do not gather them for
    # every record (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
