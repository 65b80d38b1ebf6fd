"""`disparo check` when the config points at a folder or catalogue that is not
there: the problem names the config key to fix, as `disparo serve` does."""

from __future__ import annotations

from pathlib import Path

from engine.check import check

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, *, flows: str, templates: str) -> Path:
    config = tmp_path / "disparo.yaml"
    config.write_text(
        (ROOT / "config" / "disparo.yaml")
        .read_text()
        .replace("flows: flows/", f"flows: {flows}")
        .replace("templates: config/templates.yaml", f"templates: {templates}")
    )
    return config


def test_a_flows_folder_that_is_not_there_names_the_flows_key(tmp_path: Path) -> None:
    missing = tmp_path / "flow"  # `flow/` for `flows/`
    config = _config(tmp_path, flows=str(missing), templates=str(ROOT / "config/templates.yaml"))

    [problem] = check(config)

    assert str(problem) == f"{missing}: no such flows directory; check `flows:` in the config"


def test_a_template_catalogue_that_is_not_there_names_the_templates_key(tmp_path: Path) -> None:
    missing = tmp_path / "template.yaml"
    config = _config(tmp_path, flows=str(ROOT / "flows"), templates=str(missing))

    problems = [str(p) for p in check(config)]

    assert problems[0] == (
        f"{missing}: no such template catalogue; check `templates:` in the config"
    )
