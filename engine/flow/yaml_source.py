"""Safe YAML with positions: plain data plus where each value and key was written.

Flow files and the config are read through here. Only plain data comes out:
mappings with text keys, lists, text, numbers, booleans and null. A tag that would
build anything else (``!!python/object/apply:...``, ``!!binary``, ``!!set``, a local
``!tag``) is an error. Scalars follow YAML 1.2: only ``true``/``false`` are booleans
(so ``on:``, ``yes`` and ``no`` stay text) and dates stay text. ``<<`` merge keys work;
keys written in the mapping itself win over merged ones.

Limits are enforced while reading, before any data is built: the size of the text,
the number of aliases, the nesting depth, and the number of values the document
expands to (an "alias bomb" is stopped after ``max_values``, not after it blew up).
Every problem is a ``Problem`` with 1-based line and column; duplicate keys (all of
them, in one pass) point at the second occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.errors import Problem, UserInputError
from engine.flow.yaml_errors import mark_position, yaml_problem

DocPath = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based (line, column)

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP = f"{_TAG}seq", f"{_TAG}map"


@dataclass(frozen=True, slots=True, kw_only=True)
class YamlLimits:
    """What a single file may hold; generous for flows, hostile to abuse."""

    max_bytes: int = 256 * 1024
    max_aliases: int = 100
    max_depth: int = 50
    max_values: int = 100_000


DEFAULT_LIMITS = YamlLimits()


class YamlSourceError(UserInputError):
    """The file is not YAML disparo accepts; ``problems`` point at each spot."""


def format_path(path: DocPath) -> str:
    """``("steps", "a", "send", "buttons", 0)`` -> ``steps.a.send.buttons[1]``.

    List items are counted from 1, the way people count them.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += f".{part}" if out else part
    return out


