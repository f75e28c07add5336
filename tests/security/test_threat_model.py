"""docs/threat-model.md and the tests keep each other honest.

Every test the threat model names must exist (so the model cannot point at a missing or renamed
test), and every test of the security suite must be named in the model (so no attack is tested
without being modelled). Tests are found by parsing the test files, as pytest would collect them:
module-level ``test_*`` functions and ``test_*`` methods of ``Test*`` classes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
THREAT_MODEL = ROOT / "docs" / "threat-model.md"
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _collected_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and item.name.startswith("test")
            )
    return names


def _referenced() -> set[tuple[str, str]]:
    return set(NODE_ID.findall(THREAT_MODEL.read_text(encoding="utf-8")))


def test_every_test_the_threat_model_names_exists():
    referenced = _referenced()
    assert len(referenced) > 100
    missing = sorted(
        f"{path}::{name}"
        for path, name in referenced
        if not (ROOT / path).is_file() or name not in _collected_tests(ROOT / path)
    )
    assert not missing, "the threat model names tests that do not exist:\n" + "\n".join(missing)


def test_every_security_test_is_in_the_threat_model():
    named = {(path, name) for path, name in _referenced()}
    unmodelled = sorted(
        f"{path.relative_to(ROOT)}::{name}"
        for path in sorted((ROOT / "tests" / "security").glob("test_*.py"))
        if path.name != Path(__file__).name
        for name in _collected_tests(path)
        if (str(path.relative_to(ROOT)), name) not in named
    )
    assert not unmodelled, "security tests missing from the threat model:\n" + "\n".join(unmodelled)
