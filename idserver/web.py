"""What every page shares: language, security headers, client address, the home page."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import render_template
from flask import request
from flask.json.provider import DefaultJSONProvider
from flask_babel import Babel
from flask_babel import lazy_gettext as _l
from werkzeug.middleware.proxy_fix import ProxyFix

from . import i18n
from .config import issuer_is_https
from .errors import IdServerError

bp = Blueprint("web", __name__)

SUPPORTED_LANGUAGES = ("de", "en")  # German first: the default where a catalogue exists

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self' {form_targets}; frame-ancestors 'none'"
)


def available_languages(app: Flask) -> tuple[str, ...]:
    """English (the message ids) plus every language whose catalogue ``i18n`` compiled."""
    folder = app.config["BABEL_TRANSLATION_DIRECTORIES"]
    return tuple(
        lang
        for lang in SUPPORTED_LANGUAGES
        if lang == "en" or os.path.exists(os.path.join(folder, lang, "LC_MESSAGES", "messages.mo"))
    )


def has_kern_stylesheet(app: Flask) -> bool:
    """Whether ``make install`` could fetch the KERN UX stylesheet (``tools/vendor.py``).

    Decided once at start: with it the pages link KERN before their own stylesheet, without it
    they look tidy with their own stylesheet alone.
    """
    folder = app.static_folder or ""
    return os.path.isfile(os.path.join(folder, "vendor", "kern", "kern.min.css"))


def no_store(response: Response) -> Response:
    """Mark a response as never to be cached (pages and answers about one person or login)."""
    response.headers["Cache-Control"] = "no-store"
    return response


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    chosen = request.args.get("lang") or request.cookies.get("lang")
    if chosen and chosen in languages:
        return chosen
    return request.accept_languages.best_match(languages) or languages[0]


def language_url(lang: str) -> str:
    """This page again in ``lang``, keeping its query (the phone page needs its QR frame)."""
    args = request.args.to_dict()
    args["lang"] = lang
    return request.path + "?" + urlencode(args)


def client_address() -> str:
    """The caller's address (behind a trusted proxy, ProxyFix has already set it)."""
    return (request.remote_addr or "unknown")[:64]


class InputJSONProvider(DefaultJSONProvider):
    """Request bodies: too deep, NUL characters or lone surrogates make them malformed.

    Such strings cannot be stored or even looked up (PostgreSQL refuses NUL; UTF-8 has no
    surrogates), so they are refused where the body is parsed: ``get_json`` sees a ValueError.
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, str):
                _check_storable(item)
        return value


def _check_storable(text: str) -> None:
    if "\x00" in text:
        raise ValueError("NUL character")
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate


def refuse_unstorable_input() -> None:
    """The same rule for the path, query, headers and form fields, before any view runs."""
    texts = [request.path, *request.headers.values()]
    texts += [text for key, values in request.args.lists() for text in (key, *values)]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        texts += [text for key, values in request.form.lists() for text in (key, *values)]
    try:
        for text in texts:
            _check_storable(text)
    except ValueError as exc:
        raise IdServerError(_l("The request contains characters that are not allowed.")) from exc


def init_app(app: Flask) -> None:
    i18n.init_app(app)
    app.config["LANGUAGES"] = available_languages(app)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", app.config["TIMEZONE"])
    app.json = InputJSONProvider(app)
    app.before_request(refuse_unstorable_input)
    Babel(app, locale_selector=select_locale)
    secure = issuer_is_https(app.config)
    app.config.update(
        SESSION_COOKIE_NAME="__Host-session" if secure else "session",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=app.config["SESSION_TTL_SECONDS"],
    )
    if app.config["TRUST_PROXY"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]

    app.jinja_env.globals["kern_stylesheet"] = has_kern_stylesheet(app)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "current_locale": select_locale(),
            "other_languages": [
                lang for lang in current_app.config["LANGUAGES"] if lang != select_locale()
            ],
            "language_url": language_url,
            "issuer": current_app.config["ISSUER"],
        }

    @app.after_request
    def _headers(response: Response) -> Response:
        # Authorization responses redirect to the RP: form-action must allow that redirect chain.
        response.headers.setdefault("Content-Security-Policy", CSP.format(form_targets="").strip())
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), geolocation=()")
        if issuer_is_https():
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=63072000; includeSubDomains"
            )
        if request.args.get("lang") in current_app.config["LANGUAGES"]:
            response.set_cookie(
                "lang", request.args["lang"], max_age=365 * 86400, samesite="Lax", httponly=True
            )
        return response


@bp.get("/")
def home() -> str:
    config = current_app.config
    return render_template(
        "home.html", office=config["OFFICE_NAME"], office_contact=config["OFFICE_CONTACT"]
    )


# The accessibility statement says when it was last checked against the pages (BITV 2.0 § 7):
# review it, and move this date, whenever pages change in a way that affects the known gaps.
ACCESSIBILITY_REVIEWED = dt.date(2026, 11, 21)
ARBITRATION_BOARD = (
    "Schlichtungsstelle nach dem Behindertengleichstellungsgesetz bei dem Beauftragten der "
    "Bundesregierung für die Belange von Menschen mit Behinderungen",
    "Mauerstraße 53",
    "10117 Berlin",
)
ARBITRATION_BOARD_WEBSITE = "https://www.schlichtungsstelle-bgg.de"


@bp.get("/barrierefreiheit")
def accessibility() -> str:
    """Erklärung zur Barrierefreiheit (BITV 2.0 § 7; model: EU implementing decision 2018/1523)."""
    config = current_app.config
    return render_template(
        "accessibility.html",
        reviewed=ACCESSIBILITY_REVIEWED,
        login_minutes=max(1, round(config["LOGIN_TTL_SECONDS"] / 60)),
        pairing_minutes=max(1, round(config["PAIRING_TTL_SECONDS"] / 60)),
        idle_minutes=max(1, round(config["SESSION_IDLE_SECONDS"] / 60)),
        arbitration_board=ARBITRATION_BOARD,
        arbitration_board_website=ARBITRATION_BOARD_WEBSITE,
    )
