"""The log lines of `disparo simulate` and `disparo trigger` are the engine's, as in
`disparo serve`: JSON with --log-format json, phone numbers masked either way."""

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
    # A CRM put the phone where the due date goes: the render error quotes it.
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


def test_simulate_s_log_lines_mask_the_phone_numbers_they_quote(tmp_path: Path) -> None:
    for flags in ((), ("--log-format", "json")):
        code, err = _simulate(tmp_path, *flags)

        assert code == 1
        assert "step aviso failed" in err
        assert PHONE not in err, flags
        assert "+55*******7777" in err
