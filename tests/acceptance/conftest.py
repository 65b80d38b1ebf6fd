"""A real `disparo serve` subprocess, driven over HTTP the way a new user drives it.

``disparo`` (fixture): writes a config (SQLite in tmp, the sandbox providers with
short delays, the example flows), runs ``disparo migrate`` and ``disparo serve``,
waits for ``GET /healthz`` and yields an ``Api`` client. The building blocks
(``write_config``, ``DisparoServer``, ``Gateway``) are importable for tests that
need their own config (the crash test).

Every wait polls with ``wait_for``: a short interval (never longer than the
sandbox's delays) and a generous overall deadline, so a slow machine makes the
suite slower, not flaky.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "acceptance-token"
POLL = 0.05  # seconds between polls: below every sandbox delay of SANDBOX_PROVIDERS
DEADLINE = 15.0  # seconds any one wait may take before the test fails
STARTUP_DEADLINE = 30.0

SANDBOX_PROVIDERS: dict[str, Any] = {
    "sandbox": {
        "type": "sandbox",
        "delivered_after": "0.2s",
        "read_after": "0.4s",
        "fail_suffix": "0000",
    },
    "sandbox_sms": {
        "type": "sandbox",
        "channels": ["sms"],
        "delivered_after": "0.2s",
        "read_after": None,
        "fail_suffix": "0000",
    },
}

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    fetch: Callable[[], T],
    until: Callable[[T], bool],
    *,
    what: str,
    timeout: float = DEADLINE,
    interval: float = POLL,
) -> T:
    """Call ``fetch`` every ``interval`` until ``until(value)``; return that value.

    Fails after ``timeout`` seconds showing the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            shown = json.dumps(value, indent=1, default=str)[:4000]
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}; last value:\n{shown}")
        time.sleep(interval)


def finished_runs(
    api: Api, run_ids: list[str], *, what: str = "every run finished", timeout: float = 60
) -> list[dict[str, Any]]:
    """``GET /v1/runs/{id}`` of each run, once none is active or waiting any more."""
    return wait_for(
        lambda: [api.run(run_id) for run_id in run_ids],
        lambda runs: all(r["status"] not in ("active", "waiting") for r in runs),
        what=what,
        timeout=timeout,
    )


def disparo_command(*args: str) -> list[str]:
    """The installed `disparo` command next to this interpreter (else ``python -m engine``)."""
    script = Path(sys.executable).parent / "disparo"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "engine", *args]


