"""The documentation tells the truth about the settings (``make docs`` refreshes it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from idserver.config import SETTINGS
from idserver.config import with_settings_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("document", ["README.md", "docs/operations.md"])
def test_settings_table_is_current(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    assert "<!-- settings:start -->" in text
    assert with_settings_table(text) == text, f"{document} is out of date: run `make docs`"
    for setting in SETTINGS:
        assert f"`IDSERVER_{setting.name}`" in text
