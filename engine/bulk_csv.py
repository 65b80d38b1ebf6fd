"""Contacts files for ``disparo trigger``: one contact per CSV row, read as a stream.

The rules (the README summarises them under "Commands"):

- Encoding UTF-8, with or without a BOM. The delimiter is ``,`` or ``;``, whichever
  the header line holds more of (Brazilian Excel exports use ``;``).
- The first line names the columns. ``id``, ``phone``, ``email``, ``name``,
  ``timezone``, ``tags`` and ``idempotency_key`` are the contact's own fields
  (matched without regard to case); every other column is a key of the contact's
  context, named as written. A ``context.`` prefix is optional and stripped
  (``context.valor`` and ``valor`` are the same key); it lets a context key share a
  name with a contact field (``context.name``).
- Context values are strings. A header ending in ``:number`` (``valor:number``)
  makes the column numeric: ``1670``, ``-3``, ``1670.50`` or ``1670,50``; no
  thousands separators.
- Cells are trimmed. An empty cell sets nothing: what is stored stays. A line with
  only empty cells is skipped.
- ``phone`` is normalised to E.164 (``engine.phones``; Brazil when no country code
  is written). ``tags`` are separated by ``;`` (quote the cell in a ``;`` file).
  Each row needs an ``id``, a ``phone`` or an ``email``; without an ``id`` the
  contact is known by its E.164 phone, else by its e-mail, as in ``POST /v1/runs``.
- The row's identity, which makes a rerun of the same file start nothing new, is
  ``key=<idempotency_key>`` when that cell is filled, else ``row=<hash>``: a hash of
  the row's normalised data (phone, e-mail, name, timezone, tags, context). The
  run's idempotency key is ``csv:<flow>:<contact id>:<identity>``. So reordering
  rows or re-exporting with other phone formatting starts nothing new, while a row
  whose data changed is a new row.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engine.models import ContactUpsert
from engine.phones import InvalidPhone, normalise_phone
from engine.pt_br import AMBIGUOUS_NUMBER
from engine.zones import is_iana_zone

CONTACT_FIELDS = ("id", "phone", "email", "name", "timezone", "tags", "idempotency_key")
CONTEXT_PREFIX = "context."
NUMBER_SUFFIX = ":number"
MAX_TEXT = 200
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMBER = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")
# How Excel exports a long number in a column not formatted as Text: 5,51199E+12.
_SCIENTIFIC = re.compile(r"^\d+(?:[.,]\d+)?[eE]\+\d+$")
_SAVE_AS_UTF8 = 'save the file as UTF-8 (Excel: Save As > "CSV UTF-8")'


@dataclass(frozen=True, slots=True, kw_only=True)
class RowProblem:
    """One bad cell, row or header: ``FILE:LINE: column: problem; what to do``."""

    line: int
    column: str
    message: str

    def render(self, file: str) -> str:
        return f"{file}:{self.line}: {self.column}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRow:
    """A valid row: the contact to upsert and the row's identity (see the module doc)."""

    line: int
    contact: ContactUpsert
    identity: str
    digest: str  # hash of the row's normalised data

    def idempotency_key(self, flow: str) -> str:
        return f"csv:{flow}:{self.contact.id}:{self.identity}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    header: str  # as written
    field: str  # a contact field, or the context key
    in_context: bool
    number: bool = False


