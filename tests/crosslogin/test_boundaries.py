"""The QR login never speaks OAuth (issue 12.1): it imports neither ``idserver.oidc`` nor Authlib.

``oidc`` owns both legs of ``/authorize`` and tells the login what to show when it starts it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "idserver" / "crosslogin"


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names.add("." * node.level + module)
    return names


def test_the_login_imports_nothing_of_oidc_or_authlib():
    offending = {
        f"{path.name}: {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for name in _imported(path)
        if name.startswith(("idserver.oidc", "..oidc", "authlib"))
    }
    assert not offending
