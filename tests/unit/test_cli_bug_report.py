"""An error disparo did not expect (a bug) printed Python's own trace: whatever the
failing code held went to the terminal or a CI log as it was, a provider key or the
DSN's password in a message, a contact's number in a value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import cli
from tests.integration.test_cli import _local_config


def test_a_bug_prints_its_trace_without_the_config_s_secrets_and_exits_70(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISPARO_API_TOKEN", "s3cr3t-token-value")
    config = _local_config(tmp_path)

    async def broken(_: Any) -> int:
        raise RuntimeError("sent s3cr3t-token-value for +5511987654321 and then broke")

    monkeypatch.setattr(cli, "_status", broken)

    code = cli.main(["status", "--config", str(config)])

    err = capsys.readouterr().err
    assert code == 70
    assert "RuntimeError: sent *** for " in err  # the trace is there, to report
    assert "s3cr3t-token-value" not in err
    assert "+5511987654321" not in err
    assert "a bug in disparo; please report it" in err.splitlines()[-1]


def test_a_bug_in_a_command_without_a_config_still_masks_phone_numbers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(_: Any) -> int:
        raise ValueError("+5511987654321")

    monkeypatch.setattr(cli, "_schema", broken)

    assert cli.main(["schema"]) == 70
    err = capsys.readouterr().err
    assert "ValueError: " in err
    assert "+5511987654321" not in err
