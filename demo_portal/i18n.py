"""Language: German or English pages through Flask-Babel; message ids are English.

The language is the one chosen with the switch on every page (kept in the session), else the
browser's preference (``Accept-Language``), else German. The portal passes it on to
Bürger-ID's login page as ``ui_locales`` (OIDC Core §3.1.2.1).

The catalogues live as text (``translations/<lang>/LC_MESSAGES/messages.po``); on start a
portal compiles any that changed into its instance folder, so no binary file is committed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Blueprint
from flask import Flask
from flask import redirect
from flask import request
from flask import session
from flask_babel import Babel

from .private_files import write_private
from .web import LANGUAGE_KEY
from .web import local_path

__all__ = ["CATALOGUES", "DEFAULT_LOCALE", "LANGUAGES", "compile_catalogues", "init_app"]

CATALOGUES = Path(__file__).parent / "translations"
DEFAULT_LOCALE = "de"
LANGUAGES = {"de": "Deutsch", "en": "English"}

bp = Blueprint("language", __name__)


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
    app.config["BABEL_DEFAULT_TIMEZONE"] = app.config["TIMEZONE"]  # times shown in local time
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(bp)
    app.jinja_env.globals["languages"] = LANGUAGES


def select_locale() -> str:
    chosen = session.get(LANGUAGE_KEY)
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT_LOCALE) or DEFAULT_LOCALE


@bp.post("/language")
def choose_language() -> Any:
    """The language switch (a CSRF-checked form like every POST); back to the page it was on."""
    chosen = request.form.get("lang")
    if chosen in LANGUAGES:
        session[LANGUAGE_KEY] = chosen
    return redirect(local_path(request.form.get("next")), 303)
