"""`disparo migrate` and `disparo status` read only `storage` from the config: a
migration job or an on-call shell needs the database's credentials, not every
provider's secrets."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli import _local_config, disparo

GATEWAY = """  gateway:
    type: http
    url: http://127.0.0.1:9/send
    headers: {Authorization: "Bearer ${DISPARO_TEST_UNSET_GATEWAY_TOKEN}"}
"""


def test_migrate_and_status_run_without_the_providers_secrets(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    config.write_text(config.read_text() + GATEWAY)

    migrated = disparo("migrate", "--config", str(config))
    status = disparo("status", "--config", str(config))
    served = disparo("serve", "--config", str(config), "--port", "9")

    assert migrated.returncode == 0, migrated.stderr
    assert "applied 9 migrations" in migrated.stdout
    assert status.returncode == 0, status.stderr
    assert "ambiguous messages: 0" in status.stdout
    # What sends still needs every secret, and says which one is missing.
    assert served.returncode == 1
    assert "DISPARO_TEST_UNSET_GATEWAY_TOKEN` is not set" in served.stderr


def test_migrate_still_names_an_unset_variable_of_the_storage(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    text = config.read_text()
    start = text.index("storage:")
    end = text.index("\n", start)
    config.write_text(text[:start] + "storage: ${DISPARO_TEST_UNSET_DSN}" + text[end:])

    migrated = disparo("migrate", "--config", str(config))

    assert migrated.returncode == 1
    assert f"{config}:" in migrated.stderr
    assert "environment variable `DISPARO_TEST_UNSET_DSN` is not set (used by `storage`)" in (
        migrated.stderr
    )
