"""Group commit and read coalescing for the PostgreSQL store.

Writes: every write unit that is ready in the same event-loop iteration goes to the
server in ONE statement, ``SELECT disparo_apply($1)``, which applies the units in
order, each in its own subtransaction, and commits them together: one round trip
and one WAL flush for the batch instead of one per statement. A unit that fails is
undone alone and its caller gets its error; a deadlock or serialisation failure
puts the unit back in the queue for the next batch (a few times, then
``StoreUnavailable``). If the statement itself fails (connection lost, server shut
down), every unit of the batch gets ``StoreUnavailable``: whether it was stored is
unknown, and callers retry (run keys, fences and dedupe keys make that safe).
Units of one batch come in their callers' order, so before any unit writes,
``disparo_apply`` takes the advisory keys of every contact (due-work row, message
status) the batch writes, ascending (migration 0011): two processes' batches
writing the same contacts wait for each other only there, never in a cycle.
At most ``max_batches`` batches are in flight at once, each with at most
``max_units`` units (more subtransactions per transaction would overflow
PostgreSQL's per-backend subtransaction cache and slow every other session).

Reads: point reads by id (message, run, contact) that arrive in the same iteration
share one ``WHERE id = ANY($1)`` query.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.exceptions import InternalClientError

from engine.errors import DisparoError, StoreError, StoreUnavailable
from storage.postgres_codec import encode_unit
from storage.postgres_pool import Pool, error_for

# Deadlock, serialisation failure: the unit may well pass next time. Not a lock
# timeout (55P03): another session held the lock for all of lock_timeout, and trying
# again at once would hold the next batch up for as long.
_RETRY_STATES = frozenset({"40P01", "40001"})
MAX_TRIES = 5


@dataclass(slots=True)
class BatchStats:
    """Counters of the write path; ``units / batches`` is the group-commit factor."""

    batches: int = 0  # disparo_apply calls that committed
    units: int = 0  # write units (store calls) those batches carried
    largest_batch: int = 0
    failed_units: int = 0  # units undone alone (their caller got the error)
    failed_batches: int = 0  # batches lost whole (every unit got StoreUnavailable)
    retried_units: int = 0  # units put back after a deadlock or serialisation failure

    @property
    def units_per_batch(self) -> float:
        return self.units / self.batches if self.batches else 0.0


class _Unit:
    __slots__ = ("future", "text", "tries")

    def __init__(self, text: str, future: asyncio.Future[Any]) -> None:
        self.text = text
        self.future = future
        self.tries = 0


def _copy(exc: DisparoError) -> DisparoError:
    """A fresh instance per waiter: one exception object raised in many tasks tangles
    their tracebacks."""
    return type(exc)(str(exc))


class GroupCommitter:
    def __init__(
        self, pool: Pool, stats: BatchStats, *, max_units: int = 32, max_batches: int = 2
    ) -> None:
        self._pool = pool
        self.stats = stats
        self._max_units = max_units
        self._max_batches = max_batches
        self._queue: deque[_Unit] = deque()
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def apply(self, unit: Mapping[str, Any]) -> Any:
        """Apply ``unit`` in the next batch; its result once the batch committed.

        ``ValueError`` (nothing queued) when the unit cannot be stored at all.
        """
        text = encode_unit(unit)
        loop = asyncio.get_running_loop()
        item = _Unit(text, loop.create_future())
        self._queue.append(item)
        self._schedule()
        return await item.future

    async def drain(self) -> None:
        """Send what is queued and wait for every batch in flight."""
        while self._queue or self._running:
            self._start()
            if self._running:
                await asyncio.wait(set(self._running))

    # ------------------------------------------------------------------ batches

    def _schedule(self) -> None:
        if not self._scheduled and self._queue and len(self._running) < self._max_batches:
            self._scheduled = True
            # After every callback already ready: writers runnable now join this batch.
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        while self._queue and len(self._running) < self._max_batches:
            batch: list[_Unit] = []
            while self._queue and len(batch) < self._max_units:
                item = self._queue.popleft()
                if not item.future.done():  # its caller was cancelled before it left
                    batch.append(item)
            if batch:
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._running.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._schedule()

    async def _run(self, batch: list[_Unit]) -> None:
        try:
            await self._apply(batch)
        finally:
            for item in batch:  # never leave a caller waiting (cancellation, a bug)
                if not item.future.done() and item not in self._queue:
                    item.future.set_exception(
                        StoreUnavailable(f"the write to {self._pool.where} was interrupted")
                    )

    async def _apply(self, batch: list[_Unit]) -> None:
        try:
            results = await self._send("[" + ",".join(item.text for item in batch) + "]")
        except DisparoError as exc:
            if type(exc) is StoreError and len(batch) > 1:
                # Something in one unit broke the whole statement: find it, alone.
                for item in batch:
                    await self._apply([item])
                return
            self.stats.failed_batches += 1
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(_copy(exc))
            return
        self.stats.batches += 1
        self.stats.units += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                continue
            state = result.get("error") if isinstance(result, dict) else None
            if state is None:
                item.future.set_result(result)
            elif state in _RETRY_STATES and item.tries < MAX_TRIES:
                item.tries += 1
                self.stats.retried_units += 1
                self._queue.append(item)
            else:
                self.stats.failed_units += 1
                item.future.set_exception(
                    error_for(state, result["message"], result.get("constraint"), self._pool.where)
                )
        self._schedule()

    async def _send(self, units: str) -> list[Any]:
        try:
            answer = await self._pool.on_connection(
                lambda connection: connection.fetchval("SELECT disparo_apply($1::jsonb)", units)
            )
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, asyncpg.PostgresConnectionError | InternalClientError):
                raise StoreUnavailable(
                    f"the connection to the PostgreSQL database {self._pool.where} was lost "
                    "during a write, which may or may not have been stored; retry"
                ) from cause
            raise
        results: list[Any] = json.loads(answer)
        return results


class Lookups:
    """Point reads by id share one query: those arriving in the same loop iteration,
    and those arriving while the previous query is out (one in flight at a time, so
    under load each round trip carries every read that queued behind it).

    ``sql`` selects the rows whose ``id`` is in the text array ``$1``.
    """

    def __init__(self, pool: Pool, sql: str) -> None:
        self._pool = pool
        self._sql = sql
        self._waiting: dict[str, list[asyncio.Future[asyncpg.Record | None]]] = {}
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> asyncpg.Record | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[asyncpg.Record | None] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        self._schedule()
        return await future

    async def drain(self) -> None:
        while self._running or self._waiting:
            self._start()
            if self._running:
                await asyncio.wait(set(self._running))

    def _schedule(self) -> None:
        if not self._scheduled and self._waiting and not self._running:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._running or not self._waiting:
            return
        waiting, self._waiting = self._waiting, {}
        task = asyncio.get_running_loop().create_task(self._run(waiting))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._schedule()

    async def _run(self, waiting: dict[str, list[asyncio.Future[asyncpg.Record | None]]]) -> None:
        failure: DisparoError = StoreUnavailable(
            f"the read from {self._pool.where} was interrupted"
        )
        try:
            rows = await self._pool.fetch(self._sql, list(waiting))
        except DisparoError as exc:
            failure = exc
        else:
            found = {row["id"]: row for row in rows}
            for key, futures in waiting.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(key))
        finally:
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(_copy(failure))
