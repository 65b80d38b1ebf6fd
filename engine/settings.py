"""config/disparo.yaml -> typed, frozen ``Settings``.

- ``${VAR}`` and ``${VAR:-default}`` in string values come from the environment
  (``:-`` also applies when the variable is set but empty); ``$${`` writes a literal
  ``${``. An unset ``${VAR}`` with no default is an error naming the variable and
  its file:line:col.
- Unknown keys are errors with file:line:col and a did-you-mean, exactly as in flow
  files (the YAML reading and the error wording are shared with the flow loader).
- Each entry of ``providers`` needs ``type:`` and is validated by that type's
  config model (``providers.registry``), its errors pointing into the entry.
- Relative paths (``flows``, ``templates``, and a ``sqlite:///relative.db`` in
  ``storage``) are relative to the working directory disparo runs in, not to the
  config file: ``disparo serve --config config/disparo.yaml`` run from the project
  root (what ``make run`` does) finds ``flows/`` and ``var/`` there.
- Secrets (``api_token``; provider fields named like password, token, api_key,
  secret) never appear in reprs or error messages; ``secret_values()`` lists them so
  logs can redact them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

import providers.registry as registry
from engine.errors import ConfigError, Problem
from engine.flow.durations import format_duration, parse_duration
from engine.flow.model import STEP_ID
from engine.flow.problems import Describer, did_you_mean, problems_from_validation, timezone_problem
from engine.flow.yaml_source import DocPath, SourceMap, YamlSourceError, format_path, read_yaml
from engine.models import NumbersRefuseBooleans
from engine.opt_out import DEFAULT_OPT_OUT_KEYWORDS
from engine.opt_out import normalise as normalise_keyword
from engine.secret_length import too_short
from engine.wording import counted
from providers.base import ProviderConfig, url_secrets

CONFIG_WORDS = Describer(named={"providers": "provider"})
SECRET_FIELD = re.compile(r"password|secret|token|api_?key|private", re.IGNORECASE)
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_MASK = "'**********'"


class _Section(NumbersRefuseBooleans):
    # Inputs may be secrets: pydantic's own error text must not repeat them.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ServerSettings(_Section):
    host: str = Field(default="127.0.0.1", description="Address the HTTP server listens on")
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Larger request bodies get 413"
    )
    health_timeout: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Seconds GET /healthz waits for the store before answering 503",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a request's body may take to arrive in full before 408",
    )
    idle_timeout: float = Field(
        default=75.0,
        gt=0,
        le=3600,
        description="Seconds a connection may stay idle, or take to send a request's "
        "headers, before it is closed",
    )


class DispatcherSettings(_Section):
    lease_seconds: float = Field(default=30.0, gt=0)
    max_in_flight: int = Field(default=64, ge=1)
    poll_interval: float = Field(default=1.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    backoff_base: float = Field(default=2.0, gt=0)
    backoff_cap: float = Field(default=300.0, gt=0)
    max_retry_after: float = Field(
        default=3600.0,
        gt=0,
        description="Longest wait in seconds a provider's Retry-After may impose on a message",
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive provider failures that open its circuit"
    )
    breaker_cooldown: float = Field(
        default=30.0, gt=0, description="Seconds a circuit stays open (doubles while it fails)"
    )
    breaker_cooldown_cap: float = Field(default=300.0, gt=0)
    shutdown_grace: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a stopping engine waits for requests already sent to answer",
    )


class TriggerSettings(_Section):
    """How cron campaigns and re-engagement sweeps run (engine.triggers)."""

    sweep_interval: float = Field(
        default=60.0, gt=0, description="Seconds between re-engagement sweeps, at least"
    )
    chunk_size: int = Field(
        default=1000, ge=1, le=5000, description="Contacts a fan-out or sweep handles per step"
    )
    misfire_grace: float = Field(
        default=3600.0,
        ge=0,
        description="Seconds a cron firing may be late and still run, unless the trigger says",
    )


def _duration(value: Any) -> Any:
    """``30d``, ``10m``, ``1h30m`` or a number of seconds, as flow files write durations."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a duration; write it like 10m, 2h or 30d")
    return parse_duration(value)


