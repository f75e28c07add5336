"""Imports in ``idserver/`` point one way: down the layers of docs/architecture.md, in no circle.

A module may import its own package and anything in a lower layer; the only upward import is the
CLI's ``create_app``. Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "idserver"

# Lowest first, as the table in docs/architecture.md ("Layers"). A name is a top-level module or
# package of idserver/ ("" is idserver/__init__.py).
LAYERS: list[set[str]] = [
    {"config", "logs", "i18n"},
    {"errors"},
    {"db", "metrics", "csrf", "inputs", "proxy"},
    {"db_migrate", "states", "sessions", "keys", "limits", "web", "pages"},
    {"audit"},
    {"passkeys"},
    {"citizens"},
    {"assurance"},
    {"clerks"},
    {"crosslogin"},
    {"oidc"},
    {"saml"},
    {"account"},
    {"admin", "api"},
    {"", "cli", "health", "models", "phone"},
]
ALLOWED_UPWARD = {("cli", "")}  # `idserver serve` builds the app with create_app


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.relative_to(PACKAGE).parts
    }


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The idserver modules ``name`` imports, anywhere in it, resolved to modules that exist."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            targets = [
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _area(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _layer(area: str) -> int:
    for number, layer in enumerate(LAYERS):
        if area in layer:
            return number
    raise AssertionError(f"idserver/{area or '__init__'} has no layer in LAYERS: add it")


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_every_module_has_a_layer():
    for module in _graph():
        _layer(_area(module))


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = sorted(
        f"{module} -> {other}"
        for module, imports in _graph().items()
        for other in imports
        if _layer(_area(other)) > _layer(_area(module))
        and (_area(module), _area(other)) not in ALLOWED_UPWARD
    )
    assert not upward, upward


def test_no_import_circle():
    circles = [
        circle
        for circle in _circles(_graph())
        if {_area(m) for m in circle} != {"", "cli"}  # create_app ↔ the CLI it registers
    ]
    assert not circles, circles


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The rules above can fail: a made-up graph with both faults is caught."""
    graph = {
        "idserver.oidc.a": {"idserver.crosslogin.b"},
        "idserver.crosslogin.b": {"idserver.oidc.a"},
    }
    assert _circles(graph) == [["idserver.crosslogin.b", "idserver.oidc.a"]]
    assert _layer(_area("idserver.crosslogin.b")) < _layer(_area("idserver.oidc.a"))
