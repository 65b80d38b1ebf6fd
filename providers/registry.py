"""Provider types by the ``type:`` name used in config/disparo.yaml.

Modules are imported lazily so a deployment only loads the adapters it configures.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.errors import ConfigError
from providers.base import ProviderConfig

PROVIDER_TYPES: dict[str, str] = {
    "sandbox": "providers.sandbox:SandboxProvider",
    "http": "providers.http:HttpProvider",
    "robbu": "providers.robbu:RobbuProvider",
    "altu": "providers.altu:AltuProvider",
    "interflow": "providers.interflow:InterflowProvider",
}


def provider_class(type_name: str) -> Any:
    """The adapter class for a ``type:``; ``ConfigError`` names the known ones."""
    target = PROVIDER_TYPES.get(type_name)
    if target is None:
        known = ", ".join(sorted(PROVIDER_TYPES))
        raise ConfigError(f"unknown provider type {type_name!r}; use one of: {known}")
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def config_model_for(type_name: str) -> type[ProviderConfig]:
    model: type[ProviderConfig] = provider_class(type_name).config_model
    return model
