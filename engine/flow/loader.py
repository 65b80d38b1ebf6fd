"""Flow files in, validated flows out, or every problem of the file in one pass.

``load_flow``/``load_flow_text`` read YAML safely (``yaml_source``), validate it
against the model, map each error to a ``Problem`` in plain words at its line and
column (``problems``), then run the cross-step checks (``validate``). When the model
rejects part of the file, the broken parts are set aside and the checks still run on
the rest, so one pass reports the misspelled key *and* the dangling ``next:``. Any
problem raises ``FlowError`` with all of them, sorted by position.

A flow's ``version`` is the first 16 hex digits of the SHA-256 of its text: runs are
pinned to it, and the same text always gives the same version.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.errors import FlowError, Problem
from engine.flow.model import STEP_KINDS, Flow
from engine.flow.problems import Describer, problems_from_validation
from engine.flow.validate import FlowCheck, validate_flow
from engine.flow.yaml_source import (
    DocPath,
    SourceMap,
    YamlDocument,
    YamlSourceError,
    format_path,
    parse_yaml,
    read_yaml,
)
from engine.wording import counted

FLOW_WORDS = Describer(named={"steps": "step"}, inline=frozenset(STEP_KINDS))
_REQUIRED = frozenset({"flow", "start", "steps"})
_SALVAGE_ROUNDS = 5
_ROUTES = ("next", "on", "timeout")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedFlow:
    """A valid flow with the exact text it came from and where each part was written."""

    flow: Flow
    source: str
    version: str
    path: Path | None
    filename: str
    source_map: SourceMap


def flow_version(source: str) -> str:
    """The version runs are pinned to: 16 hex digits of the SHA-256 of the text."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def load_flow(
    path: Path,
    *,
    providers: Mapping[str, object] | None = None,
    extra_checks: Iterable[FlowCheck] = (),
) -> LoadedFlow:
    """Load one flow file; ``FlowError`` lists every problem with file:line:col."""
    try:
        document = read_yaml(path)
    except YamlSourceError as exc:
        raise FlowError(str(exc), exc.problems) from None
    return _load(document, path, providers, extra_checks)


def load_flow_text(
    text: str,
    filename: str,
    *,
    providers: Mapping[str, object] | None = None,
    extra_checks: Iterable[FlowCheck] = (),
) -> LoadedFlow:
    """Load a flow from its text; ``filename`` names it in problems."""
    try:
        document = parse_yaml(text, filename)
    except YamlSourceError as exc:
        raise FlowError(str(exc), exc.problems) from None
    return _load(document, None, providers, extra_checks)


def load_flows(
    directory: Path,
    *,
    providers: Mapping[str, object] | None = None,
    extra_checks: Iterable[FlowCheck] = (),
) -> dict[str, LoadedFlow]:
    """Every ``*.yaml``/``*.yml`` flow directly in ``directory``, by flow name.

    Problems of all files are collected into one ``FlowError``; two files with the
    same ``flow:`` name are an error pointing at the second one.
    """
    if not directory.is_dir():
        problem = _no_directory(directory)
        raise FlowError(str(problem), [problem])
    flows, problems = read_flows(directory, providers=providers, extra_checks=extra_checks)
    if problems:
        raise FlowError(f"{counted(len(problems), 'problem')} in {directory}", problems)
    return flows


def read_flows(
    directory: Path,
    *,
    providers: Mapping[str, object] | None = None,
    extra_checks: Iterable[FlowCheck] = (),
) -> tuple[dict[str, LoadedFlow], list[Problem]]:
    """The flows of ``directory`` that load, and the problems of the files that do
    not (a file with a problem is left out; see ``load_flows``)."""
    if not directory.is_dir():
        return {}, [_no_directory(directory)]
    files = sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )
    checks = tuple(extra_checks)  # used once per file
    flows: dict[str, LoadedFlow] = {}
    problems: list[Problem] = []
    for file in files:
        try:
            loaded = load_flow(file, providers=providers, extra_checks=checks)
        except FlowError as exc:
            problems.extend(exc.problems)
            continue
        name = loaded.flow.flow
        if name in flows:
            problems.append(
                loaded.source_map.problem(
                    ("flow",),
                    f"flow `{name}` is also defined in {flows[name].filename}; "
                    "each flow needs its own name",
                )
            )
            continue
        flows[name] = loaded
    return flows, problems


def load_stored_flow_text(text: str, filename: str) -> tuple[LoadedFlow, list[Problem]]:
    """A flow version runs are pinned to, from the store, and the problems today's
    checks find in it.

    A stored version is one an engine accepted and started runs with. Checks added
    by later releases (a rule written with no value, a zone that is no IANA name)
    must not strand those runs: when the text still makes a flow, it is returned with
    those problems, to be reported; ``FlowError`` only when it makes none.
    """
    try:
        return load_flow_text(text, filename), []
    except FlowError as exc:
        problems = list(exc.problems)
        try:
            document = parse_yaml(text, filename)
            flow = Flow.model_validate(document.data)
        except (YamlSourceError, ValidationError):
            raise exc from None
    loaded = LoadedFlow(
        flow=flow,
        source=document.text,
        version=flow_version(document.text),
        path=None,
        filename=filename,
        source_map=document.source_map,
    )
    return loaded, problems


