"""config/disparo.yaml: interpolation, pointed errors, provider entries, secrets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from pydantic import Field, SecretStr, field_validator

from engine.errors import ConfigError
from engine.settings import Settings, load_settings
from providers import registry
from providers.base import ProviderConfig

REPO = Path(__file__).resolve().parents[2]


class FakeConfig(ProviderConfig):
    type: Literal["fake"] = "fake"
    url: str
    password: str
    api_key: SecretStr | None = None
    retries: int = Field(default=3, ge=0)

    @field_validator("password")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        # a sloppy vendor validator that repeats the secret it rejects
        if len(value) < 8:
            raise ValueError(f"{value!r} is shorter than 8 characters")
        return value


class FakeProvider:
    config_model: ClassVar[type[ProviderConfig]] = FakeConfig


@pytest.fixture(autouse=True)
def fake_provider_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        registry,
        "PROVIDER_TYPES",
        {"fake": f"{__name__}:FakeProvider", "sandbox": "providers.sandbox:SandboxProvider"},
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "disparo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    return [str(p) for p in caught.value.problems]


def test_the_shipped_config_runs_with_no_environment_variables() -> None:
    settings = load_settings(REPO / "config" / "disparo.yaml", {})
    assert settings.storage == "sqlite:///var/disparo.db"
    assert settings.api_token_value == "dev-token-change-me"
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.server.max_body_bytes == 1024 * 1024
    assert settings.timezone == "America/Sao_Paulo"
    # relative paths stay relative to the working directory (the project root)
    assert settings.flows == Path("flows")
    assert settings.templates == Path("config/templates.yaml")
    assert sorted(settings.providers) == ["sandbox", "sandbox_sms"]
    assert type(settings.providers["sandbox"]).__name__ == "SandboxConfig"
    assert settings.providers["sandbox_sms"].channels == ("sms",)  # type: ignore[attr-defined]


def test_defaults_fill_what_the_file_leaves_out(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "api_token: t0ken-0123456789\n"), {})
    assert settings.log_format == "text"
    assert settings.templates is None
    assert settings.providers == {}
    d = settings.dispatcher
    assert (d.lease_seconds, d.max_in_flight, d.poll_interval) == (30.0, 64, 1.0)
    assert (d.max_attempts, d.backoff_base, d.backoff_cap) == (8, 2.0, 300.0)
    assert "SAIR" in settings.opt_out_keywords


def test_environment_variables_are_interpolated_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "api_token: ${TOKEN:-dev-token-0123456789}\nstorage: ${DSN}\n"
        "server: {port: '${PORT:-9000}'}\n"
        "timezone: America/${CITY:-Recife}\nflows: $${literal}/flows\n",
    )
    settings = load_settings(path, {"DSN": "postgresql://u@db/disparo", "CITY": ""})
    assert settings.api_token_value == "dev-token-0123456789"
    assert settings.storage == "postgresql://u@db/disparo"
    assert settings.server.port == 9000
    assert settings.timezone == "America/Recife"  # set but empty also takes the default
    assert settings.flows == Path("${literal}/flows")
    later = {"TOKEN": "abc-0123456789abcd", "DSN": "sqlite:///x.db"}
    assert load_settings(path, later).api_token_value == "abc-0123456789abcd"


def test_an_unset_variable_without_default_names_the_variable_and_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "api_token: t0ken-0123456789\nproviders:\n  fake:\n    type: fake\n    url: http://x\n"
        "    password: ${FAKE_PASSWORD}\n",
    )
    assert problems(path) == [
        f"{path}:6:15: environment variable `FAKE_PASSWORD` is not set (used by "
        "`providers.fake.password`); set it, or give a default: ${FAKE_PASSWORD:-...}"
    ]


def test_a_broken_reference_is_not_taken_literally(tmp_path: Path) -> None:
    path = write(tmp_path, "api_token: ${DISPARO_API_TOKEN:-dev\n")
    assert problems(path) == [
        f"{path}:1:12: `${{` that is never closed with `}}` in `api_token` is not a variable "
        "reference; write ${NAME} or ${NAME:-default}"
    ]


def test_unknown_keys_point_at_the_key_and_suggest_the_right_one(tmp_path: Path) -> None:
    path = write(
        tmp_path, "api_token: t0ken-0123456789\nstorge: sqlite:///x.db\nserver:\n  prot: 8081\n"
    )
    assert problems(path) == [
        f"{path}:2:1: unknown key `storge`; did you mean `storage`?",
        f"{path}:4:3: unknown key `prot` in `server`; did you mean `port`?",
    ]


def test_invalid_values_are_explained(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "api_token: '  '\nstorage: mysql://x\ntimezone: America/Sao_Pablo\nlog_format: xml\n"
        "server: {port: 70000}\n",
    )
    assert problems(path) == [
        f"{path}:1:12: `api_token`: the API token is empty; set DISPARO_API_TOKEN or `api_token:`",
        f"{path}:2:10: `storage`: use sqlite:///path/to/file.db or postgresql://user@host/db",
        f"{path}:3:11: `timezone`: `America/Sao_Pablo` is not a time zone; "
        "did you mean `America/Sao_Paulo`?",
        f"{path}:4:13: `log_format` must be one of text, json; got `xml`",
        f"{path}:5:16: `port` in `server` must be at most 65535",
    ]


@pytest.mark.parametrize("keyword", ["", "  ", "\t"])
def test_a_blank_opt_out_keyword_is_refused(tmp_path: Path, keyword: str) -> None:
    # normalise() of a blank reply is "": with "" as a keyword, a contact who sent a
    # blank would never hear from the bot again. An emoji keyword stays allowed.
    path = write(tmp_path, f'api_token: t0ken-0123456789\nopt_out_keywords: [SAIR, "{keyword}"]\n')
    [problem] = problems(path)
    assert "`opt_out_keywords`" in problem
    assert "is blank" in problem
    assert load_settings(
        write(tmp_path, 'api_token: t0ken-0123456789\nopt_out_keywords: [SAIR, "🛑"]\n'), {}
    )


def test_retention_reads_durations_and_refuses_what_would_break_a_rule(tmp_path: Path) -> None:
    assert load_settings(
        write(tmp_path, "api_token: t0ken-0123456789\n"), {}
    ).retention.keep == timedelta(days=30)
    kept = load_settings(
        write(tmp_path, "api_token: t0ken-0123456789\nretention: {keep: 2d12h, every: 90}\n")
    )
    assert kept.retention.keep == timedelta(days=2, hours=12)
    assert kept.retention.every == timedelta(seconds=90)
    path = write(
        tmp_path, "api_token: t0ken-0123456789\nretention: {keep: 36h, every: soon, batch: 0}\n"
    )
    assert problems(path) == [
        f"{path}:2:19: `keep` in `retention`: keep at least 2d (the max_per_day rule counts "
        "a whole local day of messages), or null to keep everything",
        f"{path}:2:31: `every` in `retention`: 'soon' is not a duration; write it like 30s, "
        "10m, 2h, 1d or 1h30m",
        f"{path}:2:44: `batch` in `retention` must be at least 1",
    ]
    off = load_settings(write(tmp_path, "api_token: t0ken-0123456789\nretention: {keep: null}\n"))
    assert off.retention.keep is None


def test_a_yaml_boolean_is_not_taken_for_a_number(tmp_path: Path) -> None:
    # pydantic alone would read `max_in_flight: true` as one message in flight.
    path = write(
        tmp_path,
        "api_token: abcdefgh-01234567\nstorage: sqlite:///x.db\ndispatcher: {max_in_flight: true}\n"
        "providers:\n  gw:\n    type: fake\n    url: http://gw\n    password: long-enough\n"
        "    retries: false\n",
    )
    assert problems(path) == [
        f"{path}:3:29: `max_in_flight` in `dispatcher`: true is not a number; "
        "write the number itself",
        f"{path}:9:14: `retries` in provider `gw`: false is not a number; write the number itself",
    ]


def test_a_missing_api_token_is_reported(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "storage: sqlite:///x.db\n")) == [
        f"{tmp_path / 'disparo.yaml'}:1:1: missing key `api_token` (bearer token of the /v1 API)"
    ]


def test_provider_entries_are_validated_by_their_type_at_their_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
api_token: t0ken-0123456789
providers:
  gw:
    type: fake
    url: http://x
    pasword: hunter22
    retries: -1
  other:
    type: fak
  third:
    url: http://y
  "bad name": {type: fake, url: u, password: hunter22}
""",
    )
    assert problems(path) == [
        f"{path}:3:3: missing key `password` in provider `gw`",
        f"{path}:6:5: unknown key `pasword` in provider `gw`; did you mean `password`?",
        f"{path}:7:14: `retries` in provider `gw` must be at least 0",
        f"{path}:9:11: provider `other` has unknown type `fak`; did you mean `fake`?",
        f"{path}:10:3: provider `third` needs `type:` (one of: fake, sandbox)",
        f"{path}:12:3: provider name `bad name` must be letters, digits, `_` and `-` "
        "(it is part of the webhook URL)",
    ]


