"""Request bodies of the HTTP API: read as JSON, and refused (400, naming where) when
they hold what JSON allows but disparo could not store and answer again."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from aiohttp import web

from engine.body_reads import read_body
from engine.errors import FieldError, RequestError


def _constant(constant: str) -> float:
    """``NaN``/``Infinity``: not JSON (RFC 8259); read as the floats they name, so the
    check below refuses them naming where they are."""
    return float(constant)


# How deeply a request body may nest: far more than any request needs, and far
# less than what the JSON views of stored contexts and runs can walk back out.
MAX_DEPTH = 32


async def read_json(request: web.Request) -> Any:
    raw = await read_body(request)
    try:
        # NaN and Infinity are not JSON (RFC 8259): stored, they would make every
        # later answer about that contact unreadable to a strict client.
        document = json.loads(raw, parse_constant=_constant)
    except RecursionError:
        raise _too_deep("") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(
            status=400, code="INVALID_JSON", message=f"the body is not valid JSON: {exc}"
        ) from None
    except ValueError:  # Python's limit on the digits of an integer it reads
        raise RequestError(
            status=400,
            code="INVALID_JSON",
            message="a number in the body has more digits than disparo reads; send it as a string",
        ) from None
    _check_storable(document)
    return document


def _too_deep(field: str) -> RequestError:
    return RequestError(
        status=400,
        code="INVALID_JSON",
        message=f"the body nests too deeply: at most {MAX_DEPTH} levels of objects and lists",
        details=[FieldError(field=field, message="flatten what is below here")] if field else [],
    )


# What no stored text may hold: NUL (PostgreSQL's text refuses it) and a lone UTF-16
# surrogate (JSON's "\ud800" alone is no character: UTF-8 cannot encode it).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_storable(document: Any) -> None:
    """400 for what JSON allows but disparo could not store and answer again: nesting
    deeper than ``MAX_DEPTH``, a number too large for a float (``1e400`` reads as inf),
    a NUL character (``\u0000``: PostgreSQL stores no text with one, and no message
    needs one) or a lone surrogate (``\ud800``), in a value or a key."""
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str) and (bad := UNSTORABLE.search(value)):
            raise _unstorable(path, bad.group())
        if isinstance(value, dict) and (
            key := next((k for k in value if UNSTORABLE.search(k)), None)
        ):
            raise _unstorable(f"{path}.{key}" if path else key, UNSTORABLE.findall(key)[0])
        if (isinstance(value, float) and not math.isfinite(value)) or _beyond_float(value):
            raise RequestError.bad_field(
                path,
                "not a finite number (NaN, Infinity, or beyond ±1.8e308); "
                "send a finite number, null, or the value as a string",
                "a number is not one JSON allows",
            )
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise _too_deep(path)
            stack += [(v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise _too_deep(path)
            stack += [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]


def _beyond_float(value: Any) -> bool:
    """A whole number no 64-bit float holds (``9`` * 400): filters and rules read
    numbers as floats, so it would fail every message that shows it."""
    return isinstance(value, int) and abs(value) > _LARGEST_FLOAT


_LARGEST_FLOAT = int(sys.float_info.max)


def _unstorable(field: str, char: str) -> RequestError:
    if char == "\x00":
        return RequestError.bad_field(
            field,
            "remove the \\u0000 from this text",
            "the body holds a NUL character (\\u0000), which cannot be stored",
        )
    escape = f"\\u{ord(char):04x}"
    return RequestError.bad_field(
        field,
        f"remove the {escape} from this text, or send the whole character (a surrogate "
        "pair, or the character itself in UTF-8)",
        f"the body holds a lone UTF-16 surrogate ({escape}), which is no character",
    )