def _no_directory(directory: Path) -> Problem:
    return Problem(
        message="no such flows directory; check `flows:` in the config", file=str(directory)
    )


def _load(
    document: YamlDocument,
    path: Path | None,
    providers: Mapping[str, object] | None,
    extra_checks: Iterable[FlowCheck],
) -> LoadedFlow:
    where = document.source_map
    filename = where.filename
    if document.data is None:
        problem = Problem(
            message="the file is empty; a flow needs `flow:`, `start:` and `steps:`",
            file=filename,
            line=1,
            column=1,
        )
        raise FlowError(str(problem), [problem])
    extra_checks = tuple(extra_checks)  # used by both passes below
    try:
        flow = Flow.model_validate(document.data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, Flow, document.data, where, describer=FLOW_WORDS)
        salvaged = _salvage(document.data, exc)
        if salvaged is not None:
            flow, set_aside = salvaged
            # A step that lost a part (a button with a bad id) is checked like a stand-in:
            # its references, not its content, which no longer says what was written.
            stand_ins = [str(cut[1]) for cut in set_aside if cut[0] == "steps" and len(cut) > 1]
            checked = validate_flow(
                flow,
                where,
                filename,
                providers=providers,
                extra_checks=extra_checks,
                salvaged=stand_ins,
            )
            leaves = [cut for cut in set_aside if not _is_step(cut)]
            problems += [p for p in checked if not _inside(p, leaves)]
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise FlowError(_summary(filename, problems), problems) from None
    problems = validate_flow(flow, where, filename, providers=providers, extra_checks=extra_checks)
    if problems:
        raise FlowError(_summary(filename, problems), problems)
    return LoadedFlow(
        flow=flow,
        source=document.text,
        version=flow_version(document.text),
        path=path,
        filename=filename,
        source_map=where,
    )


def _summary(filename: str, problems: list[Problem]) -> str:
    return f"{filename}: {counted(len(problems), 'problem')}"


# ------------------------------------------------------------------ salvage


def _salvage(data: Any, exc: ValidationError) -> tuple[Flow, list[DocPath]] | None:
    """The flow without its broken parts, and the parts set aside; None when the
    broken part is the flow's skeleton (``flow``, ``start``, ``steps``).

    A step whose kind is broken becomes a stand-in that keeps its ``next``, ``on``
    and ``timeout``, so references from and to it are still checked. A broken key
    elsewhere is removed; problems found next to a removed key may be artefacts of
    the removal and are dropped by the caller.
    """
    if not isinstance(data, dict):
        return None
    work = copy.deepcopy(data)
    set_aside: list[DocPath] = []
    for _ in range(_SALVAGE_ROUNDS):
        cuts = {_cut_point(_data_path(work, tuple(e["loc"]))) for e in exc.errors()}
        if any(cut is None or (len(cut) == 1 and cut[0] in _REQUIRED) for cut in cuts):
            return None
        # Shorter cuts first, so a cut inside a key already removed is skipped.
        for cut in sorted((c for c in cuts if c is not None), key=len):
            removed = (done for done in set_aside if not _is_step(done))
            if not any(cut[: len(done)] == done for done in removed):
                _set_aside(work, cut)
                set_aside.append(cut)
        try:
            return Flow.model_validate(work), set_aside
        except ValidationError as again:
            exc = again
    return None


def _data_path(data: Any, loc: tuple[str | int, ...]) -> DocPath:
    """The part of a pydantic ``loc`` that exists in the data (drops union tags)."""
    path: list[str | int] = []
    for part in loc:
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_list or (isinstance(data, dict) and part in data):
            data = data[part]
            path.append(part)
    return tuple(path)


def _is_step(cut: DocPath) -> bool:
    return cut[0] == "steps" and len(cut) == 2


def _cut_point(path: DocPath) -> DocPath | None:
    """The part to set aside for an error at ``path`` (for a missing key, the path
    ends at the mapping that lacks it)."""
    first_index = next((i for i, p in enumerate(path) if isinstance(p, int)), None)
    if first_index is not None:
        path = path[:first_index]  # removing a list item would shift the positions of others
    if not path:
        return None
    if path[0] == "steps" and len(path) == 3 and path[2] in STEP_KINDS:
        return path[:2]
    return path


def _set_aside(data: dict[str, Any], cut: DocPath) -> None:
    if _is_step(cut):
        step = data["steps"][cut[1]]
        routes = {k: v for k, v in step.items() if k in _ROUTES} if isinstance(step, dict) else {}
        data["steps"][cut[1]] = {**routes, "wait": "1s"}
        return
    parent: Any = data
    for part in cut[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    if isinstance(parent, dict):
        parent.pop(cut[-1], None)


def _inside(problem: Problem, removed: list[DocPath]) -> bool:
    """Whether a problem sits in the mapping a key was removed from."""
    if problem.path is None:
        return False
    for cut in removed:
        scope = format_path(cut[:-1] if len(cut) > 1 else cut)
        if problem.path == scope or problem.path.startswith((f"{scope}.", f"{scope}[")):
            return True
    return False
