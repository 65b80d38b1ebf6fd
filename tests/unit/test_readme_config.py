"""Every key `config/disparo.yaml` takes is in the README's Configuration section: a
key the product reads but the README never names is a setting nobody can find."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from engine.settings import Settings
from providers.registry import PROVIDER_TYPES, config_model_for

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Configuration\n")
    return text[start : text.index("\n## ", start + 1)]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if name == "providers":
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


@pytest.mark.parametrize("key", _keys(Settings))
def test_every_config_key_is_in_the_readme(key: str) -> None:
    assert f"`{key}`" in _section()


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        (kind, key)
        for kind in sorted(PROVIDER_TYPES)
        for key in config_model_for(kind).model_fields
        if key != "type"
    ],
)
def test_every_provider_key_is_in_the_readme(kind: str, key: str) -> None:
    section = _section()
    common = section[section.index("Every provider takes") :].split("\n\n")[0]
    [row] = [line for line in section.splitlines() if line.startswith(f"| `{kind}` |")]

    assert f"`{key}`" in row or f"`{key}`" in common
