"""The `disparo` command. Exit codes: 0 success, 1 a problem in the user's input,
2 usage error, 3 the engine could not reach its store or a provider, 4 the database
has migrations pending (run `disparo migrate`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli_parser import build_parser
from engine.errors import (
    EXIT_BUG,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_MIGRATE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ConfigError,
    DisparoError,
    NotFound,
    SchemaOutdated,
    StoreError,
    UsageError,
    UserInputError,
)
from engine.wording import counted

if TYPE_CHECKING:  # imported where used: `disparo schema` need not load the engine
    from zoneinfo import ZoneInfo

    from engine.models import Contact, Event
    from engine.runtime import Engine
    from engine.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.command == "serve":
        from engine.early_signals import hold_reloads

        hold_reloads()  # before the engine's imports: a SIGHUP must not end start-up
    commands: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
        "serve": _serve,
        "check": _check,
        "simulate": _simulate,
        "schema": _schema,
        "openapi": _openapi,
        "graph": _graph,
        "why": _why,
        "trigger": _trigger,
        "migrate": _migrate,
        "purge": _purge,
        "erase": _erase,
        "export": _export,
        "status": _status,
    }
    try:
        return asyncio.run(commands[args.command](args))
    except KeyboardInterrupt:
        # Not a success: a script running `disparo trigger ... && ...` must not go on
        # as if the file was done. 130 is what shells give a command Ctrl-C ended.
        # (`serve` stops on SIGINT by itself, and exits 0.)
        print(f"disparo {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`disparo why c-1 | head`): stop quietly. Python would
        # complain again when it flushes stdout at exit, so stdout goes to devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UsageError as exc:
        return _failed(args, str(exc), EXIT_USAGE)
    except (UserInputError, NotFound) as exc:
        return _failed(args, str(exc), EXIT_INPUT)
    except SchemaOutdated as exc:
        return _failed(args, str(exc), EXIT_MIGRATE)
    except StoreError as exc:
        return _failed(args, f"the store is unavailable: {exc}", EXIT_UNAVAILABLE)
    except DisparoError as exc:
        return _failed(args, str(exc), EXIT_UNAVAILABLE)
    except Exception:  # a bug: its trace, without what the config holds secret
        return _failed(args, _bug_report(args), EXIT_BUG)


def _bug_report(args: argparse.Namespace) -> str:
    """The trace of the error being handled, with the config's secrets replaced by
    ``***`` and phone numbers masked, as in the logs: Python's own trace would print
    them (a DSN or a provider key in a message, a contact's number in a value)."""
    import traceback

    from engine.logs import RedactingFilter

    secrets: tuple[str, ...] = ()
    config = getattr(args, "config", None)
    if config:
        with contextlib.suppress(Exception):  # a config that does not load has none to hide
            secrets = _settings(config).secret_values()
    trace = RedactingFilter(secrets).clean(traceback.format_exc())
    return (
        f"{trace.rstrip()}\ndisparo {args.command}: an unexpected error, a bug in disparo; "
        "please report it with the trace above (secrets and phone numbers are hidden)"
    )


def _failed(args: argparse.Namespace, why: str, code: int) -> int:
    """Say why the command failed, on stderr; return its exit code. The stderr of
    `disparo serve` is its log: with JSON logs, the reason it stopped (or never
    started) is a JSON log line too, for the collector that parses every line."""
    import logging

    from engine.logs import JsonFormatter, setup_logging

    if args.command == "serve":
        handlers = logging.getLogger().handlers
        json_logs = any(isinstance(h.formatter, JsonFormatter) for h in handlers)
        if not json_logs and args.log_format == "json":  # it failed before logging began
            setup_logging("json")
            json_logs = True
        if json_logs:
            logging.getLogger("disparo.serve").error("%s", why)
            return code
    print(why, file=sys.stderr)
    return code


def _settings(path: str, *, store_must_exist: bool = False) -> Any:
    """The config at ``path``. ``store_must_exist``: for a command that reads or changes
    what is stored, refuse a SQLite file that is not there instead of creating an empty
    database (a mistyped ``storage`` path would otherwise look like a store with nothing)."""
    from engine.settings import load_settings

    if not Path(path).exists():
        raise ConfigError(f"{path}: no such config file; pass --config PATH")
    settings = load_settings(Path(path))
    if store_must_exist:
        _refuse_missing_database(settings.storage, path)
    return settings


def _storage(path: str, *, store_must_exist: bool = False) -> str:
    """Only the ``storage`` of the config at ``path`` (no provider secret needed)."""
    from engine.settings import load_storage

    if not Path(path).exists():
        raise ConfigError(f"{path}: no such config file; pass --config PATH")
    storage = load_storage(Path(path))
    if store_must_exist:
        _refuse_missing_database(storage, path)
    return storage


def _refuse_missing_database(storage: str, path: str) -> None:
    from engine.stores import missing_database

    if (file := missing_database(storage)) is not None:
        raise StoreError(
            f"no database at {file}: check `storage` in {path}, or run `disparo migrate` "
            "to create one"
        )


async def _serve(args: argparse.Namespace) -> int:
    from engine.serve import serve

    settings = _settings(args.config)
    return await serve(settings, host=args.host, port=args.port, log_format=args.log_format)


async def _migrate(args: argparse.Namespace) -> int:
    from engine.stores import open_store

    store = open_store(_storage(args.config))
    try:
        applied = await store.migrate()
        await store.open()  # a database a newer disparo migrated is not "up to date"
    finally:
        await store.close()
    # Named: deployments sharing a server differ by their database or schema alone.
    if applied:
        print(
            f"applied {counted(len(applied), 'migration')} to {store.where}: {', '.join(applied)}"
        )
    else:
        print(f"the database {store.where} is up to date")
    return EXIT_OK


async def _check(args: argparse.Namespace) -> int:
    from engine.check import check

    problems = check(args.config, [Path(p) for p in args.paths])
    for problem in problems:
        print(problem)
    if problems:
        print(f"{counted(len(problems), 'problem')}", file=sys.stderr)
        return EXIT_INPUT
    print("ok", file=sys.stderr)
    return EXIT_OK


async def _schema(args: argparse.Namespace) -> int:
    from engine.flow.schema import flow_json_schema

    print(json.dumps(flow_json_schema(), indent=2, sort_keys=True, ensure_ascii=False))
    return EXIT_OK


async def _openapi(args: argparse.Namespace) -> int:
    from engine.openapi import document_json

    print(document_json())
    return EXIT_OK


def _flow_file(ref: str, config: str) -> Any:
    from engine.flow.loader import load_flow
    from engine.simulate_flow import find_flow

    if Path(ref).is_file():
        return load_flow(Path(ref))
    return find_flow(_settings(config), ref)


async def _graph(args: argparse.Namespace) -> int:
    from engine.flow.graph import to_dot, to_mermaid

    loaded = _flow_file(args.flow, args.config)
    print(to_mermaid(loaded.flow) if args.format == "mermaid" else to_dot(loaded.flow))
    return EXIT_OK


async def _simulate(args: argparse.Namespace) -> int:
    from engine.simulate import run_simulation

    settings = _settings(args.config)
    _engine_logs(args, settings)
    return await run_simulation(settings, args)


async def _trigger(args: argparse.Namespace) -> int:
    from engine.bulk import trigger
    from engine.runtime import Engine

    settings = _settings(args.config, store_must_exist=True)
    _engine_logs(args, settings)
    # No dispatcher loop: the runs are stored, and `disparo serve` sends them.
    async with Engine(settings, run_loop=False, triggers=False) as engine:
        tally = await trigger(engine, args.flow, Path(args.contacts), name=args.contacts)
    print(tally.summary())
    return EXIT_OK


def _engine_logs(args: argparse.Namespace, settings: Settings) -> None:
    """The log lines of a command that runs the engine (simulate, trigger) as `disparo
    serve` writes them: in the format asked for, phones masked and secrets redacted.
    Warnings and errors only: its own output says what it did, line by line."""
    import logging

    from engine.logs import setup_logging

    setup_logging(
        args.log_format or settings.log_format,
        secrets=settings.secret_values(),
        level=logging.WARNING,
    )


def _offline_engine(args: argparse.Namespace, settings: Settings) -> Engine:
    """An engine of the store alone (no providers, no dispatcher, no triggers), for a
    command that reads or changes what is stored, logging as the config (or
    --log-format) says. A flow file with problems is left out with a warning: an
    operator mid-edit can still answer a person who asks for their data."""
    from engine.logs import setup_logging
    from engine.runtime import Engine

    setup_logging(args.log_format or settings.log_format, secrets=settings.secret_values())
    return Engine(settings, run_loop=False, triggers=False, offline=True)


async def _purge(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    settings = _settings(args.config, store_must_exist=True)
    if args.keep is not None:
        try:
            retention = settings.retention.model_validate(
                {**settings.retention.model_dump(), "keep": args.keep}
            )
        except ValidationError as exc:
            why = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise UsageError(f"--keep: {why}") from None
        settings = settings.model_copy(update={"retention": retention})
    async with _offline_engine(args, settings) as engine:
        if args.dry_run:
            tally = await engine.retention.preview()
        else:
            tally = await engine.retention.purge_once(pace=False)  # nothing else runs
    if tally is None:
        print("retention is off (retention.keep: null): nothing deleted; pass --keep 90d")
        return EXIT_OK
    print(tally.summary("would delete" if args.dry_run else "deleted"))
    return EXIT_OK


async def _erase(args: argparse.Namespace) -> int:
    from engine.contact_data import erase_contact, summary

    if not args.yes:  # a usage error (exit 2), as a missing argument is
        whom = " ".join(args.contacts)
        print(
            f"erasing deletes {'contact' if len(args.contacts) == 1 else 'contacts'} {whom} "
            "and every run, message and event of theirs for good; add --yes to go ahead",
            file=sys.stderr,
        )
        return EXIT_USAGE
    unknown = []
    async with _offline_engine(args, _settings(args.config, store_must_exist=True)) as engine:
        for contact in dict.fromkeys(args.contacts):  # each once, in the order given
            try:
                erased = await erase_contact(
                    engine, contact, forget_opt_out=args.forget_opt_out, source="disparo erase"
                )
            except NotFound as exc:
                print(exc, file=sys.stderr)
                unknown.append(contact)
                continue
            print(f"erased contact {contact}: {summary(erased)}")
    return EXIT_INPUT if unknown else EXIT_OK


async def _export(args: argparse.Namespace) -> int:
    from engine.contact_data import export_contact

    async with _offline_engine(args, _settings(args.config, store_must_exist=True)) as engine:
        document = await export_contact(engine, args.contact, source="disparo export")
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return EXIT_OK


async def _status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from engine.overview import overview_json, overview_lines
    from engine.stores import open_store

    store = open_store(_storage(args.config, store_must_exist=True))  # no engine: no more
    await store.open()
    try:
        now = datetime.now(UTC)
        overview = await store.overview(now)
    finally:
        await store.close()
    if args.json:
        print(json.dumps(overview_json(overview, now), ensure_ascii=False))
    else:
        print("\n".join(overview_lines(overview, now)))
    return EXIT_OK


async def _why_zone(
    engine: Engine, contact: Contact, events: list[Event], default: str
) -> ZoneInfo:
    """The zone the rules of the listed runs read (``engine.scope.contact_timezone``):
    the contact's, else the zone their flows share, else the config's. So `why` says
    "until 08:00" where the rule and `simulate` say 08:00."""
    from zoneinfo import ZoneInfo

    from engine.scope import contact_timezone
    from engine.zones import stored_contact_zone

    if own := stored_contact_zone(contact.id, contact.timezone):
        return ZoneInfo(own)
    zones = set()
    named = {event.run_id for event in events if event.run_id}
    # One read for the contact's runs, not one per run the events name.
    for run in await engine.store.list_contact_runs(contact.id):
        if run.id not in named:
            continue
        try:
            loaded = await engine.catalog.pinned(run.flow, run.flow_version)
        except (NotFound, UserInputError):  # purged, or no longer readable: not judged
            continue
        zones.add(contact_timezone(contact, loaded.flow, default).key)
    return ZoneInfo(zones.pop() if len(zones) == 1 else default)


async def _why(args: argparse.Namespace) -> int:
    from engine.api_views import event_view
    from engine.why_text import why_lines

    settings = _settings(args.config, store_must_exist=True)
    async with _offline_engine(args, settings) as engine:
        # One more than asked: whether --limit cut the history short.
        events = await engine.decisions(args.contact, args.flow, limit=args.limit + 1)
        contact = await engine.get_contact(args.contact)
        zone = await _why_zone(engine, contact, events, settings.timezone)
    more, events = len(events) > args.limit, events[: args.limit]
    cut = f"the newest {counted(args.limit, 'event')}; older ones exist: --limit N"
    if args.json:
        for event in events:
            print(json.dumps(event_view(event), ensure_ascii=False))
        if more:
            print(cut, file=sys.stderr)  # stdout stays JSON Lines
    elif events:
        print(f"# newest recorded first (a late event shows where it arrived); times in {zone.key}")
        print("\n".join(why_lines(events, zone)))
        if more:
            print(f"# {cut}")
    if not events:
        print(f"no events for contact {args.contact}", file=sys.stderr)
    return EXIT_OK
