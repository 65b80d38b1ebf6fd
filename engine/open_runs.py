"""What the runs in flight will meet after a reload or a restart.

Each open run is pinned to the flow version it started with, but the template
catalogue and the configured providers are read anew: a template removed or
renamed, a parameter renamed, a provider instance renamed makes the messages of
older versions fail when their step comes. The reload itself cannot tell (it checks
the flow files on disk, which are fine), so ``disparo serve`` checks every version
open runs are pinned to, at start and after each reload, and logs an ERROR per
problem with the number of runs affected; a flow whose file is gone while runs of it
are open gets a WARNING.

The reload is not refused: the catalogue says what the providers have approved now,
and keeping an old one would not make a template the provider deleted come back.
The operator learns which runs are affected at once and restores the entry, lets
those messages fail, or cancels those runs.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from engine.errors import NotFound, Problem, UserInputError
from engine.flow.validate import FlowCheck, validate_flow
from engine.flow_checks import provider_capabilities, template_catalog
from engine.flows import FlowCatalog
from engine.template_catalog import TemplateCatalog
from engine.wording import counted
from providers.base import Capabilities
from storage.base import Store


@dataclass(frozen=True, slots=True)
class OpenRunNotice:
    """One line for the operator: ``level`` is ``logging.ERROR`` or ``WARNING``."""

    level: int
    text: str


async def open_run_notices(
    store: Store,
    flows: FlowCatalog,
    *,
    templates: TemplateCatalog | None,
    capabilities: Mapping[str, Capabilities],
    removed: Collection[str] = (),
) -> list[OpenRunNotice]:
    """Each problem the versions open runs are pinned to have with the current
    catalogue and providers, and each flow no file defines any more while runs of it
    are open (``removed``: the flows the reload just took away, said even without
    open runs). The current version of each flow passed these checks when it loaded."""
    versions = await store.open_run_versions()
    per_flow: Counter[str] = Counter()
    for (flow, _), runs in versions.items():
        per_flow[flow] += runs
    notices = [
        OpenRunNotice(logging.WARNING, _gone(flow, per_flow[flow], flow in removed))
        for flow in sorted(set(per_flow) | set(removed))
        if flow not in flows.current
    ]
    checks: list[FlowCheck] = [provider_capabilities(capabilities)]
    if templates is not None:
        checks.append(template_catalog(templates, capabilities))
    for (flow, version), runs in sorted(versions.items()):
        current = flows.current.get(flow)
        if current is not None and current.version == version:
            continue
        who = f"{counted(runs, 'open run')} of {flow} (version {version})"
        try:
            loaded = await flows.pinned(flow, version)
        except (NotFound, UserInputError) as exc:
            notices.append(
                OpenRunNotice(
                    logging.ERROR,
                    f"{who}: the flow version cannot be loaded ({exc}); their next step "
                    "fails. Cancel those runs",
                )
            )
            continue
        tolerated = flows.tolerated.get((flow, version), [])
        if tolerated:
            notices.append(OpenRunNotice(logging.WARNING, _tolerated(who, tolerated)))
        problems = validate_flow(
            loaded.flow,
            loaded.source_map,
            loaded.filename,
            providers=capabilities,
            extra_checks=checks,
        )
        known = {str(problem) for problem in tolerated}
        notices += [
            OpenRunNotice(logging.ERROR, _unfit(who, problem))
            for problem in problems
            if str(problem) not in known
        ]
    return notices


def _tolerated(who: str, problems: list[Problem]) -> str:
    return (
        f"{who} go on with the version they started with, which the release that "
        f"started them accepted; today's checks find {counted(len(problems), 'problem')} "
        f"in it (first: {problems[0].message}). The flow file is what new runs start on"
    )


def _gone(flow: str, runs: int, just_removed: bool) -> str:
    what = (
        f"the reload removed flow {flow} (no flow file defines it now)"
        if just_removed
        else f"flow {flow} is not loaded (no flow file defines it)"
    )
    if not runs:
        return f"{what}; it has no open runs"
    return (
        f"{what}: {counted(runs, 'open run')} of it go on with the version they started "
        "with; no new run of it starts. Put its file back to start it again"
    )


def _unfit(who: str, problem: Problem) -> str:
    parts = (problem.path or "").split(".")
    step = f"step `{parts[1]}`" if len(parts) > 1 and parts[0] == "steps" else "the flow"
    # The file on disk may hold another version now: point into the pinned one.
    where = f"line {problem.line} of that version" if problem.line is not None else "that version"
    return (
        f"{who}, pinned to the version they started with, will fail at {step}: "
        f"{problem.message} ({where}). The template catalogue or the providers changed "
        "since; restore what that version uses, or cancel those runs"
    )
