"""Pydantic validation errors as problems a bot designer can act on.

Shared by flow files and the config: each error of a ``ValidationError`` becomes a
``Problem`` at the line and column of the offending key (unknown or missing keys) or
value (everything else), in plain words, with a did-you-mean where a name looks
misspelled. The errors pydantic reports for every alternative of a union
(``inactivity: 10m`` or ``{for: 10m}``; the kinds of trigger) are collapsed into the
problems of the alternative the user evidently meant, or into one "must be X or Y".
Input values are echoed only where they help ("got `whatsap`") and never for a path
the caller marks secret.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from engine.errors import Problem
from engine.flow.model import PATTERN_HINTS
from engine.flow.yaml_source import DocPath, SourceMap, format_path
from engine.zones import iana_zones, is_iana_zone


def _is_type_error(kind: str) -> bool:
    """Errors that only say "wrong type": within a union, other alternatives say more."""
    return kind.endswith(("_type", "_parsing")) or kind in ("int_from_float", "literal_error")


_WORDS: Mapping[Any, str] = {
    str: "text",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    list: "a list",
    tuple: "a list",
    dict: "a mapping",
    SecretStr: "text",
    Path: "a file or folder path",
}


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``"; did you mean `x`?"`` for the closest option, or ``""`` when none is close."""
    match = difflib.get_close_matches(word, sorted(set(options)), n=1, cutoff=0.6)
    return f"; did you mean `{match[0]}`?" if match else ""


