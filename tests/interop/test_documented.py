"""docs/relying-parties.md's compatibility table names the library versions the interop tests ran.

A Python library is documented by ``major.minor`` (pip installs the newest release the extras
allow, so the patch level moves); openid-client is pinned in package-lock.json and documented
exactly. A release that changes either makes this test fail until the table is read again.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "relying-parties.md"
ROW = re.compile(r"^\| \[(?P<name>[^\]]+)\][^|]*\| (?P<version>[0-9][0-9.]*) \|", re.MULTILINE)


def documented_versions() -> dict[str, str]:
    section = GUIDE.read_text(encoding="utf-8").split("## Client libraries", 1)[1]
    section = section.split("\n## ", 1)[0]
    return {match["name"]: match["version"] for match in ROW.finditer(section)}


def openid_client_version() -> str:
    """The version node_modules holds, or where npm has not run, the one the lock file pins."""
    installed = ROOT / "node_modules" / "openid-client" / "package.json"
    if installed.is_file():
        return str(json.loads(installed.read_text())["version"])
    lock = json.loads((ROOT / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/openid-client"]["version"])


def names_installed(documented: str, installed: str) -> bool:
    return installed == documented or installed.startswith(documented + ".")


def test_the_table_lists_the_three_libraries_the_interop_tests_drive():
    assert set(documented_versions()) == {"Authlib", "pyoidc", "openid-client"}


@pytest.mark.parametrize(
    ("library", "installed"),
    [
        ("Authlib", lambda: version("Authlib")),
        ("pyoidc", lambda: version("oic")),
        ("openid-client", openid_client_version),
    ],
)
def test_the_table_names_the_installed_version(library, installed):
    documented = documented_versions()[library]
    assert names_installed(documented, installed()), (
        f"docs/relying-parties.md names {library} {documented}, but {installed()} is installed: "
        "run tests/interop with it and update the table"
    )


def test_package_json_pins_the_openid_client_the_lock_file_installs():
    declared = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert declared["openid-client"] == lock["packages"]["node_modules/openid-client"]["version"]
