"""Cross-site request forgery: only our own pages may change state through the browser.

For every POST, PUT, PATCH or DELETE that a browser sends with its cookies (OWASP ASVS 5.0
V3.5.1–V3.5.3, RFC 9700 §4.7):

1. Where the browser says where the request came from (``Sec-Fetch-Site``, else ``Origin``),
   it must be this server's origin.
2. Endpoints that take JSON accept only ``Content-Type: application/json`` (else 415). A
   cross-site page can send that content type only after a CORS preflight, which we never
   answer, so JSON endpoints need no token.
3. Every other endpoint needs a token bound to the session, from the form field ``csrf_token``
   (templates: ``{{ csrf_token() }}``) or the ``X-CSRF-Token`` header.

Exempt are the endpoints other sites post to by design and that act on no cookie: the
authorization endpoint (a relying party's page may post the request, OIDC Core 1.0 §3.1.2.1;
it only starts a new login, as a GET does), the token,
revocation and introspection endpoints (client authentication), RP-initiated logout (a form on
the relying party's page), the pushed authorization request endpoint (client authentication),
userinfo (a bearer token) and the phone API (JSON only; secrets
travel in the body).
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask
from flask import current_app
from flask import request
from flask import session
from flask_babel import lazy_gettext as _l

from .errors import IdServerError

__all__ = ["FIELD", "HEADER", "JSON_ENDPOINTS", "csrf_token", "init_app"]

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SESSION_KEY = "csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT_ENDPOINTS = frozenset(
    {
        "oidc.authorize",
        "oidc.token",
        "oidc.revoke",
        "oidc.introspect",
        "oidc.pushed_authorization_request",
        "oidc.logout",
        "oidc.userinfo",
        "saml.sso",  # SAML messages are signed by the SP (HTTP-POST binding from its page)
        "saml.slo",
    }
)
EXEMPT_BLUEPRINTS = frozenset({"api"})
JSON_ENDPOINTS = {"crosslogin.passkey_options", "crosslogin.passkey_finish"}


class CrossSiteRequest(IdServerError):
    status = 403
    error = "csrf_failed"
    description = _l("This page has expired. Please go back, reload it and try again.")


def csrf_token() -> str:
    """The session's token for forms (created on first use, dropped when a session starts)."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[SESSION_KEY] = token
    return token


def _own_origin() -> str:
    issuer = current_app.config["ISSUER"]
    scheme, rest = issuer.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _from_another_site() -> bool:
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is not None and origin != _own_origin()


def _token_matches() -> bool:
    expected = session.get(SESSION_KEY)
    presented = request.headers.get(HEADER) or request.form.get(FIELD)
    return (
        isinstance(expected, str)
        and isinstance(presented, str)
        and hmac.compare_digest(presented.encode(), expected.encode())
    )


def protect() -> None:
    """The ``before_request`` check described in the module docstring."""
    if request.method not in UNSAFE_METHODS:
        return
    if request.endpoint in EXEMPT_ENDPOINTS or request.blueprint in EXEMPT_BLUEPRINTS:
        return
    if request.endpoint is None:
        return  # no such page: 404/405 follow
    if _from_another_site():
        raise CrossSiteRequest()
    if request.endpoint in JSON_ENDPOINTS:
        if request.mimetype != "application/json":
            raise IdServerError(_l("Please send a JSON object."), status=415)
        return
    if not _token_matches():
        raise CrossSiteRequest()


def init_app(app: Flask) -> None:
    app.before_request(protect)
    app.jinja_env.globals["csrf_token"] = csrf_token
