"""PostgreSQL connection loss: the store says StoreUnavailable and recovers by itself.

Only this test's own connections are cut: its store names itself with a unique
``application_name`` (terminated with ``pg_terminate_backend``), or it talks to the
server through a local TCP relay the test can stop and start (an unreachable
database, then one that is back). The shared server is never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from engine.errors import DisparoError, StoreUnavailable
from engine.models import ContactUpsert, NewEvent
from storage.base import Commit
from storage.postgres import PostgresStore
from tests.contract.store_kit import NOW

pytestmark = pytest.mark.postgres


def with_query(dsn: str, **params: str) -> str:
    parts = urlsplit(dsn)
    query = [*parse_qsl(parts.query), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def log(n: int) -> Commit:
    return Commit(now=NOW, events=[NewEvent(kind="test", at=NOW, data={"n": n})])


async def terminate(dsn: str, application_name: str) -> int:
    admin = await asyncpg.connect(dsn)
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            application_name,
        )
    finally:
        await admin.close()
    return killed


@pytest.fixture
async def named(postgres_dsn: str) -> AsyncIterator[tuple[PostgresStore, str]]:
    name = f"disparo-test-{uuid.uuid4().hex[:8]}"
    store = PostgresStore(with_query(postgres_dsn, application_name=name))
    await store.migrate()
    await store.open()
    try:
        yield store, name
    finally:
        await store.close()


async def test_terminated_connections_are_replaced_on_the_next_call(
    named: tuple[PostgresStore, str], postgres_dsn: str
) -> None:
    store, name = named
    await store.upsert_contact(ContactUpsert(id="c1"), NOW)
    await asyncio.gather(store.ping(), store.get_contact("c1"), store.commit(log(0)))

    assert await terminate(postgres_dsn, name) >= 1

    outcomes = []
    for call in (store.ping(), store.get_contact("c1"), store.commit(log(1))):
        try:
            outcomes.append(await call)
        except StoreUnavailable as exc:
            outcomes.append(exc)
    # Whatever the first calls met, the pool has reconnected by now.
    await store.ping()
    assert await store.get_contact("c1") is not None
    await store.commit(log(2))
    stored = {e.data["n"] for e in await store.list_events()}
    assert {0, 2} <= stored
    if not isinstance(outcomes[2], StoreUnavailable):
        assert 1 in stored  # acknowledged, so durable


async def test_writes_racing_terminations_never_leak_a_driver_error(
    named: tuple[PostgresStore, str], postgres_dsn: str
) -> None:
    store, name = named
    acknowledged: list[int] = []
    failures: list[BaseException] = []

    async def writer(first: int) -> None:
        for n in range(first, first + 40):
            try:
                await store.commit(log(n))
                await store.list_events(limit=1)
                acknowledged.append(n)
            except DisparoError as exc:
                failures.append(exc)

    async def cutter() -> None:
        for _ in range(5):
            await asyncio.sleep(0.02)
            await terminate(postgres_dsn, name)

    results = await asyncio.gather(
        *(writer(k * 1000) for k in range(8)), cutter(), return_exceptions=True
    )

    assert [r for r in results if r is not None] == []  # nothing but DisparoError escaped
    assert all(isinstance(exc, StoreUnavailable) for exc in failures), failures
    assert len(acknowledged) > 0
    stored = {e.data["n"] for e in await store.list_events(limit=10_000)}
    assert set(acknowledged) <= stored  # every acknowledged write is there


class Relay:
    """A TCP relay to the PostgreSQL server that the test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one (the server is gone)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        sink.transport.abort()
        self._writers.discard(sink)


async def test_an_unreachable_database_is_unavailable_until_it_is_back(
    postgres_dsn: str,
) -> None:
    parts = urlsplit(postgres_dsn)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await relay.start()
    through = urlunsplit(parts._replace(netloc=f"postgres:s3cret@127.0.0.1:{relay.port}"))
    store = PostgresStore(through)
    try:
        await store.migrate()
        await store.open()
        await store.upsert_contact(ContactUpsert(id="c1"), NOW)

        await relay.stop()
        down = []
        for call in (store.ping(), store.get_contact("c1"), store.commit(log(1))):
            with pytest.raises(StoreUnavailable) as raised:
                await call
            down.append(str(raised.value))

        await relay.start()  # same port: the database is back
        await store.ping()
        contact = await store.get_contact("c1")
        await store.commit(log(2))
    finally:
        await store.close()
        await relay.stop()

    assert all(f"127.0.0.1:{relay.port}" in message for message in down), down
    assert not any("s3cret" in message for message in down)
    assert contact is not None