def write_config(
    directory: Path,
    *,
    port: int,
    providers: Mapping[str, Any] | None = None,
    flows: Path = ROOT / "flows",
    dispatcher: Mapping[str, Any] | None = None,
) -> Path:
    """A config file in ``directory`` with its SQLite store next to it."""
    config = {
        "storage": f"sqlite:///{directory / 'disparo.db'}",
        "server": {"host": "127.0.0.1", "port": port},
        "api_token": TOKEN,
        "timezone": "America/Sao_Paulo",
        "log_format": "text",
        "flows": str(flows),
        "templates": str(ROOT / "config" / "templates.yaml"),
        "dispatcher": dict(dispatcher or {"poll_interval": 0.2, "lease_seconds": 5}),
        "providers": dict(providers if providers is not None else SANDBOX_PROVIDERS),
    }
    path = directory / "disparo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a one-shot `disparo` command; fail with its output when it does not exit 0."""
    done = subprocess.run(
        disparo_command(*args, "--config", str(config)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"disparo {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


# ---------------------------------------------------------------------- HTTP client


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any


class Api:
    """A tiny JSON client of one disparo server: ``api.post("/v1/runs", {...})``."""

    def __init__(self, base_url: str, token: str = TOKEN, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Reply(response.status, _decode(response.read()))
        except urllib.error.HTTPError as exc:
            with exc:
                return Reply(exc.code, _decode(exc.read()))

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Reply:
        return self.request("PUT", path, body)

    def ok(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        """The JSON body of a request that must answer ``expect``."""
        reply = self.request(method, path, body)
        assert reply.status == expect, f"{method} {path} answered {reply.status}: {reply.body}"
        return reply.body

    # What most tests want, named.

    def run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.ok("GET", f"/v1/runs/{run_id}")
        return run

    def contact(self, contact_id: str) -> dict[str, Any]:
        contact: dict[str, Any] = self.ok("GET", f"/v1/contacts/{contact_id}")
        return contact

    def message(self, message_id: str) -> dict[str, Any]:
        message: dict[str, Any] = self.ok("GET", f"/v1/messages/{message_id}")
        return message

    def event(self, event: Mapping[str, Any]) -> Any:
        return self.ok("POST", "/v1/events", dict(event), expect=202)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


# ---------------------------------------------------------------------- processes


class Process:
    """A child process whose output goes to a log file (no pipe can fill and block it)."""

    def __init__(self, name: str, command: list[str], log_path: Path) -> None:
        self.name, self.command, self.log_path = name, command, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def spawn(self) -> None:
        assert self.proc is None, f"{self.name} is already running"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def log(self) -> str:
        return (
            self.log_path.read_text(encoding="utf-8", errors="replace")
            if self.log_path.exists()
            else ""
        )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL: the crash, nothing gets to clean up."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._reap()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in a few seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reap()

    def _reap(self) -> None:
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class DisparoServer(Process):
    """``disparo serve`` on a config; ``start()`` returns once /healthz answers 200."""

    def __init__(self, config: Path, port: int, log_path: Path) -> None:
        super().__init__(
            "disparo serve",
            disparo_command("serve", "--config", str(config), "--port", str(port)),
            log_path,
        )
        self.config, self.port = config, port
        self.api = Api(f"http://127.0.0.1:{port}")

    def start(self) -> Api:
        self.spawn()
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            code = self.exited()
            if code is not None:
                self._reap()
                pytest.fail(f"disparo serve exited {code} before answering:\n{self.log()}")
            with contextlib.suppress(OSError):
                health = Api(self.api.base_url, timeout=1.0).get("/healthz")
                if health.status == 200:
                    return self.api
            time.sleep(POLL)
        self.stop()
        pytest.fail(
            f"disparo serve did not answer /healthz in {STARTUP_DEADLINE:g}s:\n{self.log()}"
        )


class FakeProcess(Process):
    """``python -m tests.fakes.<vendor> --port N ...``; ``start()`` returns once /_stats answers."""

    def __init__(self, vendor: str, port: int, log_path: Path, *args: str) -> None:
        command = [sys.executable, "-m", f"tests.fakes.{vendor}", "--port", str(port), *args]
        super().__init__(f"fake {vendor}", command, log_path)
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.client = Api(self.base_url)

    def start(self) -> None:
        self.spawn()
        self.ready()

    def ready(self) -> None:
        """Wait until the spawned fake answers ``GET /_stats``."""
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if self.exited() is not None:
                self._reap()
                pytest.fail(f"the {self.name} exited before answering:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self.client.get("/_stats").status == 200:
                    return
            time.sleep(POLL)
        self.stop()
        pytest.fail(f"the {self.name} did not answer /_stats in {STARTUP_DEADLINE:g}s")

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.client.ok("GET", "/_stats")
        return stats

    def script_fault(self, **fault: Any) -> None:
        self.client.ok("POST", "/_faults", fault)


class Gateway(FakeProcess):
    """``python -m tests.fakes.gateway``: the in-house HTTP gateway, counting keys."""

    def __init__(self, port: int, log_path: Path, *, latency: float = 0.0) -> None:
        super().__init__("gateway", port, log_path, "--latency", str(latency))
        self.url = f"http://127.0.0.1:{port}/v1/messages"


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def disparo(tmp_path: Path) -> Iterator[Api]:
    """A migrated, serving disparo with the example flows and the sandbox providers."""
    port = free_port()
    config = write_config(tmp_path, port=port)
    run_cli(config, "migrate")
    server = DisparoServer(config, port, tmp_path / "serve.log")
    api = server.start()
    try:
        yield api
    finally:
        server.stop()


GATEWAY_FLOW = """\
flow: {name}
description: One message per contact through the in-house gateway.
defaults:
  provider: gateway
  rules:
    window: ignore
start: aviso
steps:
  aviso:
    send:
      text: "Oi {{{{ contact.first_name }}}}! Aviso número {{{{ context.n }}}}."
    next: fim
  fim:
    end: completed
"""


def gateway_flows(directory: Path) -> Path:
    """A flows directory holding only ``aviso_gateway`` (GATEWAY_FLOW)."""
    flows = directory / "flows"
    flows.mkdir()
    (flows / "aviso_gateway.yaml").write_text(
        GATEWAY_FLOW.format(name="aviso_gateway"), encoding="utf-8"
    )
    return flows


def start_gateway_runs(api: Api, count: int, prefix: str) -> list[str]:
    """Start ``count`` runs of ``aviso_gateway`` over the API, 16 at a time; their ids."""

    def start(n: int) -> str:
        contact = {"id": f"{prefix}-{n}", "phone": f"+55119{n:08d}", "name": f"Pessoa {n}"}
        reply = api.post(
            "/v1/runs",
            {
                "flow": "aviso_gateway",
                "contact": contact,
                "context": {"n": n},
                "idempotency_key": f"{prefix}-run-{n}",
            },
        )
        assert reply.status == 201, reply.body
        run_id: str = reply.body["run_id"]
        return run_id

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(start, range(count)))


def gateway_provider(gateway: Gateway, *, timeout: float, max_in_flight: int) -> dict[str, Any]:
    """An `http` provider entry for the fake gateway (deduplicates by idempotency key)."""
    return {
        "type": "http",
        "url": gateway.url,
        "headers": {"Authorization": "Bearer gw-test-token-0123456789"},
        "idempotency_header": "Idempotency-Key",
        "id_field": "messages.0.id",
        "timeout": timeout,
        "max_in_flight": max_in_flight,
        "channels": ["whatsapp"],
        "read_receipts": False,
    }
