"""Where Debian's Chromium is, whether Playwright is installed, and how to start the browser.

Playwright's own browser download is never used: the tests drive the distribution's Chromium
(``E2E_CHROMIUM`` names another binary). Its profile, cache and crash dumps go to a
temporary HOME, so a test run writes nothing outside that folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["ENABLE_HINT", "find_chromium", "launch_chromium", "missing_requirement"]

ENABLE_HINT = "apt-get install chromium && pip install playwright Pillow"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    named = os.environ.get("E2E_CHROMIUM")
    if named:
        return shutil.which(named)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_requirement() -> str | None:
    """Why the browser tests cannot run here, with how to enable them; None if they can."""
    for package in ("playwright", "PIL", "zxingcpp", "numpy"):
        if importlib.util.find_spec(package) is None:
            return f"browser tests need Chromium and {package} (not installed): {ENABLE_HINT}"
    if find_chromium() is None:
        return f"browser tests need Chromium (no `chromium` on PATH): {ENABLE_HINT}"
    return None


def launch_chromium(playwright: Any, home: Path) -> Any:
    """Start headless Chromium with HOME and XDG folders under ``home``."""
    env = dict(os.environ)
    for name, sub in (
        ("HOME", ""),
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_RUNTIME_DIR", "run"),
    ):
        folder = home / sub
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[name] = str(folder)
    return playwright.chromium.launch(
        executable_path=find_chromium(), args=CHROMIUM_ARGS, env=env, timeout=30_000
    )
