"""What the operator commands do with the store a config names: never create an
empty database behind a mistyped path, never call a newer database up to date,
and say in one line why `serve` cannot listen."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.integration.test_cli import ROOT, _finished_runs, _local_config, disparo


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["why", "c-1"],
        ["export", "c-1"],
        ["erase", "c-1", "--yes"],
        ["purge", "--dry-run"],
    ],
)
def test_a_command_that_reads_the_store_refuses_a_database_that_is_not_there(
    tmp_path: Path, command: list[str]
) -> None:
    config = _local_config(tmp_path)
    typo = tmp_path / "typo_dir" / "disparo.db"
    config.write_text(config.read_text().replace(str(tmp_path / "d.db"), str(typo)))

    result = disparo(*command, "--config", str(config))

    assert result.returncode == 3  # the store is out of reach
    assert f"no database at {typo}: check `storage` in {config}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not typo.parent.exists()  # nothing was created


def test_migrate_refuses_a_database_a_newer_disparo_migrated(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    assert disparo("migrate", "--config", str(config)).returncode == 0
    with sqlite3.connect(tmp_path / "d.db") as db:
        db.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES ('0099_future', '2027-01-01')"
        )

    result = disparo("migrate", "--config", str(config))

    assert result.returncode == 3
    assert "migrated by a newer disparo (0099_future); upgrade disparo" in result.stderr
    assert "up to date" not in result.stdout


def test_serve_on_a_taken_port_says_so_before_it_touches_the_store(tmp_path: Path) -> None:
    # A second `serve` started by mistake on the port of the first used to open the
    # store, record the flows and run its dispatcher (which claims and sends due
    # work) before it found the port taken. It must stop before doing anything.
    config = _local_config(tmp_path)
    assert disparo("migrate", "--config", str(config)).returncode == 0
    with sqlite3.connect(tmp_path / "d.db") as db:
        before = list(db.iterdump())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = disparo("serve", "--config", str(config), "--port", str(port))

    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(tmp_path / "d.db") as db:
        assert list(db.iterdump()) == before  # no flow recorded, nothing claimed


@pytest.mark.parametrize("host", ["999.1.1.1", "192.0.2.1"])
def test_serve_on_a_host_that_is_not_this_machine_s_says_so(tmp_path: Path, host: str) -> None:
    # It said "stop what holds the port": no program holds it, the address is wrong.
    config = _local_config(tmp_path)
    assert disparo("migrate", "--config", str(config)).returncode == 0

    result = disparo("serve", "--config", str(config), "--host", host, "--port", "8719")

    assert result.returncode == 1
    assert f"cannot listen on {host}:8719: " in result.stderr
    assert "stop what holds the port" not in result.stderr
    assert "not an address of this machine" in result.stderr
    assert "--host" in result.stderr


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_serve_refuses_a_port_that_is_not_one(tmp_path: Path, port: str) -> None:
    result = disparo("serve", "--config", str(_local_config(tmp_path)), "--port", port)

    assert result.returncode == 2
    assert "is not a TCP port; give a number, 1-65535" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_store_commands_work_while_a_flow_file_is_mid_edit(tmp_path: Path) -> None:
    """`why`, `export`, `erase` and `purge` need the store, not a clean flow folder:
    an operator answering a person's request must not have to finish an edit first."""
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", flows)
    edited = flows / "cobranca_boleto.yaml"
    edited.write_text(edited.read_text().replace("steps:", "stepz:", 1))  # mid-edit
    config = _local_config(tmp_path)
    config.write_text(config.read_text().replace(str(ROOT / "flows"), str(flows)))
    assert disparo("migrate", "--config", str(config)).returncode == 0
    await _finished_runs(tmp_path / "d.db", 40, 1)  # runs of cobranca_boleto

    why = disparo("why", "c-1", "--flow", "cobranca_boleto", "--config", str(config))
    misspelled = disparo("why", "c-1", "--flow", "cobranca", "--config", str(config))
    exported = disparo("export", "c-1", "--config", str(config))
    purged = disparo("purge", "--config", str(config))
    erased = disparo("erase", "c-1", "--yes", "--config", str(config))

    for result in (why, exported, purged, erased):
        assert result.returncode == 0, result.stderr
        assert f"WARNING disparo.flows: {edited} is left out (" in result.stderr
        assert "problems; `disparo check` lists them); this command goes on" in result.stderr
        assert "Traceback" not in result.stderr
    assert "no events for contact c-1" in why.stderr  # the flow of its stored runs filters
    assert misspelled.returncode == 1
    assert "flow 'cobranca' is not loaded; loaded flows: pesquisa_nps, reengajamento_23h" in (
        misspelled.stderr
    )
    assert [run["id"] for run in json.loads(exported.stdout)["runs"]] == ["r-0", "r-1"]
    assert purged.stdout.startswith("deleted 1 finished run, ")
    assert erased.stdout.startswith("erased contact c-1: 1 run, ")
