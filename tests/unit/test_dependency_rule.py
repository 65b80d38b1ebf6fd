"""ARCHITECTURE.md's dependency rule: `engine.models` and `engine.errors` are the
shared kernel; `providers` and `storage` import only the kernel, never each other or
the rest of `engine`; `engine` reaches adapters only through their `base` modules and
the two composition points (the provider registry, `engine.stores.open_store`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL = {"engine.models", "engine.errors", "engine.shared_state"}
ENGINE_MAY_USE = {"providers.base", "providers.registry", "storage.base"}
COMPOSITION_ROOTS = {"engine/stores.py": {"storage.sqlite", "storage.postgres"}}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["providers", "storage"])
def test_adapters_import_only_the_kernel(package: str) -> None:
    other = "storage" if package == "providers" else "providers"
    broken = []
    for path in modules(package):
        for name in imports_of(path):
            top = name.split(".")[0]
            if (top == "engine" and name not in KERNEL) or top == other:
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert broken == []


def test_the_engine_reaches_adapters_only_through_their_base_modules() -> None:
    broken = []
    for path in modules("engine"):
        where = str(path.relative_to(ROOT))
        allowed = ENGINE_MAY_USE | COMPOSITION_ROOTS.get(where, set())
        broken += [
            f"{where} imports {name}"
            for name in imports_of(path)
            if name.split(".")[0] in ("providers", "storage") and name not in allowed
        ]
    assert broken == []


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from engine.runtime import Engine\nimport storage.sqlite\n")
    assert imports_of(bad) == {"engine.runtime", "storage.sqlite"}