ConfigDuration = Annotated[timedelta, BeforeValidator(_duration)]
# max_per_day counts the messages of the contact's local day (up to 25 h on the day
# clocks go back) and reads them from the messages table: nothing younger may go.
MIN_KEEP = timedelta(days=2)


class RetentionSettings(_Section):
    """How long what has finished is kept (engine.retention)."""

    keep: ConfigDuration | None = Field(
        default=timedelta(days=30),
        description="Delete finished runs (with their messages and events), events of no "
        "run, unmatched status reports and cron firings older than this; null keeps all",
    )
    every: ConfigDuration = Field(
        default=timedelta(minutes=10), description="How often the purge looks for old rows"
    )
    batch: int = Field(
        default=100, ge=1, le=5000, description="Runs (and rows of each other kind) per transaction"
    )

    @field_validator("keep")
    @classmethod
    def _long_enough(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < MIN_KEEP:
            raise ValueError(
                f"keep at least {format_duration(MIN_KEEP)} (the max_per_day rule counts a "
                "whole local day of messages), or null to keep everything"
            )
        return value

    @field_validator("every")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("purge at most once a second; write it like 10m or 1h")
        return value


STORE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
STORE_HINT = "use sqlite:///path/to/file.db or postgresql://user@host/db"
DEFAULT_STORAGE = "sqlite:///var/disparo.db"


class Settings(_Section):
    """Everything ``disparo serve`` needs; build it with ``load_settings``."""

    storage: str = Field(default=DEFAULT_STORAGE, description="sqlite:///path or postgresql://...")
    server: ServerSettings = Field(default_factory=ServerSettings)
    api_token: SecretStr = Field(description="Bearer token of the /v1 API")
    timezone: str = Field(default="America/Sao_Paulo", description="Default IANA time zone")
    flows: Path = Field(default=Path("flows"), description="Folder of flow files")
    templates: Path | None = Field(default=None, description="Template catalogue (YAML)")
    log_format: Literal["text", "json"] = "text"
    dispatcher: DispatcherSettings = Field(default_factory=DispatcherSettings)
    triggers: TriggerSettings = Field(default_factory=TriggerSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    opt_out_keywords: tuple[str, ...] = DEFAULT_OPT_OUT_KEYWORDS
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)

    @field_validator("storage")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if not value.startswith(STORE_SCHEMES):
            raise ValueError(STORE_HINT)
        return value

    @field_validator("api_token")
    @classmethod
    def _some_token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the API token is empty; set DISPARO_API_TOKEN or `api_token:`")
        why = too_short(value.get_secret_value(), "set DISPARO_API_TOKEN (or `api_token:`) to")
        if why is not None:
            # Its own error type: the config's wording hides a secret's ValueError text
            # that holds the secret, and a short one (`it`) is in most sentences.
            raise PydanticCustomError("secret_too_short", why)
        return value

    @field_validator("opt_out_keywords")
    @classmethod
    def _keywords_say_something(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # A blank keyword would opt out whoever sends a reply of spaces (an emoji
        # keyword is fine); an empty list turns keyword opt-out off.
        for index, keyword in enumerate(value):
            if not normalise_keyword(keyword):
                raise ValueError(
                    f"keyword {index + 1} ({keyword!r}) is blank: a reply of spaces would "
                    "opt the contact out; remove it"
                )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        why = timezone_problem(value)
        if why is not None:
            raise ValueError(why)
        return value

    @field_validator("providers", mode="before")
    @classmethod
    def _typed_providers(cls, value: Any) -> Any:
        """Entries given as mappings are validated by their type's model (``load_settings``
        passes models already; this serves settings built in code)."""
        if not isinstance(value, Mapping):
            return value
        out: dict[Any, Any] = {}
        for name, entry in value.items():
            if isinstance(entry, Mapping) and entry.get("type") in registry.PROVIDER_TYPES:
                model = registry.config_model_for(str(entry["type"]))
                try:
                    entry = model.model_validate(entry)
                except ValidationError as exc:
                    said = "; ".join(
                        f"{format_path(e['loc'])}: "
                        + ("is not valid" if _secret_path(e["loc"]) else e["msg"])
                        for e in exc.errors()
                    )
                    raise ValueError(f"provider `{name}`: {said}") from None
            out[name] = entry
        return out

    @property
    def api_token_value(self) -> str:
        return self.api_token.get_secret_value()

    def secret_values(self) -> tuple[str, ...]:
        """Every secret in the settings (API token, provider credentials), for redaction."""
        found = [self.api_token_value, *url_secrets(self.storage)]
        for config in self.providers.values():
            for name in type(config).model_fields:
                value = getattr(config, name)
                found.extend(_secrets_in(value, SECRET_FIELD.search(name)))
                if name.endswith("url") and isinstance(value, str):
                    found.extend(url_secrets(value))  # user:password@, ?apikey=
        return tuple(dict.fromkeys(s for s in found if s))

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "providers":
                yield name, {key: _Masked(config) for key, config in self.providers.items()}
            else:
                yield name, value


def _secrets_in(value: Any, secret_name: object) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, str):
        return [value] if secret_name else []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _secrets_in(v, secret_name)]
    return []


