"""PyYAML's parse errors in a bot designer's words, with the line and column to look at.

PyYAML says what its grammar expected (``expected <block end>, but found '<scalar>'``);
the designer needs what to change in the file (an indentation, a closing quote).
"""

from __future__ import annotations

from typing import Any

import yaml

from engine.errors import Problem


def mark_position(mark: Any) -> tuple[int, int]:
    """A PyYAML mark (0-based) as the 1-based (line, column) problems name."""
    return (mark.line + 1, mark.column + 1)


_YAML_WORDS: tuple[tuple[str, str], ...] = (
    ("found character '\\t'", "a tab is used for indentation here; YAML needs spaces"),
    (
        "mapping values are not allowed here",
        "unexpected `:` here; check the indentation, or put text that contains `: ` in quotes",
    ),
    (
        "could not find expected ':'",
        "expected `key: value` here; check the indentation of this line and the one above",
    ),
    (
        "expected <block end>",
        "this line is indented differently from the lines above it at its level; "
        "line it up with the keys (or `- ` items) it belongs with",
    ),
    ("found undefined alias", "this `*alias` refers to no `&anchor` written before it"),
    (
        "expected a single document",
        "a file holds one YAML document; remove the second `---` and what follows it",
    ),
    ("end of stream", "a quote or bracket opened here is never closed"),
    ("<stream end>", "a quote or bracket opened here is never closed"),
)


def yaml_problem(exc: yaml.YAMLError, filename: str, text: str) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        said = " ".join(p for p in (exc.context, exc.problem) if p)
        unclosed = "end of stream" in said or "<stream end>" in said
        # An unclosed quote is reported at the end of the file; point at where it opened.
        mark = (exc.context_mark if unclosed else None) or exc.problem_mark or exc.context_mark
    else:
        mark, said = None, str(exc)
    position: tuple[int, int] | None = mark_position(mark) if mark is not None else None
    message = next((plain for raw, plain in _YAML_WORDS if raw in said), None)
    message = message or f"this is not valid YAML: {said}"
    if (
        "expected <block end>" in said
        and mark is not None
        and text[: mark.index].split("\n")[-1].strip()
    ):
        # Not an indentation: more text after a quoted or bracketed value (`text: "Oi" tudo`).
        message = "unexpected text after a closing quote or bracket; put the whole value in quotes"
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        position = (before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        message = "a control character that YAML does not allow; remove it"
    line, column = position if position is not None else (None, None)
    return Problem(message=message, file=filename, line=line, column=column)
