"""The log lines of `disparo simulate` and `disparo trigger` are the engine's, as in
`disparo serve`: JSON with --log-format json, no contact's phone in clear either way."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import CONFIG, disparo

PHONE = "+5511988887777"

FLOW = """\
flow: data_errada
defaults: {provider: sandbox}
start: aviso
steps:
  aviso:
    send:
      text: "Vence em {{ context.vencimento | date('%d/%m') }}"
    next: fim
  fim:
    end: completed
"""


def _simulate(tmp_path: Path, *flags: str) -> tuple[int, str]:
    # A CRM put the phone where the due date goes: the render error is about it.
    flow = tmp_path / "data_errada.yaml"
    flow.write_text(FLOW)
    contact = tmp_path / "joao.yaml"
    contact.write_text(
        f'id: c-2\nphone: "{PHONE}"\nname: João\ncontext: {{vencimento: "{PHONE}"}}\n'
        'last_inbound_at: "2026-11-23T09:00:00-03:00"\n'
    )
    result = disparo(
        *flags, "simulate", str(flow), "--config", str(CONFIG), "--contact", str(contact),
        "--at", "2026-11-23T10:00:00-03:00",
    )  # fmt: skip
    return result.returncode, result.stderr


def test_simulate_s_log_lines_are_json_with_log_format_json(tmp_path: Path) -> None:
    code, err = _simulate(tmp_path, "--log-format", "json")

    assert code == 1  # the message failed
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [failure] = [x for x in logged if x["logger"] == "disparo.sending"]
    assert failure["level"] == "warning"
    assert "step aviso failed" in failure["message"]
    others = [line for line in err.splitlines() if not line.startswith("{")]
    assert others == ["1 message failed; the `failed` lines above say why"]


def test_simulate_s_log_lines_say_what_is_wrong_without_the_phone(tmp_path: Path) -> None:
    for flags in ((), ("--log-format", "json")):
        code, err = _simulate(tmp_path, *flags)

        assert code == 1
        assert "step aviso failed" in err
        assert "`date` needs a date: the string is not an ISO-8601 time" in err
        assert "7777" not in err, flags  # not even masked: the error names no value


def test_serve_that_cannot_start_says_why_in_a_json_log_line(tmp_path: Path) -> None:
    """Its stderr is its log: a collector parsing JSON lines got a bare text line as
    the only trace of a process that never started (its database out of reach)."""
    config = tmp_path / "disparo.yaml"
    config.write_text(
        CONFIG.read_text().replace(
            "sqlite:///var/disparo.db", "postgresql://disparo:s3nha@127.0.0.1:1/disparo"
        )
    )
    unmigrated = tmp_path / "unmigrated.yaml"
    unmigrated.write_text(
        CONFIG.read_text()
        .replace("sqlite:///var/disparo.db", f"sqlite:///{tmp_path / 'empty.db'}")
        .replace("log_format: text", "log_format: json")
    )
    (tmp_path / "empty.db").write_bytes(b"")

    down = disparo("serve", "--config", str(config), "--port", "9", "--log-format", "json")
    pending = disparo("serve", "--config", str(unmigrated), "--port", "9")

    assert down.returncode == 3
    [line] = [json.loads(line) for line in down.stderr.splitlines()]
    assert line["level"] == "error"
    assert "cannot reach the PostgreSQL database 127.0.0.1:1/disparo" in line["message"]
    assert "s3nha" not in down.stderr
    assert pending.returncode == 4
    last = json.loads(pending.stderr.splitlines()[-1])
    assert "run `disparo migrate`" in last["message"]
