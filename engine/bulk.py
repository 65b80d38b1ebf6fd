"""``disparo trigger``: start a flow for every contact of a CSV file.

Two readings of the file, never the whole file in memory: the first checks every
row and reports every problem at once (nothing is started when there is one); the
second starts the runs through the store's bulk path (``Store.start_runs``, as
triggers do), a batch of rows per transaction: each batch writes the contacts of
the rows that start and, per row, the run (not yet entered) and its START due-work
row. Each row's idempotency key (``engine.bulk_csv``) makes a rerun of the same
file start nothing new, so a rerun is also how to finish a trigger a store failure
interrupted. A row whose key started a run before, or whose contact is already in
an open run of a one-at-a-time flow, writes nothing, its contact included.

The engine runs no dispatcher here: the runs are durably in the store, and the
serving process (``disparo serve``) enters each run's first step (queues its first
message) when its dispatcher claims the run's START row, as with sweeps, then
sends it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from engine.bulk_csv import ContactRow, ContactsFile, RowProblem
from engine.errors import StoreError, UserInputError
from engine.run_start import START_CONTEXT
from engine.runtime import Engine
from engine.triggers_start import bulk_start
from engine.wording import counted

# Rows started per transaction: one fsync shared by many rows, while a batch stays a
# few milliseconds of work for the store.
BATCH = 1000
# What the runs' ``run.started`` events (and refusals) name as their trigger.
TRIGGER = "csv"


class ContactsFileError(UserInputError):
    """The contacts file has problems; every one of them, sorted by line."""

    def __init__(self, name: str, problems: list[RowProblem]) -> None:
        self.name = name
        self.row_problems = sorted(problems, key=lambda p: p.line)
        super().__init__(f"{counted(len(problems), 'problem')} in {name}")

    def __str__(self) -> str:
        lines = [p.render(self.name) for p in self.row_problems]
        lines.append(
            f"{counted(len(self.row_problems), 'problem')} in {self.name}; nothing was started"
        )
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedFile:
    """What the checking reading learnt: rows to start and lines that repeat a row."""

    rows: int
    repeated: frozenset[int]
    stamp: tuple[int, int]  # size and mtime: the file must not change before starting


@dataclass(slots=True, kw_only=True)
class TriggerTally:
    started: int = 0
    already_running: int = 0  # the contact has an open run of this one-at-a-time flow
    triggered_before: int = 0  # the row's idempotency key already started a run
    repeated: int = 0  # the row repeats an earlier row of the file

    @property
    def skipped_duplicates(self) -> int:
        return self.triggered_before + self.repeated

    def summary(self) -> str:
        return (
            f"started {self.started}, already running {self.already_running}, "
            f"skipped duplicates {self.skipped_duplicates} "
            f"({self.triggered_before} triggered before, {self.repeated} repeated in the file)"
        )


def check_contacts(
    contacts: ContactsFile, on_progress: Callable[[int], None] | None = None
) -> CheckedFile:
    """Read the whole file once; raise ``ContactsFileError`` with every problem in it.

    Two rows with the same identity for the same contact are one row (the later
    ones are ``repeated``), unless their data differ: an ``idempotency_key`` reused
    for different data is a problem.
    """
    stamp = _stamp(contacts.path)
    problems: list[RowProblem] = []
    first_seen: dict[bytes, tuple[int, str]] = {}
    repeated: set[int] = set()
    rows = 0
    for index, item in enumerate(contacts.rows()):
        if on_progress is not None and index % 1000 == 0:
            on_progress(contacts.bytes_read)
        if isinstance(item, RowProblem):
            problems.append(item)
            continue
        identity = f"{item.contact.id}\x00{item.identity}".encode()
        key = hashlib.blake2b(identity, digest_size=16).digest()
        earlier = first_seen.get(key)
        if earlier is None:
            first_seen[key] = (item.line, item.digest)
            rows += 1
        elif earlier[1] == item.digest:
            repeated.add(item.line)
        else:
            problems.append(
                RowProblem(
                    line=item.line,
                    column="idempotency_key",
                    message=f"line {earlier[0]} has the same key for contact {item.contact.id} "
                    "with other data; give each row its own key or delete one of them",
                )
            )
    if on_progress is not None:
        on_progress(contacts.bytes_read)
    if problems:
        raise ContactsFileError(contacts.name, problems)
    return CheckedFile(rows=rows, repeated=frozenset(repeated), stamp=stamp)


async def start_runs(
    engine: Engine,
    flow: str,
    contacts: ContactsFile,
    checked: CheckedFile,
    on_done: Callable[[int], None] | None = None,
) -> TriggerTally:
    """Start ``flow`` for every row ``check_contacts`` accepted, a batch per transaction.

    Rows start in file order; ``on_done`` gets the number of rows of each batch done.
    """
    if _stamp(contacts.path) != checked.stamp:
        raise UserInputError(
            f"{contacts.name} changed while it was being checked; nothing was started; "
            "run the command again"
        )
    loaded = engine.catalog.latest(flow)
    tally = TriggerTally(repeated=len(checked.repeated))
    for batch in _batches(contacts, checked):
        starts = bulk_start(
            loaded,
            TRIGGER,
            [
                (
                    row.contact.id,
                    row.idempotency_key(flow),
                    {START_CONTEXT: row.contact.context} if row.contact.context else {},
                )
                for row in batch
            ],
            now=engine.clock.now(),
            contacts=[row.contact for row in batch],
        )
        try:
            result = await engine.store.start_runs(starts)
        except StoreError as error:
            raise type(error)(
                f"{error}; {tally.started} run(s) were started before that; run the same "
                "command again to start the rest (rows already started are skipped)"
            ) from error
        tally.started += result.started
        tally.triggered_before += result.existing
        # The key holds flow and contact, so a refusal is a contact already in an open
        # run of a one-at-a-time flow (recorded as an event, once per key).
        tally.already_running += len(result.already_active)
        if result.started:
            engine.metrics.child(engine.metrics.runs, flow, "started").inc(result.started)
            engine.dispatcher.notify()
        if on_done is not None:
            on_done(len(batch))
    return tally


def _batches(contacts: ContactsFile, checked: CheckedFile) -> Iterator[list[ContactRow]]:
    batch: list[ContactRow] = []
    for item in contacts.rows():
        if isinstance(item, RowProblem):
            raise UserInputError(
                f"{contacts.name} changed while runs were being started "
                f"({item.render(contacts.name)}); fix it and run the command again: "
                "rows already started are skipped"
            )
        if item.line in checked.repeated:
            continue
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def trigger(
    engine: Engine, flow: str, path: Path, *, name: str | None = None, progress: bool = True
) -> TriggerTally:
    """Check ``path`` entirely, then start ``flow`` for each of its rows.

    ``progress`` draws rich progress bars on stderr when it is a terminal.
    """
    engine.catalog.latest(flow)  # an unknown flow is an input error before any reading
    contacts, size = _open_contacts(path, name)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (progress and console.is_terminal),
    ) as bars:
        checking = bars.add_task(f"checking {contacts.name}", total=size or 1)
        try:
            checked = await asyncio.to_thread(
                check_contacts, contacts, lambda done: bars.update(checking, completed=done)
            )
        except OSError as exc:
            raise UserInputError(f"{contacts.name}: cannot be read ({exc.strerror})") from None
        starting = bars.add_task("starting runs", total=checked.rows or 1)
        tally = await start_runs(
            engine, flow, contacts, checked, lambda done: bars.advance(starting, done)
        )
        bars.update(starting, completed=checked.rows or 1)
    return tally


def _open_contacts(path: Path, name: str | None) -> tuple[ContactsFile, int]:
    if not path.is_file():
        what = "this is a folder" if path.is_dir() else "no such file"
        raise UserInputError(f"{name or path}: {what}; pass --contacts PATH to a CSV file")
    return ContactsFile(path, name), path.stat().st_size


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns
