"""What every response shares: language, session cookie, security headers, template globals.

The rules for what a request may carry are in ``inputs``, the client's address in ``proxy``,
the start page and the accessibility statement in ``pages``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import FunctionType
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from flask import Request
from flask import Response
from flask import current_app
from flask import g
from flask import request
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from flask_babel import refresh as refresh_locale
from itsdangerous import URLSafeTimedSerializer

from . import i18n
from . import inputs
from . import proxy
from .config import issuer_is_https
from .proxy import client_address

__all__ = [
    "CSP",
    "SUPPORTED_LANGUAGES",
    "Application",
    "client_address",  # here too: the views took it from this module first
    "init_app",
    "no_store",
    "ui_language",
    "use_language",
]

REQUESTED_LANGUAGE = "requested_language"  # ``g``: the login's ``ui_locales`` language
SUPPORTED_LANGUAGES = ("de", "en")  # German first: the default where a catalogue exists

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self' {form_targets}; frame-ancestors 'none'"
)


class Application(Flask):
    """Flask, asking once per hook and view whether it is ``async def``.

    Flask asks ``inspect.iscoroutinefunction`` before every call of a hook or view (about 14
    times per request here); the answer for a plain function never changes. Bounded: a
    function made per request (``after_this_request``) is asked each time, as Flask does.
    """

    MAX_KNOWN_FUNCTIONS = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        known = self._sync_functions.get(func)
        if known is not None:
            return known
        sync = super().ensure_sync(func)
        if type(func) is FunctionType and len(self._sync_functions) < self.MAX_KNOWN_FUNCTIONS:
            self._sync_functions[func] = sync
        return sync


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


def security_headers(secure: bool) -> tuple[tuple[str, str], ...]:
    """The security headers of every response that does not set its own; HSTS over https."""
    headers: tuple[tuple[str, str], ...] = (
        ("Content-Security-Policy", CSP.format(form_targets="").strip()),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), geolocation=()"),
    )
    if secure:
        headers += (("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),)
    return headers


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed cookie session, opened without building its signer when there is no
    cookie to check (most requests: the API, the JWKS, the phone's polls), and its signer built
    once per set of keys rather than for every cookie read or written (it keeps no state
    between calls)."""

    def __init__(self) -> None:
        self._serializers: dict[tuple[Any, ...], URLSafeTimedSerializer | None] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            self._serializers = {keys: serializer}  # only the current keys: a rotation replaces
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def no_store(response: Response) -> Response:
    """Mark a response as never to be cached (pages and answers about one person or login)."""
    response.headers["Cache-Control"] = "no-store"
    return response


def select_locale() -> str:
    """The page's language: the citizen's own choice (``?lang=``, then the ``lang`` cookie the
    language switch sets), else what the relying party asked for this login (``ui_locales``,
    ``use_language``), else the browser's ``Accept-Language``."""
    languages = current_app.config["LANGUAGES"]
    chosen = request.args.get("lang") or request.cookies.get("lang")
    if chosen and chosen in languages:
        return chosen
    requested = g.get(REQUESTED_LANGUAGE)
    if requested in languages:
        return str(requested)
    return request.accept_languages.best_match(languages) or languages[0]


def ui_language(ui_locales: object) -> str | None:
    """The first supported language of an OIDC ``ui_locales`` value (OIDC Core 1.0 §3.1.2.1:
    space-separated BCP 47 tags in order of preference; ``en-US`` counts as ``en``), or None."""
    if not isinstance(ui_locales, str):
        return None
    languages = current_app.config["LANGUAGES"]
    for tag in ui_locales.split():
        primary = tag.split("-", 1)[0].lower()
        if primary in languages:
            return str(primary)
    return None


def use_language(language: str | None) -> None:
    """Show this request's pages in ``language`` (a login's ``ui_locales``) unless the citizen
    chose one; None changes nothing."""
    if language is None:
        return
    g.setdefault(REQUESTED_LANGUAGE, language)
    refresh_locale()  # in case something was translated before the login was read


def language_url(lang: str) -> str:
    """This page again in ``lang``, keeping its query (the phone page needs its QR frame)."""
    args = request.args.to_dict()
    args["lang"] = lang
    return request.path + "?" + urlencode(args)


def init_app(app: Flask) -> None:
    i18n.init_app(app)
    app.config["LANGUAGES"] = available_languages(app)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", app.config["TIMEZONE"])
    inputs.init_app(app)
    Babel(app, locale_selector=select_locale)
    secure = issuer_is_https(app.config)
    app.config.update(
        SESSION_COOKIE_NAME="__Host-session" if secure else "session",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=app.config["SESSION_TTL_SECONDS"],
    )
    app.session_interface = CookieSessions()
    proxy.init_app(app)

    app.jinja_env.globals["kern_stylesheet"] = has_kern_stylesheet(app)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        locale = select_locale()
        return {
            "current_locale": locale,
            "other_languages": [lang for lang in current_app.config["LANGUAGES"] if lang != locale],
            "language_url": language_url,
            "issuer": current_app.config["ISSUER"],
        }

    # The same on every response (the issuer's scheme is fixed at start): built once. A view
    # may set its own (authorization responses widen form-action for the redirect to the RP).
    headers = [(name.lower(), name, value) for name, value in security_headers(secure)]

    @app.after_request
    def _headers(response: Response) -> Response:
        present = {name.lower() for name, _value in response.headers}  # (name, value) pairs
        for key, name, value in headers:
            if key not in present:
                response.headers.add(name, value)
        if request.args.get("lang") in current_app.config["LANGUAGES"]:
            response.set_cookie(
                "lang", request.args["lang"], max_age=365 * 86400, samesite="Lax", httponly=True
            )
        return response
