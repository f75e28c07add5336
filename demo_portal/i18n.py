"""Language: German pages through Flask-Babel; message ids are English.

The catalogues live as text (``translations/<lang>/LC_MESSAGES/messages.po``); on start a
portal compiles any that changed into its instance folder, so no binary file is committed.
"""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask_babel import Babel

from .private_files import write_private

__all__ = ["CATALOGUES", "DEFAULT_LOCALE", "compile_catalogues", "init_app"]

CATALOGUES = Path(__file__).parent / "translations"
DEFAULT_LOCALE = "de"


def compile_catalogues(target: Path) -> None:
    """Compile every ``.po`` under CATALOGUES into ``target`` unless its ``.mo`` is newer."""
    for source in sorted(CATALOGUES.glob("*/LC_MESSAGES/*.po")):
        compiled = target / source.relative_to(CATALOGUES).with_suffix(".mo")
        if compiled.exists() and compiled.stat().st_mtime >= source.stat().st_mtime:
            continue
        with source.open("rb") as handle:
            catalogue = read_po(handle)
        buffer = io.BytesIO()
        write_mo(buffer, catalogue)
        compiled.parent.mkdir(parents=True, exist_ok=True)
        write_private(compiled, buffer.getvalue())


def init_app(app: Flask) -> None:
    compiled = Path(app.config["INSTANCE_PATH"]) / "translations"
    compile_catalogues(compiled)
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LOCALE
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compiled)
    Babel(app, locale_selector=lambda: DEFAULT_LOCALE)
