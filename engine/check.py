"""`disparo check`: every problem of the config, the template catalogue and the flow
files, in one pass, as ``file:line:col: message``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from engine.content_checks import content_limits
from engine.errors import ConfigError, Problem, UserInputError
from engine.flow.loader import load_flow, load_flows
from engine.flow.validate import FlowCheck
from engine.flow_checks import provider_capabilities, template_catalog, template_syntax
from engine.opt_out import DEFAULT_OPT_OUT_KEYWORDS
from engine.settings import Settings, load_settings
from engine.template_catalog import TemplateCatalog, load_template_catalog
from engine.triggers import opt_out_keyword_triggers, trigger_problems
from providers.base import Capabilities, ProviderHost
from providers.registry import provider_class


def capabilities_of(settings: Settings) -> dict[str, Capabilities]:
    """What each configured provider can do, without starting it (no network)."""
    out: dict[str, Capabilities] = {}
    for name, config in settings.providers.items():
        provider = provider_class(config.type)(name, config, cast(ProviderHost, None))
        out[name] = provider.capabilities
    return out


def flow_checks(
    capabilities: Mapping[str, Capabilities],
    catalog: TemplateCatalog | None,
    opt_out_keywords: Sequence[str] = DEFAULT_OPT_OUT_KEYWORDS,
) -> list[FlowCheck]:
    checks: list[FlowCheck] = [
        template_syntax,
        content_limits,
        provider_capabilities(capabilities),
        trigger_problems,
        opt_out_keyword_triggers(opt_out_keywords),
    ]
    if catalog is not None:
        checks.append(template_catalog(catalog, capabilities))
    return checks


def load_catalog(settings: Settings) -> TemplateCatalog | None:
    return load_template_catalog(settings.templates) if settings.templates else None


def check(config_path: str | Path, paths: Sequence[Path] = ()) -> list[Problem]:
    """Problems of the config and of ``paths`` (files or directories; default: the
    config's ``flows:``). An empty list means everything is ready to serve."""
    config = Path(config_path)
    if not config.exists():
        return [Problem(message="no such config file; pass --config PATH", file=str(config))]
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        return exc.problems or [Problem(message=str(exc), file=str(config))]
    problems: list[Problem] = []
    catalog: TemplateCatalog | None = None
    try:
        catalog = load_catalog(settings)
    except ConfigError as exc:
        problems += exc.problems or [Problem(message=str(exc), file=str(settings.templates))]
    capabilities = capabilities_of(settings)
    checks = flow_checks(capabilities, catalog, settings.opt_out_keywords)
    # `disparo check config/disparo.yaml`: the config (and the template catalogue)
    # were checked as such above, not as flows with unknown keys.
    checked = {config.resolve()}
    if settings.templates:
        checked.add(Path(settings.templates).resolve())
    for target in paths or [Path(settings.flows)]:
        if target.resolve() not in checked:
            problems += _check_path(target, capabilities, checks, named=bool(paths))
    return problems


def _check_path(
    target: Path, providers: Mapping[str, Any], checks: list[FlowCheck], *, named: bool
) -> list[Problem]:
    try:
        # The config's `flows:` is a folder, there or not (its problem names the key).
        if target.is_dir() or not named:
            flows = load_flows(target, providers=providers, extra_checks=checks)
            if named and not flows:
                # A mistyped folder (`flow/` for `flows/`) must not read as all clear.
                return [Problem(message="no flow files (*.yaml, *.yml) here", file=str(target))]
        else:
            load_flow(target, providers=providers, extra_checks=checks)
    except UserInputError as exc:
        return exc.problems or [Problem(message=str(exc), file=str(target))]
    return []