def test_valid_provider_entries_become_their_config_models(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "api_token: t0ken-0123456789\nproviders:\n"
        "  gw: {type: fake, url: http://x, password: hunter22, retries: 5}\n",
    )
    config = load_settings(path, {}).providers["gw"]
    assert isinstance(config, FakeConfig)
    assert config.retries == 5


def test_secrets_never_appear_in_reprs_or_error_messages(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "api_token: ${TOKEN}\nproviders:\n  gw:\n    type: fake\n    url: http://x\n"
        "    password: ${PASS}\n    api_key: ${KEY}\n    webhook_secret: ${HOOK}\n",
    )
    env = {
        "TOKEN": "tok-0123456789abcdef",
        "PASS": "pass-123456",
        "KEY": "key-123456",
        "HOOK": "hook-0123456789abcdef",
    }
    settings = load_settings(path, env)
    shown = repr(settings) + str(settings)
    for secret in env.values():
        assert secret not in shown
    assert "url='http://x'" in shown
    assert sorted(settings.secret_values()) == sorted(env.values())

    short = {**env, "PASS": "s3cr3t"}
    assert problems(path, short) == [f"{path}:6:15: `password` in provider `gw` is not valid"]


def test_credentials_written_in_urls_are_secrets_too(tmp_path: Path) -> None:
    # A database password in the DSN, a gateway's user:password@ or ?apikey= in its
    # url: the log filter redacts only what secret_values lists.
    path = write(
        tmp_path,
        "api_token: tok-0123456789abcdef\nstorage: postgresql://app:db%2Fpass-99@db:5432/disparo\n"
        "providers:\n  gw:\n    type: fake\n    password: pass-123456\n"
        "    url: https://bot:url-pass-77@gw.example/send?apikey=query-key-55&lang=pt\n",
    )
    found = load_settings(path, {}).secret_values()
    for secret in ("db/pass-99", "db%2Fpass-99", "url-pass-77", "query-key-55"):
        assert secret in found
    assert "Ym90OnVybC1wYXNzLTc3" in found  # the Basic credentials sent for bot:url-pass-77
    assert "pt" not in found
    assert "bot" not in found


