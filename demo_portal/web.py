"""What every page of a portal shares: the signed-in resident, URLs, security headers."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask import Response
from flask import current_app
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask_babel import get_locale

__all__ = [
    "Resident",
    "current_resident",
    "external_url",
    "init_app",
    "local_path",
    "login_required",
    "sign_in",
]

SESSION_KEY = "resident"
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


def current_resident() -> Resident | None:
    stored = session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return None
    return Resident(sub=stored["sub"], claims=stored["claims"], id_token=stored["id_token"])


def sign_in(claims: dict[str, Any], id_token: str) -> None:
    """A fresh session for the resident (session rotation: nothing from before survives)."""
    session.clear()
    session.permanent = True  # expires SESSION_LIFETIME after the last request
    session[SESSION_KEY] = {"sub": claims["sub"], "claims": claims, "id_token": id_token}


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
