"""The layering the design asks for: api/ and studio/ call engine functions; they never open database sessions
or build SQL themselves (so no route or page can hold a transaction, or block the event loop on one)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_MODULES = ("sqlmodel", "sqlalchemy", "engine.data.db")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["api", "studio"])
def test_no_database_access_outside_the_engine(package):
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = {name for name in _imports(path)
               if any(name == forbidden or name.startswith(forbidden + ".") for forbidden in FORBIDDEN_MODULES)}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_engine_is_in_subpackages():
    """engine/ shows its architecture: a handful of top-level modules, the rest in subpackages."""
    top_level = sorted(p.stem for p in (ROOT / "engine").glob("*.py"))
    assert top_level == ["__init__", "config", "errors", "runtime_settings", "service"]
    assert {p.name for p in (ROOT / "engine").iterdir() if (p / "__init__.py").exists()} >= {
        "accounts", "billing", "data", "generation", "storage", "tools"}
