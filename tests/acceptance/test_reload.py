"""`kill -HUP` makes a serving `disparo serve` read its flow files again: no
restart, no request refused; a broken edit is reported and changes nothing."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import (
    Api,
    DisparoServer,
    free_port,
    run_cli,
    wait_for,
    write_config,
)
from tests.integration.test_flow_reload import write_flow


def _sent_text(api: Api, contact: str) -> str:
    body = {"flow": "aviso", "contact": {"id": contact, "phone": "+5511999998888"}}
    run_id = api.ok("POST", "/v1/runs", body, expect=201)["run_id"]
    run = wait_for(
        lambda: api.run(run_id),
        lambda r: bool(r["messages"]) and r["messages"][0]["status"] == "read",
        what=f"the first message of {contact} read",
    )
    text: str = run["messages"][0]["payload"]["body"]
    return text


def _hup(server: DisparoServer, what: str) -> str:
    before = server.log().count("flow files")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    log: str = wait_for(server.log, lambda text: text.count("flow files") > before, what=what)
    return log


def test_sighup_reloads_the_flow_files_and_a_broken_edit_changes_nothing(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    flow_file = flows / "aviso.yaml"
    write_flow(flows, "Versão 1", "Obrigado")
    port = free_port()
    config = write_config(tmp_path, port=port, flows=flows)
    run_cli(config, "migrate")
    server = DisparoServer(config, port, tmp_path / "serve.log")
    api = server.start()
    try:
        first = _sent_text(api, "c-1")
        write_flow(flows, "Versão 2", "Obrigado")
        reloaded = _hup(server, "the reload of the edited flow")
        second = _sent_text(api, "c-2")
        flow_file.write_text(flow_file.read_text().replace("next: fim", "next: fin"))
        refused = _hup(server, "the refused reload of the broken flow")
        third = _sent_text(api, "c-3")
        alive: Any = server.exited()
    finally:
        server.stop()

    assert (first, second, third) == ("Versão 1", "Versão 2", "Versão 2")
    assert (
        "reloaded the flow files and the template catalogue: changed aviso; runs in flight "
        "go on with the flow version they started with"
    ) in reloaded
    assert "the flow files or the template catalogue have problems; still serving" in refused
    assert f"{flow_file}:" in refused  # file:line:col of the problem
    assert alive is None


def _catches_sighup(pid: int) -> bool:
    """Whether the process has a handler for SIGHUP (Linux: /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGHUP - 1)))


def test_a_sighup_during_start_up_is_kept_and_done_once_serving(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(flows, "Versão 1", "Obrigado")
    port = free_port()
    config = write_config(tmp_path, port=port, flows=flows)
    run_cli(config, "migrate")
    server = DisparoServer(config, port, tmp_path / "serve.log")
    if not Path("/proc/self/status").exists():
        pytest.skip("reading a process's signal handlers needs Linux's /proc")
    server.spawn()
    try:
        assert server.proc is not None
        # As soon as disparo can catch it, long before it listens (a logrotate hook).
        wait_for(lambda: server.proc is not None and _catches_sighup(server.proc.pid),
                 lambda caught: caught, what="disparo serve catching SIGHUP")  # fmt: skip
        server.proc.send_signal(signal.SIGHUP)
        log = wait_for(
            server.log,
            lambda text: "reloaded the flow files" in text,
            what="the reload asked during start-up",
        )
        alive = server.exited()
    finally:
        server.stop()

    assert alive is None, log
    assert "reloading the flow files, as SIGHUP asked during start-up" in log
    assert log.index("disparo listening on") < log.index("template catalogue: no flow changed")