def show(value: Any) -> str:
    """A short, user-facing rendering of a value from the document."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = str(value)
    return f"`{text[:40]}…`" if len(text) > 40 else f"`{text}`"


@dataclass(frozen=True, slots=True, kw_only=True)
class Describer:
    """Names document locations in words: ``step `lembrete```, ``in `server```.

    ``named`` maps a top-level key whose entries have names to the noun for one entry
    (``{"steps": "step"}``); ``inline`` lists keys that read as part of their entry
    (a step's ``send:``), so an unknown key inside them is "in step `x`".
    """

    named: Mapping[str, str] = field(default_factory=dict)
    inline: frozenset[str] = frozenset()

    def owner(self, path: DocPath) -> tuple[str, DocPath]:
        if len(path) >= 2 and isinstance(path[0], str) and path[0] in self.named:
            return f"{self.named[path[0]]} `{path[1]}`", path[2:]
        return "", path

    def where(self, path: DocPath) -> str:
        """``in step `a```, ``in `send.list` of step `a```, ``in `server```, or ``""``."""
        if path and isinstance(path[-1], int):
            return f"in {self.name(path)}"
        owner, rest = self.owner(path)
        if len(rest) == 1 and rest[0] in self.inline:
            rest = ()
        if owner:
            return f"in {owner}" if not rest else f"in `{format_path(rest)}` of {owner}"
        return f"in `{format_path(rest)}`" if rest else ""

    def name(self, path: DocPath) -> str:
        """``step `a```, ```next` in step `a```, ``item 2 of `triggers```, ``the file``."""
        if not path:
            return "the file"
        owner, rest = self.owner(path)
        if owner and not rest:
            return owner
        last = path[-1]
        if isinstance(last, int):
            parent_owner, parent_rest = self.owner(path[:-1])
            text = f"item {last + 1} of `{format_path(parent_rest)}`"
            return f"{text} in {parent_owner}" if parent_owner else text
        return f"`{last}` {self.where(path[:-1])}".rstrip()


# ------------------------------------------------------------------ walking the model


@dataclass(slots=True)
class _Union:
    at: int  # length of the data path where the union sits
    member: Any
    union: Any


@dataclass(slots=True)
class _Walk:
    path: DocPath = ()
    unions: list[_Union] = field(default_factory=list)
    owner: type[BaseModel] | None = None  # the model the last key belongs to
    annotation: Any = Any
    is_key: bool = False


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _strip(tp: Any) -> Any:
    """Without ``Annotated`` and without ``| None``."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif _is_union(tp):
            members = [m for m in typing.get_args(tp) if m is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    tp = _strip(tp)
    return isinstance(tp, type) and issubclass(tp, BaseModel)


@functools.cache
def _fields(model: type[BaseModel]) -> dict[str, tuple[str, Any, FieldInfo]]:
    """alias -> (attribute name, annotation with its Annotated metadata, field info)."""
    try:
        hints = typing.get_type_hints(model, include_extras=True)
    except (NameError, TypeError):
        hints = {}
    out: dict[str, tuple[str, Any, FieldInfo]] = {}
    for name, info in model.model_fields.items():
        out[info.alias or name] = (name, hints.get(name, info.annotation), info)
    return out


def _member(members: list[Any], tag: Any) -> Any:
    for member in members:
        bare = _strip(member)
        if isinstance(bare, type) and bare.__name__ == tag:
            return member
    return next((m for m in members if not _is_model(m)), members[0])


def _walk(model: type[BaseModel], loc: tuple[str | int, ...]) -> _Walk:
    walk = _Walk(annotation=model)
    path: list[str | int] = []
    tp: Any = model
    i = 0
    while i < len(loc):
        seg = loc[i]
        if seg == "[key]":
            walk.is_key = True
            i += 1
            continue
        bare = _strip(tp)
        if _is_union(bare):
            members = [m for m in typing.get_args(bare) if m is not type(None)]
            tp = _member(members, seg)
            walk.unions.append(_Union(at=len(path), member=tp, union=bare))
            i += 1
            continue
        path.append(seg)
        i += 1
        origin = typing.get_origin(bare)
        if isinstance(bare, type) and issubclass(bare, BaseModel):
            walk.owner = bare
            found = _fields(bare).get(str(seg))
            tp = found[1] if found else Any
        elif origin in (list, tuple):
            tp = typing.get_args(bare)[0] if typing.get_args(bare) else Any
        elif origin is dict:
            key_tp, value_tp = typing.get_args(bare) or (Any, Any)
            tp = key_tp if i < len(loc) and loc[i] == "[key]" else value_tp
        else:
            tp = Any
    walk.path = tuple(path)
    walk.annotation = tp
    return walk


def _required(model: type[BaseModel]) -> list[str]:
    return [alias for alias, (_, _, info) in _fields(model).items() if info.is_required()]


def describe(tp: Any) -> str:
    """What a type asks for, in words: ``a duration like 30s...``, ``one of a, b``."""
    if typing.get_origin(tp) is Annotated:
        for meta in typing.get_args(tp)[1:]:
            if isinstance(meta, FieldInfo) and meta.description:
                text = meta.description.split(" (")[0]
                return text[0].lower() + text[1:]
        return describe(typing.get_args(tp)[0])
    if _is_union(tp):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return describe(members[0])
        if all(_is_model(m) for m in members):
            keys = [" and ".join(f"`{k}:`" for k in _required(_strip(m))) for m in members]
            return "a mapping with one of: " + ", ".join(k for k in keys if k)
        return " or ".join(dict.fromkeys(describe(m) for m in members))
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        required = _required(tp)
        if required:
            return "a mapping with " + ", ".join(f"`{k}:`" for k in required)
        some = ", ".join(f"`{k}:`" for k in list(_fields(tp))[:3])
        return f"a mapping of keys like {some}"
    return _WORDS.get(typing.get_origin(tp) or tp, "something else")


# ------------------------------------------------------------------ from errors to problems


@dataclass(slots=True)
class _Item:
    error: ErrorDetails
    walk: _Walk
    synthetic: str | None = None  # words for a collapsed union: "must be X or Y", a hint
    value: Any = None  # the value a collapsed union got


def lookup(data: Any, path: DocPath) -> Any:
    for part in path:
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_list or (isinstance(data, dict) and part in data)):
            return None
        data = data[part]
    return data


def _collapse(items: list[_Item], data: Any, depth: int = 0) -> list[_Item]:
    """Keep, for each union, only the errors of the alternative the input was meant as."""
    out = [it for it in items if len(it.walk.unions) <= depth]
    groups: dict[DocPath, list[_Item]] = defaultdict(list)
    for it in items:
        if len(it.walk.unions) > depth:
            groups[it.walk.path[: it.walk.unions[depth].at]].append(it)
    for at, group in groups.items():
        value = lookup(data, at)
        union = group[0].walk.unions[depth].union
        models = [it for it in group if _is_model(it.walk.unions[depth].member)]
        others = [it for it in group if not _is_model(it.walk.unions[depth].member)]
        if isinstance(value, dict) and models:
            chosen = _best_model(models, value, depth)
            if chosen is None:
                out.extend(_unknown_keys(group[0], at, value, models, depth))
                continue
            out.extend(_collapse(chosen, data, depth + 1))
            continue
        meaningful = [it for it in others if not _is_type_error(it.error["type"])]
        if not isinstance(value, dict) and meaningful:
            out.extend(_collapse(meaningful, data, depth + 1))
            continue
        # An alternative that took the mapping or list and failed on an item inside it
        # (`params: {Valor: 1670}`) is the one meant: report that item.
        inside = [it for it in others if len(it.walk.path) > len(at)]
        if isinstance(value, dict | list) and inside:
            out.extend(_collapse(inside, data, depth + 1))
            continue
        words = f"must be {describe(union)}"
        out.append(_Item(error=group[0].error, walk=_Walk(path=at), synthetic=words, value=value))
    return out


def _best_model(models: list[_Item], value: dict[str, Any], depth: int) -> list[_Item] | None:
    by_member: dict[int, list[_Item]] = defaultdict(list)
    for it in models:
        by_member[id(it.walk.unions[depth].member)].append(it)

    def score(group: list[_Item]) -> tuple[int, int]:
        model = _strip(group[0].walk.unions[depth].member)
        return (len(set(value) & set(_fields(model))), -len(group))

    best = max(by_member.values(), key=score)
    return best if score(best)[0] > 0 else None


def _unknown_keys(
    first: _Item, at: DocPath, value: dict[str, Any], models: list[_Item], depth: int
) -> list[_Item]:
    """No alternative knows any key given: point at each key, suggesting from all of them."""
    known = {a for it in models for a in _fields(_strip(it.walk.unions[depth].member))}
    if not value:
        union = first.walk.unions[depth].union
        words = f"must be {describe(union)}"
        return [_Item(error=first.error, walk=_Walk(path=at), synthetic=words, value=value)]
    out = []
    for key in value:
        hint = did_you_mean(key, known) or "; use " + ", ".join(f"`{k}`" for k in sorted(known))
        error: ErrorDetails = {"type": "extra_forbidden", "loc": (), "msg": "", "input": None}
        out.append(_Item(error=error, walk=_Walk(path=(*at, key)), synthetic=hint))
    return out


def problems_from_validation(
    exc: ValidationError,
    model: type[BaseModel],
    data: Any,
    source_map: SourceMap,
    *,
    describer: Describer,
    prefix: DocPath = (),
    secret: Callable[[DocPath], bool] = lambda path: False,
) -> list[Problem]:
    """Every error of ``exc`` (raised validating ``model`` from the document value at
    ``prefix``) as a ``Problem`` positioned through ``source_map``, sorted by position."""
    items = [_Item(error=e, walk=_walk(model, tuple(e["loc"]))) for e in exc.errors()]
    value = lookup(data, prefix)
    problems: dict[tuple[str, int, int], Problem] = {}
    for it in _collapse(items, value):
        path = (*prefix, *it.walk.path)
        message, at_key = _message(it, path, describer, secret(path))
        kind = it.error["type"]
        if kind == "missing" and it.synthetic is None:
            path = path[:-1]  # point at the mapping that lacks the key
        elif kind in ("value_error", "assertion_error"):
            # A whole mapping is wrong (a step with two kinds): point at its key.
            at_key = isinstance(lookup(value, it.walk.path), dict)
        problem = source_map.problem(path, message, at_key=at_key)
        problems.setdefault((message, problem.line or 0, problem.column or 0), problem)
    return sorted(problems.values(), key=lambda p: (p.line or 0, p.column or 0))


def _message(it: _Item, path: DocPath, d: Describer, secret: bool) -> tuple[str, bool]:
    """The words for one error and whether it points at the key (not the value)."""
    error, walk = it.error, it.walk
    kind, ctx = error["type"], error.get("ctx") or {}
    name = d.name(path)
    got = "" if secret else f"; got {show(error.get('input'))}"
    if kind == "extra_forbidden":
        key, parent = str(path[-1]), path[:-1]
        allowed = list(_fields(walk.owner)) if walk.owner else []
        hint = it.synthetic or _belongs_under(key, walk.owner) or did_you_mean(key, allowed)
        if not hint and allowed:
            hint = "; use " + ", ".join(f"`{a}`" for a in allowed)
        return f"unknown key `{key}` {d.where(parent)}".rstrip() + hint, True
    if it.synthetic is not None:
        empty = isinstance(it.value, dict) and not it.value
        shown = "an empty mapping" if empty else show(it.value)
        return f"{name} {it.synthetic}" + ("" if secret else f"; got {shown}"), False
    if kind == "missing":
        key, parent = str(path[-1]), path[:-1]
        info = _fields(walk.owner).get(key) if walk.owner else None
        about = (
            f" ({info[2].description[0].lower()}{info[2].description[1:]})"
            if (info and info[2].description)
            else ""
        )
        return f"missing key `{key}` {d.where(parent)}".rstrip() + about, True
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        hint = PATTERN_HINTS.get(pattern, f"text matching {pattern}")
        if walk.is_key:
            unaccented = _unaccented(str(path[-1]), pattern) + _spaced_id(str(path[-1]))
            said = f"`{path[-1]}` {d.where(path[:-1])} is not {hint}".replace("  ", " ")
            return said + unaccented, True
        return f"{name} must be {hint}{got}{_unaccented(error.get('input'), pattern)}", False
    if kind == "literal_error":
        options = [str(o) for o in typing.get_args(_strip(walk.annotation))]
        value = error.get("input")
        hint = "" if secret or not isinstance(value, str) else did_you_mean(value, options)
        return f"{name} must be {describe(_strip(walk.annotation))}{got}{hint}", False
    if kind == "string_type" and isinstance(error.get("input"), int | float):
        if secret:  # a numeric password or token: say what to do, never echo it
            return f"{name} must be text; write it in quotes", False
        return f'{name} must be text; write it in quotes: "{error.get("input")}"', False
    if _is_type_error(kind):
        return f"{name} must be {describe(walk.annotation)}{got}", False
    if kind in ("value_error", "assertion_error"):
        said = str(ctx.get("error") or error["msg"])
        leaks = secret and str(error.get("input")) in said
        return (f"{name} is not valid" if leaks else f"{name}: {said}"), False
    return f"{name} {_limit_words(kind, ctx) or error['msg']}", False


def _belongs_under(key: str, owner: type[BaseModel] | None) -> str:
    """``"; it goes under `rules:`"`` when ``key`` is a key of one of ``owner``'s
    mappings (`valid_for` written beside `send:` instead of under `rules:`)."""
    for alias, (_, annotation, _) in _fields(owner).items() if owner else ():
        inner = _strip(annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and key in _fields(inner):
            return f"; it goes under `{alias}:`"
    return ""


def _unaccented(value: Any, pattern: str) -> str:
    """``"; write `confirmacao`"`` when ``value`` matches ``pattern`` without its accents."""
    if not isinstance(value, str):
        return ""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return f"; write `{folded}`" if folded != value and re.match(pattern, folded) else ""


def _spaced_id(key: str) -> str:
    """``"; an id in an event has no spaces: ..."`` for ``button.Pagar agora``: the
    button's own id may have spaces, but an event naming it cannot."""
    kind, dot, wanted = key.partition(".")
    if not dot or kind not in ("button", "choice") or not any(c.isspace() for c in wanted):
        return ""
    what = "button" if kind == "button" else "list row"
    joined = "_".join(wanted.split())
    return f"; an id in an event has no spaces: give the {what} an id like `{joined}`"


def _limit_words(kind: str, ctx: Mapping[str, Any]) -> str | None:
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length")
        return "must not be empty" if least == 1 else f"needs at least {least} items"
    if kind == "too_long":
        return f"has too many items; at most {ctx.get('max_length')} are allowed"
    if kind == "string_too_long":
        return f"is too long; at most {ctx.get('max_length')} characters"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}"
    return None


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone (with a did-you-mean), or None when it is."""
    if is_iana_zone(name):
        return None
    hint = did_you_mean(name, iana_zones())
    return f"`{name}` is not a time zone{hint or '; use an IANA name like America/Sao_Paulo'}"
