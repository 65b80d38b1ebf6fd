"""A PostgreSQL DSN disparo cannot read is a problem of the config, named as such.

Generated passwords hold ``/``, ``[`` or ``#``, which a URL must percent-encode; a
DSN that leaves them as they are cannot be split into user, password, host and
port. The command then says which part is wrong and how to write it (exit 1), and
never echoes any piece of the password: not in a traceback, not as a "port".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cli import _local_config, disparo


def _config_with(tmp_path: Path, dsn: str) -> Path:
    config = _local_config(tmp_path)
    text = config.read_text()
    start = text.index("storage:")
    end = text.index("\n", start)
    config.write_text(text[:start] + f'storage: "{dsn}"' + text[end:])
    return config


@pytest.mark.parametrize(
    ("password", "secret_parts"),
    [
        ("Kq/9vX2mPw", ("9vX2mPw", "Kq/")),  # a '/' ends the host part of a URL early
        ("Kq[9vX2mPw", ("9vX2mPw", "Kq[")),  # a '[' opens an IPv6 address
        ("Kq#9vX2mPw", ("9vX2mPw", "Kq#")),  # a '#' starts the fragment
    ],
)
@pytest.mark.parametrize("command", ["migrate", "status"])
def test_a_password_that_is_not_percent_encoded_is_named_and_never_shown(
    tmp_path: Path, password: str, secret_parts: tuple[str, ...], command: str
) -> None:
    config = _config_with(tmp_path, f"postgresql://disparo:{password}@127.0.0.1:5432/disparo")

    result = disparo(command, "--config", str(config))

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert not any(part in output for part in secret_parts), output
    assert "storage" in output
    assert "percent-encode" in output, output


def test_a_port_that_is_not_a_number_is_a_config_problem_naming_the_port(tmp_path: Path) -> None:
    config = _config_with(tmp_path, "postgresql://disparo:pw@127.0.0.1:54x2/disparo")

    result = disparo("migrate", "--config", str(config))

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "port" in result.stderr
    assert "invalid literal" not in result.stderr