def test_a_numeric_secret_is_told_to_be_quoted_without_repeating_it(tmp_path: Path) -> None:
    # YAML reads an unquoted PIN or token as a number.
    path = write(
        tmp_path,
        "api_token: 31337313\nproviders:\n  gw:\n    type: fake\n    url: http://x\n"
        "    password: 98765432\n",
    )
    assert problems(path) == [
        f"{path}:1:12: `api_token` must be text; write it in quotes",
        f"{path}:6:15: `password` in provider `gw` must be text; write it in quotes",
    ]


def test_settings_built_in_code_validate_provider_mappings_by_type() -> None:
    settings = Settings(
        api_token=SecretStr("t0ken-0123456789"),
        providers={"gw": {"type": "fake", "url": "http://x", "password": "hunter22"}},
    )
    assert isinstance(settings.providers["gw"], FakeConfig)
    with pytest.raises(ValueError, match="provider `gw`: password: is not valid") as caught:
        Settings(
            api_token=SecretStr("t0ken-0123456789"),
            providers={"gw": {"type": "fake", "url": "http://x", "password": "s3cr3t"}},
        )
    assert "s3cr3t" not in str(caught.value)


def test_yaml_problems_in_the_config_are_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "api_token: t0ken-0123456789\napi_token: u\n")
    assert problems(path) == [
        f"{path}:2:1: duplicate key `api_token` (first written on line 1); keep one"
    ]
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.yaml", {})


def test_a_path_key_that_is_not_a_path_says_a_path_goes_there(tmp_path: Path) -> None:
    # It said "`templates` must be something else".
    path = write(tmp_path, "api_token: t0ken-0123456789\ntemplates: 5\nflows: [flows]\n")

    assert problems(path) == [
        f"{path}:2:12: `templates` must be a file or folder path; got `5`",
        f"{path}:3:8: `flows` must be a file or folder path; got a list",
    ]


def test_the_server_timeouts_are_read_and_a_bad_one_is_named(tmp_path: Path) -> None:
    default = load_settings(write(tmp_path, "api_token: t0ken-0123456789\n"), {}).server
    assert (default.body_timeout, default.idle_timeout) == (30.0, 75.0)
    path = write(
        tmp_path, "api_token: t0ken-0123456789\nserver: {body_timeout: 0, idle_timeout: soon}\n"
    )
    assert problems(path) == [
        f"{path}:2:24: `body_timeout` in `server` must be more than 0.0",
        f"{path}:2:41: `idle_timeout` in `server` must be a number; got `soon`",
    ]


@pytest.mark.parametrize("token", ["dev-token", "s3cr3t", "0123456789abcde"])
def test_a_guessable_api_token_or_webhook_secret_stops_the_start(
    tmp_path: Path, token: str
) -> None:
    # Anyone who reaches the port may try them; the logs redact only 4+ characters.
    path = write(
        tmp_path,
        "api_token: ${TOKEN}\nproviders:\n  sandbox:\n    type: sandbox\n"
        "    webhook_secret: ${TOKEN}\n",
    )
    said = problems(path, {"TOKEN": token})
    assert said == [
        f"{path}:1:12: `api_token` is shorter than 16 characters: anyone who reaches the "
        "port could guess it; set DISPARO_API_TOKEN (or `api_token:`) to a long random "
        "one, such as `python -c 'import secrets; print(secrets.token_urlsafe(32))'` prints",
        f"{path}:5:21: `webhook_secret` in provider `sandbox` is shorter than 16 "
        "characters: anyone who reaches the port could guess it; set it to a long random "
        "one, such as `python -c 'import secrets; print(secrets.token_urlsafe(32))'` "
        "prints; then give the vendor the webhook URL with ?token=<it>",
    ]
    assert not any(f"{token}`" in s or f"'{token}'" in s for s in said)
    sixteen = load_settings(path, {"TOKEN": "0123456789abcdef"})
    assert sixteen.api_token_value == "0123456789abcdef"