class ContactsFile:
    """A contacts CSV file; each ``rows()`` call reads it again from the start.

    ``rows()`` yields a ``ContactRow`` per valid row and a ``RowProblem`` per problem
    (a row may have several); it never raises for what the file holds.
    ``bytes_read`` says how far the current reading got.
    """

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = path
        self.name = name or str(path)
        self.bytes_read = 0

    def rows(self) -> Iterator[ContactRow | RowProblem]:
        self.bytes_read = 0
        with self.path.open("rb") as raw:
            yield from self._read(raw)

    def _read(self, raw: BinaryIO) -> Iterator[ContactRow | RowProblem]:
        head = raw.readline()
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
            yield RowProblem(
                line=1, column="encoding", message=f"the file is UTF-16, not UTF-8; {_SAVE_AS_UTF8}"
            )
            return
        bad_lines: list[int] = []
        lines = self._decoded(itertools.chain([head], raw), bad_lines)
        first = next(lines, "")
        if not first.strip():
            yield RowProblem(
                line=1,
                column="header",
                message="the first line must name the columns; "
                "write a header such as id,phone,name",
            )
            return
        delimiter = ";" if first.count(";") > first.count(",") else ","
        # strict: a quote left open is an error, not a cell that swallows the rest of the file
        reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, strict=True)
        columns, problems = parse_header(next(reader))
        yield from problems
        if problems:
            return
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield RowProblem(
                    line=line,
                    column="row",
                    message=f"the row cannot be read ({exc}); close every quoted cell with "
                    'a second `"` and write a quote inside a cell as `""`',
                )
                continue
            yield from parse_row(line, cells, columns, delimiter)
        if bad_lines:
            more = f" (and {len(bad_lines) - 1} more lines)" if len(bad_lines) > 1 else ""
            yield RowProblem(
                line=bad_lines[0],
                column="encoding",
                message=f"the line is not valid UTF-8{more}; {_SAVE_AS_UTF8}",
            )

    def _decoded(self, raw: Iterator[bytes], bad_lines: list[int]) -> Iterator[str]:
        for number, data in enumerate(raw, 1):
            self.bytes_read += len(data)
            if number == 1 and data.startswith(codecs.BOM_UTF8):
                data = data[len(codecs.BOM_UTF8) :]
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines.append(number)
                yield data.decode("utf-8", errors="replace")


def parse_header(cells: list[str]) -> tuple[list[Column], list[RowProblem]]:
    """The columns a header names, or every problem with it."""
    columns: list[Column] = []
    problems: list[RowProblem] = []
    seen: dict[tuple[bool, str], str] = {}

    def problem(message: str) -> None:
        problems.append(RowProblem(line=1, column="header", message=message))

    for index, cell in enumerate(cells, 1):
        header = cell.strip()
        name, number = header, False
        if name.lower().endswith(NUMBER_SUFFIX):
            name, number = name[: -len(NUMBER_SUFFIX)].strip(), True
        if not name:
            problem(f"column {index} has no name; name it (e.g. `valor`) or delete the column")
            continue
        if ":" in name:
            problem(
                f"`{header}` has a type suffix disparo does not know; "
                f"the only one is `{NUMBER_SUFFIX}` (e.g. `valor:number`)"
            )
            continue
        if name.lower().startswith(CONTEXT_PREFIX):
            field, in_context = name[len(CONTEXT_PREFIX) :], True
            if not field:
                problem(f"`{header}` names no context key; write e.g. `context.valor`")
                continue
        elif name.lower() in CONTACT_FIELDS:
            field, in_context = name.lower(), False
            if number:
                problem(f"`{header}`: `{NUMBER_SUFFIX}` is for context columns; write `{name}`")
                continue
        else:
            field, in_context = name, True
        column = Column(header=header, field=field, in_context=in_context, number=number)
        earlier = seen.get((column.in_context, column.field))
        if earlier is not None:
            problem(f"`{header}` is the same column as `{earlier}`; keep one of them")
            continue
        seen[(column.in_context, column.field)] = header
        columns.append(column)
    if not problems and not any(
        not c.in_context and c.field in ("id", "phone", "email") for c in columns
    ):
        problem(
            "the file needs an `id`, `phone` or `email` column to know each contact; "
            f"the header has {', '.join(f'`{c.header}`' for c in columns)}"
        )
    return columns, problems


