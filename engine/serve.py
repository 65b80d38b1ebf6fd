"""`disparo serve`: one process with the API, webhooks, dispatcher and scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Callable, Collection

from aiohttp import web

from engine.api import build_app, server_options, webhook_secret
from engine.early_signals import reload_asked
from engine.errors import StoreError, UserInputError
from engine.gc_policy import tune_for_serving
from engine.listen_sockets import bind_sockets
from engine.logs import Lines, setup_logging
from engine.open_runs import open_run_notices
from engine.runtime import Engine
from engine.serve_lock import one_server_per_file
from engine.settings import Settings

EXAMPLE_API_TOKEN = "dev-token-change-me"  # config/disparo.yaml's default, for make run

log = logging.getLogger("disparo.serve")


async def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    log_format: str | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; then stop claiming and finish in-flight work."""
    setup_logging(log_format or settings.log_format, secrets=settings.secret_values())
    host = host or settings.server.host
    port = port or settings.server.port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # SIGHUP's default action ends the process: from the first moment on, a reload
    # asked for during start-up is kept and done once serving (a logrotate or
    # `systemctl reload` hook cannot tell start-up from serving).
    asked_early: list[bool] = []
    _on_hup(loop, lambda: asked_early.append(True))
    sockets = bind_sockets(host, port)  # a taken port stops it before any work
    try:
        async with one_server_per_file(settings.storage), Engine(settings) as engine:
            await _serve_engine(engine, settings, sockets, stop, asked_early, host, port)
    finally:
        for sock in sockets:
            sock.close()
    log.info("stopped")
    return 0


async def _serve_engine(
    engine: Engine,
    settings: Settings,
    sockets: list[socket.socket],
    stop: asyncio.Event,
    asked_early: list[bool],
    host: str,
    port: int,
) -> None:
    """Listen on ``sockets`` until ``stop``; then finish as ``serve`` says."""
    loop = asyncio.get_running_loop()
    runner = web.AppRunner(
        build_app(engine), access_log=None, handle_signals=False, **server_options(settings)
    )
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    tune_for_serving()  # start-up is over: what exists now lives as long as the process
    reloading: set[asyncio.Task[None]] = set()

    def reload() -> None:
        task = asyncio.create_task(reload_flows(engine))
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    _on_hup(loop, reload)
    if asked_early or reload_asked():
        log.info("reloading the flow files, as SIGHUP asked during start-up")
        reload()
    warn_open_doors(engine, host)
    await warn_open_runs(engine)
    flows = ", ".join(sorted(engine.catalog.current)) or "none"
    log.info(
        "disparo listening on http://%s:%d (flows: %s; providers: %s)",
        host,
        port,
        flows,
        ", ".join(sorted(engine.providers)) or "none",
    )
    try:
        await stop.wait()
    finally:
        _on_hup(loop, _reload_refused)  # no reload while stopping, and no death by it
        await asyncio.gather(*reloading, return_exceptions=True)
        log.info(
            "stopping: no new work is claimed; sends not yet on the wire go back to "
            "the queue; waiting up to %gs for the requests already on the wire",
            settings.dispatcher.shutdown_grace,
        )
        await runner.cleanup()


def _on_hup(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> None:
    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, handler)


def _reload_refused() -> None:
    log.warning("SIGHUP ignored: disparo is stopping; the flow files are read at the next start")


def warn_open_doors(engine: Engine, host: str) -> None:
    """Say at start what anyone who can reach the port could do: post webhooks a
    provider without ``webhook_secret`` takes from anybody (forged replies, clicks,
    opt-outs), and call the API with the example token on a non-loopback address.
    A provider that takes no webhooks (Robbu refuses every body) opens no such door."""
    for name, provider in sorted(engine.providers.items()):
        if provider.capabilities.webhooks and webhook_secret(provider) is None:
            log.warning(
                "POST /webhooks/%s takes events from anyone who can reach this port: set "
                "providers.%s.webhook_secret and give the vendor the URL with ?token=<it>",
                name,
                name,
            )
    if engine.settings.api_token_value == EXAMPLE_API_TOKEN and not _loopback(host):
        log.warning(
            "the API token is config/disparo.yaml's example and disparo listens on %s: "
            "set DISPARO_API_TOKEN (or api_token in the config) to a secret of your own",
            host,
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def reload_flows(engine: Engine) -> None:
    """SIGHUP: read the flow files and the template catalogue again; on any problem
    keep serving the old ones."""
    try:
        changed = await engine.reload_flows()
    except UserInputError as exc:  # a flow file or the template catalogue
        log.error(
            "the flow files or the template catalogue have problems; still serving the "
            "flows loaded before (fix them, then send SIGHUP again):\n%s",
            Lines(str(exc)),
        )
        return
    except StoreError as exc:
        log.error("could not reload the flow files: %s; still serving the flows loaded before", exc)
        return
    log.info(
        "reloaded the flow files and the template catalogue: %s; runs in flight go on "
        "with the flow version they started with%s",
        changed.summary(),
        " and send the templates as the catalogue says now"
        if changed.templates_added or changed.templates_changed or changed.templates_removed
        else "",
    )
    await warn_open_runs(engine, removed=changed.removed)


async def warn_open_runs(engine: Engine, *, removed: Collection[str] = ()) -> None:
    """At start and after a reload: what the open runs' flow versions will meet
    (``engine.open_runs``), one log line each."""
    try:
        notices = await open_run_notices(
            engine.store,
            engine.catalog,
            templates=engine.dispatcher.templates,
            capabilities={name: p.capabilities for name, p in engine.providers.items()},
            removed=removed,
        )
    except StoreError as exc:
        log.error("could not check the flow versions of the open runs: %s", exc)
        return
    for notice in notices:
        log.log(notice.level, "%s", notice.text)
