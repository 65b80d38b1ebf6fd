"""An in-process engine on a virtual clock, a SQLite file and the sandbox providers,
with the example flows: what the integration tests drive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.clock import VirtualClock
from engine.models import ContactEvent, ContactUpsert, Message, Run
from engine.runtime import Engine, open_store
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # 10:00 in São Paulo, a Monday


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    providers = {
        "sandbox": {
            "type": "sandbox",
            "delivered_after": "1s",
            "read_after": "5s",
            "fail_suffix": "0000",
        },
        "sandbox_sms": {
            "type": "sandbox",
            "channels": ["sms"],
            "delivered_after": "2s",
            "read_after": None,
            "fail_suffix": "0000",
        },
    }
    for name, change in overrides.pop("provider_changes", {}).items():
        providers[name] = {**providers[name], **change}
    data: dict[str, Any] = {
        "storage": f"sqlite:///{tmp_path / 'disparo.db'}",
        "api_token": "test-token-0123456789",
        "timezone": "America/Sao_Paulo",
        "flows": overrides.pop("flows", ROOT / "flows"),
        "templates": ROOT / "config" / "templates.yaml",
        "providers": providers,
        **overrides,
    }
    return Settings.model_validate(data)


def settings_with_flows(
    tmp_path: Path, *flows: str, providers: dict[str, Any] | None = None, **overrides: Any
) -> Settings:
    """``settings_for`` with a flows folder of its own holding ``flows`` (each file
    named after its ``flow:``) and, added to the sandboxes, the parsed ``providers``."""
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    for text in flows:
        name = text.split("\n", 1)[0].removeprefix("flow: ").strip()
        (folder / f"{name}.yaml").write_text(text)
    settings = settings_for(tmp_path, flows=folder, **overrides)
    if not providers:
        return settings
    return settings.model_copy(update={"providers": {**settings.providers, **providers}})


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (up to about 2 s) for what a running engine's own tasks do; the store's
    commits complete on a thread, so yielding once to the loop is not enough."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


class Harness:
    def __init__(self, engine: Engine, clock: VirtualClock) -> None:
        self.engine = engine
        self.clock = clock

    async def start(
        self,
        flow: str,
        contact: str = "c-1",
        *,
        phone: str = "+5511999998888",
        name: str | None = "Maria Souza",
        context: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Run:
        run, _ = await self.engine.start_run(
            flow,
            ContactUpsert(id=contact, phone=phone, name=name),
            context=context,
            idempotency_key=key,
        )
        await self.engine.settle()
        return run

    async def advance(self, delta: timedelta) -> None:
        await self.engine.run_until(self.clock.now() + delta)

    async def event(self, type_: str, contact: str = "c-1", **fields: Any) -> None:
        await self.engine.ingest_contact_events(
            [ContactEvent(type=type_, at=self.clock.now(), contact_id=contact, **fields)]
        )
        await self.engine.settle()

    async def run(self, run_id: str) -> Run:
        return await self.engine.get_run(run_id)

    async def messages(self, run_id: str) -> list[Message]:
        found = await self.engine.store.list_run_messages(run_id)
        return sorted(found, key=lambda m: (m.created_at, m.step_seq))

    async def kinds(self, run_id: str) -> list[str]:
        events = await self.engine.store.list_events(run_id=run_id, limit=10_000)
        return [e.kind for e in sorted(events, key=lambda e: e.id)]

    async def decisions(self, run_id: str) -> list[dict[str, Any]]:
        events = await self.engine.store.list_events(run_id=run_id, limit=10_000)
        return [dict(e.data) for e in sorted(events, key=lambda e: e.id) if e.kind == "decision"]


@asynccontextmanager
async def harness(settings: Settings, at: datetime = START) -> AsyncIterator[Harness]:
    migrating = open_store(settings.storage)
    await migrating.migrate()
    await migrating.close()
    clock = VirtualClock(at)
    async with Engine(settings, clock=clock, run_loop=False) as engine:
        yield Harness(engine, clock)


@asynccontextmanager
async def running_engine(
    settings: Settings, at: datetime = START
) -> AsyncIterator[tuple[Engine, VirtualClock]]:
    """An engine whose dispatcher loop and heartbeat run by themselves (no triggers)."""
    migrating = open_store(settings.storage)
    await migrating.migrate()
    await migrating.close()
    clock = VirtualClock(at)
    async with Engine(settings, clock=clock, run_loop=True, triggers=False) as engine:
        yield engine, clock


@asynccontextmanager
async def two_engines(
    settings: Settings, at: datetime = START
) -> AsyncIterator[tuple[Engine, Engine, VirtualClock]]:
    """Two engines on one store and one virtual clock, as two processes would be;
    neither runs its loop: the test drives ``dispatcher.process_due`` of each."""
    migrating = open_store(settings.storage)
    await migrating.migrate()
    await migrating.close()
    clock = VirtualClock(at)
    async with (
        Engine(settings, clock=clock, run_loop=False) as one,
        Engine(settings, clock=clock, run_loop=False) as two,
    ):
        yield one, two, clock