def parse_row(
    line: int, cells: list[str], columns: list[Column], delimiter: str
) -> Iterator[ContactRow | RowProblem]:
    """The contact one row holds, or every problem in it; nothing for a blank row."""
    values = [cell.strip() for cell in cells]
    if not any(values):
        return
    if len(values) != len(columns):
        yield RowProblem(
            line=line,
            column="row",
            message=f"{len(values)} cells but the header names {len(columns)} columns; "
            f'quote cells that contain `{delimiter}` ("a{delimiter}b") and '
            "give every row one cell per column",
        )
        return
    fields: dict[str, str] = {}
    context: dict[str, Any] = {}
    problems: list[RowProblem] = []
    for column, value in zip(columns, values, strict=True):
        if not value:
            continue
        if "\x00" in value:  # PostgreSQL stores no text with one: the batch would fail
            problems.append(
                RowProblem(
                    line=line,
                    column=column.header,
                    message="the cell holds a NUL character (\\x00), which cannot be stored; "
                    "remove it (an export from another program may have left it)",
                )
            )
            continue
        if not column.in_context:
            fields[column.field] = value
        elif column.number:
            if AMBIGUOUS_NUMBER.fullmatch(value):
                problems.append(
                    RowProblem(
                        line=line,
                        column=column.header,
                        message=f"{value!r} is ambiguous; write {value.replace('.', '')} if the "
                        f"dot separates thousands, {value.replace('.', ',')} if it is a decimal",
                    )
                )
                continue
            if _NUMBER.match(value) is None:
                problems.append(
                    RowProblem(
                        line=line,
                        column=column.header,
                        message=f"{value!r} is not a number; write digits with at most one "
                        "decimal separator, e.g. 1670 or 1670,50 (no thousands separators)",
                    )
                )
                continue
            text = value.replace(",", ".")
            context[column.field] = float(text) if "." in text else int(text)
        else:
            context[column.field] = value
    contact = _contact_fields(line, fields, problems)
    if problems or contact is None:
        # Report in column order, under the column's header as written.
        where = {c.field if not c.in_context else c.header: i for i, c in enumerate(columns)}
        headers = {c.field: c.header for c in columns if not c.in_context}
        for problem in sorted(problems, key=lambda p: where.get(p.column, len(columns))):
            yield RowProblem(
                line=line,
                column=headers.get(problem.column, problem.column),
                message=problem.message,
            )
        return
    ident = contact["id"]
    upsert = ContactUpsert(
        id=ident,
        phone=contact.get("phone"),
        email=contact.get("email"),
        name=contact.get("name"),
        timezone=contact.get("timezone"),
        tags=contact.get("tags"),
        context=context or None,
    )
    tags = sorted(upsert.tags or ())
    data = [upsert.phone, upsert.email, upsert.name, upsert.timezone, tags, context]
    digest = hashlib.sha256(
        json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()[:16]
    key = fields.get("idempotency_key")
    identity = f"key={key}" if key else f"row={digest}"
    yield ContactRow(line=line, contact=upsert, identity=identity, digest=digest)


def _contact_fields(
    line: int, fields: dict[str, str], problems: list[RowProblem]
) -> dict[str, Any] | None:
    def bad(column: str, message: str) -> None:
        problems.append(RowProblem(line=line, column=column, message=message))

    out: dict[str, Any] = {}
    for name in ("id", "name", "idempotency_key"):
        if len(fields.get(name, "")) > MAX_TEXT:
            bad(name, f"longer than {MAX_TEXT} characters; shorten it")
    if "phone" in fields and _SCIENTIFIC.match(fields["phone"]):
        bad(
            "phone",
            f"{fields['phone']!r} is a number Excel wrote in scientific notation, which loses "
            "its last digits; format the column as Text in Excel (or write the numbers with a "
            "leading +) and export the file again",
        )
    elif "phone" in fields:
        try:
            out["phone"] = normalise_phone(fields["phone"])
        except InvalidPhone as exc:
            bad("phone", str(exc))
    if "email" in fields:
        if _EMAIL.match(fields["email"]) is None:
            bad(
                "email",
                f"{fields['email']!r} is not an e-mail address; write it as name@domain.com",
            )
        else:
            out["email"] = fields["email"]
    if "timezone" in fields:
        if is_iana_zone(fields["timezone"]):
            out["timezone"] = fields["timezone"]
        else:
            bad(
                "timezone",
                f"{fields['timezone']!r} is not an IANA timezone; write e.g. America/Sao_Paulo",
            )
    if "name" in fields:
        out["name"] = fields["name"]
    if "tags" in fields:
        tags = (t.strip() for t in fields["tags"].split(";"))
        out["tags"] = tuple(dict.fromkeys(t for t in tags if t)) or None
    ident = fields.get("id") or out.get("phone") or out.get("email")
    if ident is None:
        if not ({"phone", "email"} & fields.keys()):
            bad("id", "the row names no contact; fill its `id`, `phone` or `email`")
        return None
    out["id"] = ident
    return out
