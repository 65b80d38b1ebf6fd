"""Ctrl-C is not a success: a script chaining `disparo trigger FILE && mark_done`
went on as if the whole file had been started (exit 0, nothing printed)."""

from __future__ import annotations

from typing import Any

import pytest

from engine import cli


def test_a_command_ended_by_ctrl_c_exits_130_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupted(_: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_trigger", interrupted)

    code = cli.main(["trigger", "cobranca_boleto", "--contacts", "contatos.csv"])

    assert code == 130
    assert capsys.readouterr().err == "disparo trigger: interrupted\n"
