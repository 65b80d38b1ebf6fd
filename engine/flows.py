"""The flows an engine serves: the current file of each flow, and every pinned version.

Runs are pinned to the version (content hash) they started with; editing a flow
file never changes a run in flight. Versions are saved in the store so any engine
process, after any restart, can load the exact file a run started with.

``reload`` reads the flow files again (``disparo serve`` does on SIGHUP): new runs
start on the new versions, runs in flight keep theirs. A reload with any problem
changes nothing: the engine goes on serving the flows it had.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import NotFound
from engine.flow.loader import LoadedFlow, load_flow_text, load_flows
from engine.flow.validate import FlowCheck
from storage.base import Store


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload changed, by flow name."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (
                ("added", self.added),
                ("changed", self.changed),
                ("removed", self.removed),
            )
            if names
        ]
        return "; ".join(parts) or "no flow changed"


class FlowCatalog:
    def __init__(
        self, store: Store, directory: Path, *, providers: Mapping[str, object] | None = None
    ) -> None:
        self.store = store
        self.directory, self.providers = directory, providers
        self.current: dict[str, LoadedFlow] = {}
        self._versions: dict[tuple[str, str], LoadedFlow] = {}

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
        loaded = load_flow_text(source, f"{name}@{version}.yaml")
        self._versions[(name, version)] = loaded
        return loaded
