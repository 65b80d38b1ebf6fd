"""What the provider adapter tests share: a host that must never be asked for
callbacks, one builder of outbound messages, and a factory fixture body that
starts providers and closes every one it started."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from engine.models import Channel, Contact, Content, OutboundMessage


class NoHost:
    """A ProviderHost for adapters that report statuses by webhook only, without a
    store: rate limits and login tokens stay in the provider's memory."""

    provider_state = None

    async def schedule_callback(self, provider: str, delay_seconds: float, body: bytes) -> None:
        raise AssertionError(f"provider {provider} never schedules callbacks")


class EngineClock:
    """Only the clock of a ``ProviderState``: for adapters whose ``start`` reads the
    engine's time and nothing else of its store."""

    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


class ClockHost(NoHost):
    """A host whose store clock reads ``now`` (the engine's clock, not the host's)."""

    def __init__(self, now: datetime) -> None:
        self.provider_state = EngineClock(now)  # type: ignore[assignment]


def outbound(
    content: Content,
    *,
    key: str = "run-1:lembrete:0",
    flow: str = "cobranca",
    step: str = "lembrete",
    channel: Channel = "whatsapp",
    phone: str | None = None,
    email: str | None = None,
    name: str | None = None,
    context: Mapping[str, Any] | None = None,
    hints: Mapping[str, Any] | None = None,
) -> OutboundMessage:
    """One rendered message to contact ``c-1`` of run ``run-1``."""
    return OutboundMessage(
        message_id=f"msg-{key}",
        idempotency_key=key,
        run_id="run-1",
        flow=flow,
        step=step,
        channel=channel,
        contact=Contact(id="c-1", phone=phone, email=email, name=name, context=context or {}),
        content=content,
        hints=hints or {},
    )


class _Closable(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


P = TypeVar("P", bound=_Closable)


@asynccontextmanager
async def started_providers(
    build: Callable[..., P],
) -> AsyncIterator[Callable[..., Awaitable[P]]]:
    """``make(**config)`` builds and starts a provider; all are closed on exit."""
    opened: list[P] = []

    async def make(**config: Any) -> P:
        provider = build(**config)
        await provider.start()
        opened.append(provider)
        return provider

    try:
        yield make
    finally:
        for provider in opened:
            await provider.close()
