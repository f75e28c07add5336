"""What every page of a portal shares: the signed-in resident, URLs, security headers."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask_babel import get_locale

from . import sessions

__all__ = [
    "Resident",
    "clear_session",
    "current_resident",
    "external_url",
    "init_app",
    "local_path",
    "login_required",
    "sign_in",
    "sign_out",
]

SESSION_KEY = "resident"
LANGUAGE_KEY = "lang"  # chosen with the language switch (demo_portal.i18n)
SESSION_LIFETIME = dt.timedelta(hours=1)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self' {issuer}"
)


@dataclass(frozen=True)
class Resident:
    """Who is signed in: the pairwise ``sub`` Bürger-ID gave this portal, and the claims."""

    sub: str
    claims: dict[str, Any]
    id_token: str

    @property
    def name(self) -> str:
        return str(self.claims.get("name") or self.claims.get("given_name") or "")


def has_kern_stylesheet(app: Flask) -> bool:
    """Whether ``make install`` fetched the KERN UX stylesheet into the portal's static folder.

    Decided once at start: with it the pages link KERN before their own stylesheet, without it
    they look tidy with their own stylesheet alone.
    """
    return (Path(app.static_folder or "") / "vendor" / "kern" / "kern.min.css").is_file()


def current_resident() -> Resident | None:
    stored = session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return None
    if "resident_session_open" not in g:  # one look-up per request
        g.resident_session_open = sessions.session_is_open(stored.get("sid"))
    if not g.resident_session_open:
        return None  # logged out (or expired) on the server: a copied cookie is anonymous
    return Resident(sub=stored["sub"], claims=stored["claims"], id_token=stored["id_token"])


def clear_session() -> None:
    """Empty the session cookie; only the chosen language (no secret) survives."""
    language = session.get(LANGUAGE_KEY)
    session.clear()
    if language is not None:
        session[LANGUAGE_KEY] = language
    g.resident_session_open = False


def sign_in(claims: dict[str, Any], id_token: str) -> None:
    """A fresh session for the resident (session rotation: nothing else from before survives)."""
    clear_session()
    session.permanent = True  # expires SESSION_LIFETIME after the last request
    session[SESSION_KEY] = {
        "sid": sessions.start_session(sub=claims["sub"], idp_sid=claims.get("sid")),
        "sub": claims["sub"],
        "claims": claims,
        "id_token": id_token,
    }
    g.resident_session_open = True


def sign_out() -> None:
    """End the session here and on the server, so copies of the cookie end with it."""
    stored = session.get(SESSION_KEY)
    if isinstance(stored, dict):
        sessions.end_session(stored.get("sid"))
    clear_session()


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute URL under the configured BASE_URL, never the request's Host header."""
    return current_app.config["BASE_URL"] + url_for(endpoint, **values)


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this portal, otherwise ``default`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_resident() is None:
            return redirect(url_for("account.login", next=request.full_path.rstrip("?")), 303)
        return view(*args, **kwargs)

    return wrapped


def init_app(app: Flask) -> None:
    sessions.sessions_table(app.config["PORTAL"].metadata)  # before the tables are created
    sessions.logins_table(app.config["PORTAL"].metadata)
    secure = app.config["BASE_URL"].startswith("https://")
    app.config.update(
        # Cookies ignore ports: on localhost, Bürger-ID and both portals share one cookie jar.
        SESSION_COOKIE_NAME=("__Host-" if secure else "") + f"portal-{app.config['KIND']}",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        MAX_CONTENT_LENGTH=64 * 1024,
    )

    app.jinja_env.globals["kern_stylesheet"] = has_kern_stylesheet(app)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "resident": current_resident(),
            "portal": app.config["PORTAL"],
            "lang": str(get_locale()),
        }

    @app.after_request
    def _headers(response: Response) -> Response:
        # Logging out POSTs here and is redirected on to Bürger-ID: form-action must allow it.
        response.headers.setdefault(
            "Content-Security-Policy", CSP.format(issuer=app.config["ISSUER"])
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if current_resident() is not None:
            response.headers.setdefault("Cache-Control", "no-store")
        return response
