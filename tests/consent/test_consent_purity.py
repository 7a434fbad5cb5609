"""consent/ is a pure library: no gateway, no HTTP, no SQL, no pydantic in the decision path."""

from __future__ import annotations

import ast
from pathlib import Path

import consent

PACKAGE = Path(consent.__file__).parent
FORBIDDEN = {
    "gateway",
    "fastapi",
    "starlette",
    "httpx",
    "sqlalchemy",
    "psycopg",
    "uvicorn",
    "pydantic",
    "fhir",
    "requests",
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_consent_imports_no_service_or_model_library():
    offenders = {
        f"{path.name}: {sorted(imported_roots(path) & FORBIDDEN)}"
        for path in PACKAGE.glob("*.py")
        if imported_roots(path) & FORBIDDEN
    }
    assert not offenders


def test_public_api_is_what_init_exports():
    for name in consent.__all__:
        assert hasattr(consent, name), name
    private = [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    assert all(stem.startswith("_") for stem in private), private
