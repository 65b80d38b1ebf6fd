"""The approved WhatsApp templates (config/templates.yaml), by the name flows use.

A flow names a template (`template: {name: boleto_vencendo, params: ...}`); the
catalogue says which parameters it takes and how each provider instance knows it
(its id there and its language). `disparo check` compares flows against it; the
sender resolves the name to the provider's id before sending.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from engine.errors import ConfigError, Problem
from engine.flow.problems import Describer, problems_from_validation
from engine.flow.yaml_source import YamlSourceError, read_yaml
from engine.wording import counted


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderTemplate(_Model):
    id: str = Field(min_length=1, description="The template's id (name) at this provider")
    language: str | None = Field(default=None, description="Language code, e.g. pt_BR")


class TemplateEntry(_Model):
    params: list[str] = Field(default_factory=list, description="Parameter names, in order")
    providers: dict[str, ProviderTemplate] = Field(
        min_length=1, description="Provider instance name -> how that provider knows it"
    )

    @field_validator("params")
    @classmethod
    def _distinct_names(cls, params: list[str]) -> list[str]:
        # Providers take parameters by position: a name listed twice would send one
        # value fewer than the template WhatsApp approved takes.
        if any(not name.strip() for name in params):
            raise ValueError("a parameter needs a name; write the names in order")
        twice = sorted({name for name in params if params.count(name) > 1})
        if twice:
            raise ValueError(
                f"`{twice[0]}` is listed twice; each parameter of the template has a name "
                "of its own, in the template's order"
            )
        return params


class TemplateCatalog(_Model):
    templates: dict[str, TemplateEntry] = Field(default_factory=dict)
    _path: Path | None = PrivateAttr(default=None)  # the file it was read from

    @property
    def where(self) -> str:
        """The catalogue's file, for messages that tell the operator what to edit."""
        return str(self._path) if self._path is not None else "the config's `templates:` file"

    def resolve(self, name: str, provider: str) -> ProviderTemplate | None:
        entry = self.templates.get(name)
        return entry.providers.get(provider) if entry is not None else None


_WORDS = Describer(named={"templates": "template", "providers": "provider"})


def load_template_catalog(path: Path) -> TemplateCatalog:
    """Read and validate the catalogue; every problem is reported as file:line:col."""
    if not path.exists():
        problem = Problem(
            message="no such template catalogue; check `templates:` in the config", file=str(path)
        )
        raise ConfigError(str(problem), [problem])
    try:
        document = read_yaml(path)
    except YamlSourceError as exc:
        raise ConfigError(str(exc), exc.problems) from None
    data = document.data if document.data is not None else {}
    try:
        catalog = TemplateCatalog.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(
            exc, TemplateCatalog, data, document.source_map, describer=_WORDS
        )
        raise ConfigError(f"{path}: {counted(len(problems), 'problem')}", problems) from None
    catalog._path = path
    return catalog


def template_changes(
    before: TemplateCatalog | None, after: TemplateCatalog | None
) -> tuple[list[str], list[str], list[str]]:
    """The template names ``after`` added, changed (params, ids or languages) and
    removed, compared with ``before``."""
    old = before.templates if before is not None else {}
    new = after.templates if after is not None else {}
    return (
        sorted(set(new) - set(old)),
        sorted(name for name in new if name in old and new[name] != old[name]),
        sorted(set(old) - set(new)),
    )
