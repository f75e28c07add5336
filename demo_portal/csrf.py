"""CSRF protection: every POST must carry the session's random token (synchroniser token).

The token lives in the signed session cookie and in each form's hidden ``csrf_token`` field;
a cross-site form cannot read it. Logging in or out clears the session, so tokens rotate.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask
from flask import current_app
from flask import request
from flask import session
from flask_babel import lazy_gettext as _l

from .errors import CsrfRejected

__all__ = ["FIELD", "csrf_token", "exempt", "init_app"]

FIELD = "csrf_token"
SESSION_KEY = "csrf"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Server-to-server, without cookies: the signed logout token is the proof (demo_portal.backchannel).
EXEMPT_ENDPOINTS = frozenset({"backchannel.logout"})
APP_EXEMPT = "demo_portal.csrf.exempt"  # per portal: endpoints added with ``exempt``


def csrf_token() -> str:
    """This session's token, created on first use."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def check_csrf_token() -> None:
    if request.method in SAFE_METHODS or request.endpoint in EXEMPT_ENDPOINTS:
        return
    if request.endpoint in current_app.extensions.get(APP_EXEMPT, ()):
        return
    expected = session.get(SESSION_KEY)
    given = request.form.get(FIELD)
    if not isinstance(expected, str) or not given or not hmac.compare_digest(expected, given):
        raise CsrfRejected(
            _l("Please go back, reload the page and send the form again."),
        )


def exempt(app: Flask, *endpoints: str) -> None:
    """Exempt ``endpoints`` of this portal only (the SAML portal's ACS and SLO, which Bürger-ID's
    page posts: the signed SAML message is the proof)."""
    app.extensions[APP_EXEMPT] = frozenset(app.extensions.get(APP_EXEMPT, ())) | set(endpoints)


def init_app(app: Flask) -> None:
    app.before_request(check_csrf_token)
    app.jinja_env.globals["csrf_token"] = csrf_token