class _Masked:
    """A provider config as its repr, with secret-named fields masked."""

    def __init__(self, config: BaseModel) -> None:
        parts = []
        for name in type(config).model_fields:
            value = getattr(config, name)
            hidden = SECRET_FIELD.search(name) and isinstance(value, str)
            parts.append(f"{name}={_MASK if hidden else repr(value)}")
        self.text = f"{type(config).__name__}({', '.join(parts)})"

    def __repr__(self) -> str:
        return self.text


def _secret_path(path: DocPath) -> bool:
    return any(isinstance(p, str) and SECRET_FIELD.search(p) for p in path)


# ------------------------------------------------------------------ loading


def load_settings(path: Path, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read, interpolate and validate a config file.

    Raises ``ConfigError`` listing every problem (file:line:col, plain words) found in
    one pass: YAML problems, unset variables, unknown or invalid keys, providers.
    """
    raw, where = _read_config(path)
    unread: list[Problem] = []
    data = _interpolate(raw, (), environ, where, unread)
    problems: list[Problem] = []
    settings_data = {k: v for k, v in data.items() if k != "providers"}
    settings_data["providers"] = _providers(data.get("providers"), data, where, problems)
    try:
        settings = Settings.model_validate(settings_data)
    except ValidationError as exc:
        problems += problems_from_validation(
            exc, Settings, data, where, describer=CONFIG_WORDS, secret=_secret_path
        )
    # A value that could not be read is not judged as well.
    unread_paths = {p.path for p in unread}
    problems = unread + [p for p in problems if p.path not in unread_paths]
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise ConfigError(f"{where.filename}: {counted(len(problems), 'problem')}", problems)
    return settings


def load_storage(path: Path, environ: Mapping[str, str] = os.environ) -> str:
    """Only the ``storage`` of a config file, for the commands that touch nothing
    else (``disparo migrate``, ``disparo status``): a migration job or an on-call
    shell needs the database's credentials, not every provider's secrets."""
    data, where = _read_config(path)
    problems: list[Problem] = []
    value = _interpolate(
        data.get("storage", DEFAULT_STORAGE), ("storage",), environ, where, problems
    )
    if not problems and not (isinstance(value, str) and value.startswith(STORE_SCHEMES)):
        problems.append(where.problem(("storage",), f"`storage`: {STORE_HINT}"))
    if problems:
        raise ConfigError(f"{where.filename}: {counted(len(problems), 'problem')}", problems)
    return str(value)


def _read_config(path: Path) -> tuple[dict[str, Any], SourceMap]:
    """The config file's mapping (empty for an empty file) and where each part was
    written; a ``ConfigError`` for YAML it cannot read or a document of another shape."""
    try:
        document = read_yaml(path)
    except YamlSourceError as exc:
        raise ConfigError(str(exc), exc.problems) from None
    where = document.source_map
    if document.data is not None and not isinstance(document.data, dict):
        problem = where.problem((), "the config must be a mapping of keys, like `storage: ...`")
        raise ConfigError(str(problem), [problem])
    return document.data or {}, where


def _interpolate(
    value: Any, path: DocPath, environ: Mapping[str, str], where: SourceMap, out: list[Problem]
) -> Any:
    """A copy of ``value`` with ``${VAR}`` references in strings replaced."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), environ, where, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), environ, where, out) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$${":
            return "${"
        body = match.group(1)
        parsed = _VARIABLE.match(body) if body is not None else None
        if parsed is None:
            shown = f"`{text}`" if body is not None else "`${` that is never closed with `}`"
            out.append(
                where.problem(
                    path,
                    f"{shown} in `{format_path(path)}` is not a variable reference; "
                    "write ${NAME} or ${NAME:-default}",
                )
            )
            return text
        name, default = parsed.group(1), parsed.group(2)
        found = environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        if found is None:
            out.append(
                where.problem(
                    path,
                    f"environment variable `{name}` is not set (used by `{format_path(path)}`); "
                    f"set it, or give a default: ${{{name}:-...}}",
                )
            )
        return ""

    return _REFERENCE.sub(replace, value)


def _providers(
    raw: Any, data: Any, where: SourceMap, out: list[Problem]
) -> dict[str, ProviderConfig]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        out.append(where.problem(("providers",), "`providers` must map provider names to settings"))
        return {}
    known = sorted(registry.PROVIDER_TYPES)
    configs: dict[str, ProviderConfig] = {}
    for name, entry in raw.items():
        path: DocPath = ("providers", name)
        if not re.match(STEP_ID, name):
            out.append(
                where.problem(
                    path,
                    f"provider name `{name}` must be letters, digits, `_` and `-` "
                    "(it is part of the webhook URL)",
                    at_key=True,
                )
            )
        if not isinstance(entry, dict):
            out.append(
                where.problem(
                    path, f"provider `{name}` must be a mapping with `type:` and settings"
                )
            )
            continue
        type_name = entry.get("type")
        if type_name is None:
            message = f"provider `{name}` needs `type:` (one of: {', '.join(known)})"
            out.append(where.problem(path, message, at_key=True))
            continue
        if not isinstance(type_name, str) or type_name not in registry.PROVIDER_TYPES:
            hint = did_you_mean(str(type_name), known) or f"; known types: {', '.join(known)}"
            message = f"provider `{name}` has unknown type `{type_name}`{hint}"
            out.append(where.problem((*path, "type"), message))
            continue
        model = registry.config_model_for(type_name)
        try:
            configs[name] = model.model_validate(entry)
        except ValidationError as exc:
            out.extend(
                problems_from_validation(
                    exc,
                    model,
                    data,
                    where,
                    describer=CONFIG_WORDS,
                    prefix=path,
                    secret=_secret_path,
                )
            )
        else:
            _guessable_webhook_secret(configs[name], path, where, out)
    return configs


def _guessable_webhook_secret(
    config: ProviderConfig, path: DocPath, where: SourceMap, out: list[Problem]
) -> None:
    if config.webhook_secret is None:
        return
    why = too_short(
        config.webhook_secret,
        "set it to",
        "; then give the vendor the webhook URL with ?token=<it>",
    )
    if why is not None:
        field = (*path, "webhook_secret")
        out.append(where.problem(field, f"`webhook_secret` in provider `{path[-1]}` {why}"))