_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def parse_path(text: str) -> DocPath:
    """The inverse of ``format_path``: ``send.buttons[1].title`` -> ``("send", "buttons", 0,
    "title")``."""
    return tuple(int(index) - 1 if index else key for index, key in _PATH_PART.findall(text))


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceMap:
    """Where each value (and each mapping key) of a document was written."""

    filename: str
    values: Mapping[DocPath, Position]
    keys: Mapping[DocPath, Position]
    # Literal block scalars (``|``): the line of the ``|`` and the column its text starts
    # at, so line N of a template written there is file line ``line + N``.
    literals: Mapping[DocPath, Position] = field(default_factory=dict)
    blanks: frozenset[DocPath] = frozenset()  # keys written with no value (not `null`)

    def value_at(self, path: DocPath) -> Position | None:
        """The position of the value at ``path``, else of its nearest written ancestor."""
        for depth in range(len(path), -1, -1):
            prefix = path[:depth]
            found = self.values.get(prefix) or self.keys.get(prefix)
            if found is not None:
                return found
        return None

    def key_at(self, path: DocPath) -> Position | None:
        """The position of the key naming ``path``; the value's when it has no key."""
        return self.keys.get(path) or self.value_at(path)

    def line_of(self, path: DocPath, line: int) -> Position | None:
        """Where line ``line`` of the text at ``path`` is written, when that text is a
        literal block (``|``), whose lines are the file's; else None."""
        found = self.literals.get(path)
        return None if found is None else (found[0] + line, found[1])

    def problem(self, path: DocPath, message: str, *, at_key: bool = False) -> Problem:
        """A ``Problem`` at ``path`` (its key with ``at_key``) with this message."""
        where = self.key_at(path) if at_key else self.value_at(path)
        line, column = where if where is not None else (None, None)
        return Problem(
            message=message,
            file=self.filename,
            line=line,
            column=column,
            path=format_path(path) or None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class YamlDocument:
    data: Any
    text: str
    source_map: SourceMap


class _LimitExceeded(Exception):
    def __init__(self, message: str, node_mark: Any = None) -> None:
        super().__init__(message)
        self.mark = node_mark


class _Loader(yaml.SafeLoader):
    """SafeLoader used to compose nodes only (its constructor is never called), with YAML
    1.2 core scalars, counting aliases and depth as it goes."""

    def __init__(self, text: str, limits: YamlLimits) -> None:
        super().__init__(text)
        self.limits = limits
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.max_aliases:
                raise _LimitExceeded(
                    f"the file uses more than {self.limits.max_aliases} YAML aliases (`*name`)",
                    cast(Any, self).peek_event().start_mark,
                )
        self.depth += 1
        try:
            if self.depth > self.limits.max_depth:
                raise _LimitExceeded(
                    f"the file is nested more than {self.limits.max_depth} levels deep",
                    cast(Any, self).peek_event().start_mark,
                )
            node: Node | None = super().compose_node(parent, index)
            return node
        finally:
            self.depth -= 1


# Its own table, not SafeLoader's: YAML 1.1 reads `on`, `no`, `off` as booleans and
# dates as dates.
_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


class _Builder:
    """Turns composed nodes into plain data, recording positions and problems."""

    def __init__(self, filename: str, limits: YamlLimits) -> None:
        self.filename = filename
        self.limits = limits
        self.values: dict[DocPath, Position] = {}
        self.keys: dict[DocPath, Position] = {}
        # Each mapping's pairs, merges applied, worked out once: `<<: [*a, *a]` repeated
        # level after level would otherwise walk the same mappings 2**levels times.
        self._pairs: dict[int, list[tuple[str, Node, Node]]] = {}
        self._merging: set[int] = set()  # mappings whose merges are being worked out
        self.literal_lines: dict[DocPath, int] = {}  # the line (0-based) of each ``|``
        self.blanks: set[DocPath] = set()
        self.problems: list[Problem] = []
        self.count = 0

    def problem(self, mark: Any, message: str) -> None:
        line, column = mark_position(mark)
        self.problems.append(Problem(message=message, file=self.filename, line=line, column=column))

    def build(self, node: Node, path: DocPath) -> Any:
        self.count += 1
        if self.count > self.limits.max_values:
            raise _LimitExceeded(
                f"the file expands to more than {self.limits.max_values} values "
                "(are YAML aliases repeating each other?)",
                node.start_mark,
            )
        if len(path) > self.limits.max_depth:
            raise _LimitExceeded(
                f"the file is nested more than {self.limits.max_depth} levels deep "
                "(does a YAML alias refer to itself?)",
                node.start_mark,
            )
        self.values[path] = mark_position(node.start_mark)
        if isinstance(node, ScalarNode):
            if node.style == "|":
                self.literal_lines[path] = node.start_mark.line
            if node.tag == _NULL and node.value == "":
                self.blanks.add(path)
            return self.scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self.problem(node.start_mark, _tag_message(node.tag))
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                self.problem(node.start_mark, _tag_message(node.tag))
            return self.mapping(node, path)
        raise TypeError(f"unexpected YAML node {node!r}")

    def scalar(self, node: ScalarNode) -> Any:
        tag, text = node.tag, node.value
        try:
            if tag == _STR:
                return text
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return {"true": True, "false": False}[text.lower()]
            if tag == _INT:
                return _to_int(text)
            if tag == _FLOAT:
                return _to_float(text)
        except (KeyError, ValueError):
            shown = text if len(text) <= 40 else f"{text[:37]}..."
            self.problem(node.start_mark, f"`{shown}` does not fit the tag `{_short_tag(tag)}`")
            return text
        self.problem(node.start_mark, _tag_message(tag))
        return text

    def pairs(self, node: MappingNode) -> list[tuple[str, Node, Node]]:
        """(key, key node, value node) with ``<<`` merges applied; reports duplicates."""
        found = self._pairs.get(id(node))
        if found is None:
            if id(node) in self._merging:  # `x: &a {<<: *a}`, directly or not
                raise _LimitExceeded(
                    "`<<` merges the mapping it is written in (through an alias); "
                    "merge another mapping",
                    node.start_mark,
                )
            self._merging.add(id(node))
            try:
                found = self._pairs[id(node)] = self._merged_pairs(node)
            finally:
                self._merging.discard(id(node))
        return found

    def _merged_pairs(self, node: MappingNode) -> list[tuple[str, Node, Node]]:
        explicit: dict[str, tuple[str, Node, Node]] = {}
        merged: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problem(key_node.start_mark, "a key must be plain text, not a list or mapping")
                continue
            key = key_node.value
            if key == "<<" and key_node.style is None:
                merged.extend(self.merge_sources(value_node))
                continue
            if key in explicit:
                first_line = mark_position(explicit[key][1].start_mark)[0]
                self.problem(
                    key_node.start_mark,
                    f"duplicate key `{key}` (first written on line {first_line}); keep one",
                )
                continue
            explicit[key] = (key, key_node, value_node)
        out = list(explicit.values())
        seen = set(explicit)
        for key, key_node, value_node in merged:
            if key not in seen:
                seen.add(key)
                out.append((key, key_node, value_node))
        return out

    def merge_sources(self, node: Node) -> list[tuple[str, Node, Node]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        out: list[tuple[str, Node, Node]] = []
        for source in sources:
            if isinstance(source, MappingNode):
                merged = self.pairs(source)
                self.count += len(merged)  # what merges copy counts towards max_values
                if self.count > self.limits.max_values:
                    raise _LimitExceeded(
                        f"the file expands to more than {self.limits.max_values} values "
                        "(are `<<` merges repeating each other?)",
                        source.start_mark,
                    )
                out.extend(merged)
            else:
                self.problem(source.start_mark, "`<<` merges a mapping (`<<: *name`), nothing else")
        return out

    def mapping(self, node: MappingNode, path: DocPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, key_node, value_node in self.pairs(node):
            child = (*path, key)
            self.keys[child] = mark_position(key_node.start_mark)
            out[key] = self.build(value_node, child)
        return out


# The largest whole number a file may write: one Python can still print (its limit is
# 4,300 decimal digits). It reads any length of hex or octal digits, and a number
# past that limit could then never be shown in an error or a log line.
_MAX_INT_BITS = 14_000


def _to_int(text: str) -> int:
    lowered = text.lower()
    if lowered.startswith("0o"):
        value = int(lowered[2:], 8)
    elif lowered.startswith("0x"):
        value = int(lowered[2:], 16)
    else:
        value = int(text)
    if value.bit_length() > _MAX_INT_BITS:
        raise ValueError("too large")
    return value


def _to_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)


def _tag_message(tag: str) -> str:
    return f"the YAML tag `{_short_tag(tag)}` is not allowed; this file holds plain data only"


def parse_yaml(text: str, filename: str, *, limits: YamlLimits = DEFAULT_LIMITS) -> YamlDocument:
    """Parse one YAML document into plain data and its ``SourceMap``.

    Raises ``YamlSourceError`` with every duplicate key and forbidden tag of the
    document, or with the first syntax error or exceeded limit.
    """
    size = len(text.encode("utf-8"))
    if size > limits.max_bytes:
        raise _too_big(filename, size, limits)
    text = text.removeprefix("\ufeff")
    builder = _Builder(filename, limits)
    loader: _Loader | None = None
    try:
        loader = _Loader(text, limits)
        root = loader.get_single_node()
        data = builder.build(root, ()) if root is not None else None
    except _LimitExceeded as exc:
        line, column = mark_position(exc.mark) if exc.mark is not None else (None, None)
        problem = Problem(message=str(exc), file=filename, line=line, column=column)
        raise YamlSourceError(str(problem), [problem]) from None
    except yaml.YAMLError as exc:
        problem = yaml_problem(exc, filename, text)
        raise YamlSourceError(str(problem), [problem]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if builder.problems:
        problems = sorted(builder.problems, key=lambda p: (p.line or 0, p.column or 0))
        raise YamlSourceError(str(problems[0]), problems)
    source_map = SourceMap(
        filename=filename,
        values=builder.values,
        keys=builder.keys,
        literals=_literal_starts(builder.literal_lines, text),
        blanks=frozenset(builder.blanks),
    )
    return YamlDocument(data=data, text=text, source_map=source_map)


def _literal_starts(lines: Mapping[DocPath, int], text: str) -> dict[DocPath, Position]:
    """Each literal block's ``|`` line (1-based) and the column its first text line is
    indented to."""
    file_lines = text.splitlines()
    out: dict[DocPath, Position] = {}
    for path, line in lines.items():
        body = next((t for t in file_lines[line + 1 :] if t.strip()), "")
        out[path] = (line + 1, len(body) - len(body.lstrip(" ")) + 1)
    return out


def read_yaml(
    path: Path, *, filename: str | None = None, limits: YamlLimits = DEFAULT_LIMITS
) -> YamlDocument:
    """Read and parse ``path`` (UTF-8); a file over ``limits.max_bytes`` is never read."""
    name = filename or str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise _too_big(name, size, limits)
        raw = path.read_bytes()
    except FileNotFoundError:
        problem = Problem(message="no such file", file=name)
        raise YamlSourceError(str(problem), [problem]) from None
    except IsADirectoryError:
        problem = Problem(message="this is a directory, not a YAML file", file=name)
        raise YamlSourceError(str(problem), [problem]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        problem = Problem(
            message="the file is not UTF-8 text; save it as UTF-8",
            file=name,
            line=line,
            column=len(before) - (before.rfind(b"\n") + 1) + 1,
        )
        raise YamlSourceError(str(problem), [problem]) from None
    return parse_yaml(text, name, limits=limits)


def _too_big(filename: str, size: int, limits: YamlLimits) -> YamlSourceError:
    problem = Problem(
        message=f"the file is {size // 1024} KiB; files are limited to "
        f"{limits.max_bytes // 1024} KiB",
        file=filename,
    )
    return YamlSourceError(str(problem), [problem])
