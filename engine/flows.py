"""The flows an engine serves: the current file of each flow, and every pinned version.

Runs are pinned to the version (content hash) they started with; editing a flow
file never changes a run in flight. Versions are saved in the store so any engine
process, after any restart, can load the exact file a run started with.

``reload`` reads the flow files again (``disparo serve`` does on SIGHUP): new runs
start on the new versions, runs in flight keep theirs. A reload with any problem
changes nothing: the engine goes on serving the flows it had.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import NotFound, Problem, UserInputError
from engine.flow.loader import LoadedFlow, load_flows, load_stored_flow_text, read_flows
from engine.flow.model import Flow
from engine.flow.validate import FlowCheck
from engine.wording import counted
from storage.base import Store

log = logging.getLogger("disparo.flows")


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload changed: flows by name, and templates of the catalogue by name."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    templates_added: list[str] = field(default_factory=list)
    templates_changed: list[str] = field(default_factory=list)
    templates_removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        flows = _changes(self.added, self.changed, self.removed) or "no flow changed"
        templates = _changes(self.templates_added, self.templates_changed, self.templates_removed)
        return f"{flows}; templates: {templates}" if templates else flows


def _changes(added: list[str], changed: list[str], removed: list[str]) -> str:
    parts = [
        f"{what} {', '.join(names)}"
        for what, names in (("added", added), ("changed", changed), ("removed", removed))
        if names
    ]
    return "; ".join(parts)


def warn_left_out(problems: list[Problem]) -> None:
    """One warning per flow file ``FlowCatalog.load_readable`` left out."""
    by_file: dict[str, list[Problem]] = {}
    for problem in problems:
        by_file.setdefault(problem.file or "the store", []).append(problem)
    for file, found in by_file.items():
        log.warning(
            "%s is left out (%s; `disparo check` lists them); this command goes on with "
            "the store and the flows that load. First: %s",
            file,
            counted(len(found), "problem"),
            found[0],
        )


class FlowCatalog:
    def __init__(
        self, store: Store, directory: Path, *, providers: Mapping[str, object] | None = None
    ) -> None:
        self.store = store
        self.directory, self.providers = directory, providers
        self.current: dict[str, LoadedFlow] = {}
        self._versions: dict[tuple[str, str], LoadedFlow] = {}
        # Problems today's checks find in pinned versions an earlier release accepted.
        self.tolerated: dict[tuple[str, str], list[Problem]] = {}

    @classmethod
    async def load(
        cls,
        store: Store,
        directory: Path,
        *,
        providers: Mapping[str, object] | None = None,
        checks: Iterable[FlowCheck] = (),
    ) -> FlowCatalog:
        """Load every flow file under ``directory`` and save its version in the store.

        A flow with any problem (``providers`` and ``checks`` included) stops the load:
        the engine never serves a flow that would fail at send time."""
        catalog = cls(store, directory, providers=providers)
        await catalog.reload(checks)
        return catalog

    @classmethod
    async def load_readable(
        cls, store: Store, directory: Path
    ) -> tuple[FlowCatalog, list[Problem]]:
        """For a command that reads the store (``why``, ``export``, ``erase``,
        ``purge``): the flow files that load, and the problems of those that do not,
        which are left out; then every version open runs are pinned to, from the
        store. Nothing is checked against providers or the template catalogue, and
        nothing is saved: such a command works while a flow file is mid-edit."""
        flows, problems = read_flows(directory)
        catalog = cls(store, directory)
        catalog.current = flows
        for loaded in flows.values():
            catalog._versions[(loaded.flow.flow, loaded.version)] = loaded
        for flow, version in await store.open_run_versions():
            try:
                await catalog.pinned(flow, version)
            except (NotFound, UserInputError) as exc:
                problems.append(Problem(message=f"open runs of {flow} version {version}: {exc}"))
        return catalog, problems

    def every_version(self) -> list[Flow]:
        """Every flow version in memory: the current ones and those pinned ones read."""
        return [loaded.flow for loaded in self._versions.values()]

    async def reload(self, checks: Iterable[FlowCheck]) -> Reloaded:
        """Read the flow files again, checked with ``checks``. Raises ``FlowError``
        (every problem, changing nothing) when one is invalid."""
        flows = load_flows(self.directory, providers=self.providers, extra_checks=checks)
        for loaded in flows.values():
            await self.store.save_flow_version(loaded.flow.flow, loaded.version, loaded.source)
        before = {name: loaded.version for name, loaded in self.current.items()}
        for loaded in flows.values():
            self._versions[(loaded.flow.flow, loaded.version)] = loaded
        self.current = flows
        return Reloaded(
            added=sorted(set(flows) - set(before)),
            changed=sorted(n for n in flows if n in before and flows[n].version != before[n]),
            removed=sorted(set(before) - set(flows)),
        )

    def latest(self, name: str) -> LoadedFlow:
        try:
            return self.current[name]
        except KeyError:
            known = ", ".join(sorted(self.current)) or "none"
            raise NotFound(f"flow {name!r} is not loaded; loaded flows: {known}") from None

    def cached(self, name: str, version: str) -> LoadedFlow | None:
        """The flow version if it is in memory already (no store read), else None."""
        return self._versions.get((name, version))

    async def pinned(self, name: str, version: str) -> LoadedFlow:
        """The exact flow file a run started with."""
        cached = self._versions.get((name, version))
        if cached is not None:
            return cached
        source = await self.store.get_flow_source(name, version)
        if source is None:
            raise NotFound(f"flow {name!r} version {version} is not in the store")
        loaded, problems = load_stored_flow_text(source, f"{name}@{version}.yaml")
        if problems:
            # Its runs started on a release that accepted it: they go on with it.
            self.tolerated[(name, version)] = problems
            log.warning(
                "flow %s version %s, which runs started with, has %s today's checks "
                "find (first: %s); its runs go on with it as the release that started "
                "them read it. `disparo check` the flow file for new runs",
                name,
                version,
                counted(len(problems), "problem"),
                problems[0],
            )
        self._versions[(name, version)] = loaded
        return loaded
