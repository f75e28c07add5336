"""The demo portals are examples to copy: they speak only HTTP/OpenID Connect to Bürger-ID.

Only the operator set-up (``demo_portal/setup_idp.py``) may import Bürger-ID's own code; the
package has no import cycles; the walk-through reads pages with a parser, not regular
expressions.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "demo_portal"
OPERATOR_SET_UP = "demo_portal.setup_idp"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (also inside functions), absolute."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_only_the_operator_set_up_imports_idserver():
    offenders = {
        module: sorted(i for i in imports if i == "idserver" or i.startswith("idserver."))
        for module, imports in _modules().items()
        if module != OPERATOR_SET_UP
    }
    assert not {m: i for m, i in offenders.items() if i}, offenders
    assert any(i.startswith("idserver") for i in _modules()[OPERATOR_SET_UP])


def test_portals_do_not_reach_into_the_operator_set_up():
    """The portals themselves (everything a request runs) never load the operator's module."""
    allowed = {OPERATOR_SET_UP, "demo_portal.launcher", "demo_portal.__main__"}
    users = {m for m, imports in _modules().items() if OPERATOR_SET_UP in imports}
    assert users <= allowed, users


def test_no_import_cycles():
    modules = _modules()
    graph = {
        module: {target for target in imports if target in modules and target != module}
        for module, imports in modules.items()
    }
    # A package's __init__ importing its own submodules is how packages export; not a cycle.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " → ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for target in sorted(graph[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_walkthrough_reads_pages_with_a_parser():
    imports = _modules()["demo_portal.walkthrough"]
    assert "re" not in imports
    assert "demo_portal.page" in imports
