"""``POST /backchannel-logout``: Bürger-ID tells the portal that a session ended (OpenID Connect
Back-Channel Logout 1.0), and the portal ends its own sessions of that login.

The Logout Token is checked as §2.6 says, with joserfc (the library Authlib itself uses): its
signature against Bürger-ID's published keys (``jwks_uri`` from discovery), ``typ``
``logout+jwt``, ``iss`` the configured issuer, ``aud`` this portal's client id, ``iat`` and an
unexpired ``exp``, a ``jti``, ``sid`` and/or ``sub``, the back-channel logout ``events`` member,
and no ``nonce``. A token that fails any check changes nothing and gets 400 (§2.8).
"""

from __future__ import annotations

import time
from typing import Any

import requests
from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from . import oidc
from . import sessions
from .errors import LoginFailed

__all__ = ["bp", "verify_logout_token"]

bp = Blueprint("backchannel", __name__)

EVENT = "http://schemas.openid.net/event/backchannel-logout"
ALGORITHMS = ["ES256", "RS256"]  # what Bürger-ID signs ID tokens with
TOKEN_TYPE = "logout+jwt"  # noqa: S105 -- a media type, not a secret
MAX_AGE_SECONDS = 600  # an older ``iat`` is refused even before its ``exp``


class InvalidLogoutToken(Exception):
    """The logout token fails a check of Back-Channel Logout 1.0 §2.6."""


def _provider_keys(*, force: bool = False) -> KeySet:
    return KeySet.import_key_set(oidc.provider_jwks(force=force))


def verify_logout_token(token: str) -> dict[str, Any]:
    """The claims of a valid logout token (§2.6 steps 1-7); raises InvalidLogoutToken."""
    try:
        try:
            decoded = jwt.decode(token, _provider_keys(), algorithms=ALGORITHMS)
        except JoseError:
            # A key rotated since the keys were fetched: fetch them once more.
            decoded = jwt.decode(token, _provider_keys(force=True), algorithms=ALGORITHMS)
        if decoded.header.get("typ") != TOKEN_TYPE:
            raise InvalidLogoutToken("not a logout token")
        config = current_app.config
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": config["ISSUER"]},
            aud={"essential": True, "value": config["CLIENT_ID"]},
            iat={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(decoded.claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidLogoutToken("signature or claims invalid") from exc
    except (requests.RequestException, LoginFailed, RuntimeError) as exc:
        raise InvalidLogoutToken("Bürger-ID's keys cannot be fetched") from exc
    claims = decoded.claims
    if not isinstance(claims["iat"], int) or claims["iat"] < _now() - MAX_AGE_SECONDS:
        raise InvalidLogoutToken("issued too long ago")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
        raise InvalidLogoutToken("no back-channel logout event")
    if "nonce" in claims:
        raise InvalidLogoutToken("a logout token has no nonce")  # §2.4: never an ID token
    sid, sub = claims.get("sid"), claims.get("sub")
    if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
        raise InvalidLogoutToken("neither sid nor sub")
    return dict(claims)


def _now() -> int:
    return int(time.time())


@bp.post("/backchannel-logout")
def logout() -> Any:
    """§2.5: a form POST with ``logout_token``; 200 once the sessions are ended, else 400."""
    token = request.form.get("logout_token")
    try:
        if not token:
            raise InvalidLogoutToken("no logout_token")
        claims = verify_logout_token(token)
    except InvalidLogoutToken as exc:
        current_app.logger.warning("back-channel logout refused: %s", exc)
        response = jsonify(error="invalid_request", error_description=str(exc))
        response.status_code = 400
    else:
        ended = sessions.end_sessions_of(sid=claims.get("sid"), sub=claims.get("sub"))
        current_app.logger.info("back-channel logout: %s portal session(s) ended", ended)
        response = current_app.response_class(status=200)
    response.headers["Cache-Control"] = "no-store"
    return response
