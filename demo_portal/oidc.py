"""Login with Bürger-ID through Authlib's Flask client, configured by discovery.

Authorization code flow with PKCE (S256), ``state`` and ``nonce``; Authlib verifies the ID
token's signature against the provider's JWKS and its ``iss``, ``aud``, ``exp`` and ``nonce``.
Two checks Authlib leaves to the application are made here:

- the discovery document names the configured issuer (OIDC Discovery 1.0 §4.3);
- the authorization response's ``iss`` parameter is that issuer (RFC 9207 §2.4), so a
  response from another provider cannot be mixed up with ours.
"""

from __future__ import annotations

from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask
from flask import current_app
from flask import request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from joserfc.errors import JoseError

from .errors import LoginFailed

__all__ = [
    "begin_login",
    "finish_login",
    "init_app",
    "logout_url",
    "provider_jwks",
    "provider_metadata",
]

PROVIDER = "buergerid"
EXTENSION = "demo_portal.oidc"
HTTP_TIMEOUT_SECONDS = 10


def init_app(app: Flask, *, scope: str) -> None:
    oauth = OAuth(app)
    oauth.register(
        PROVIDER,
        client_id=app.config["CLIENT_ID"],
        client_secret=app.config["CLIENT_SECRET"],
        server_metadata_url=f"{app.config['ISSUER']}/.well-known/openid-configuration",
        client_kwargs={
            "scope": scope,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
            "default_timeout": HTTP_TIMEOUT_SECONDS,
        },
    )
    app.extensions[EXTENSION] = oauth


def _client() -> Any:
    return current_app.extensions[EXTENSION].create_client(PROVIDER)


def provider_metadata() -> dict[str, Any]:
    """Bürger-ID's discovery document (fetched once), if it names the configured issuer."""
    try:
        metadata = _client().load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        current_app.logger.warning("discovery failed: %s", exc)
        raise LoginFailed(
            _l("Bürger-ID cannot be reached right now. Please try again in a moment."),
            error="provider_unreachable",
            status=503,
        ) from exc
    if metadata.get("issuer") != current_app.config["ISSUER"]:
        raise LoginFailed(
            _l("Bürger-ID's configuration does not match this portal's."),
            error="issuer_mismatch",
            status=503,
        )
    return metadata


def provider_jwks(*, force: bool = False) -> dict[str, Any]:
    """Bürger-ID's published keys (fetched once from ``jwks_uri``, again with ``force``)."""
    provider_metadata()
    jwks: dict[str, Any] = _client().fetch_jwk_set(force=force)
    return jwks


def begin_login(redirect_uri: str) -> Any:
    """The redirect to Bürger-ID's authorization endpoint; state, nonce, verifier in the session."""
    provider_metadata()
    # Bürger-ID's login page in the portal's language (OIDC Core §3.1.2.1 ui_locales).
    return _client().authorize_redirect(redirect_uri, ui_locales=str(get_locale()))


def finish_login() -> tuple[dict[str, Any], str]:
    """Check the authorization response, redeem the code; returns (ID token claims, ID token)."""
    expected_issuer = provider_metadata()["issuer"]
    if request.args.get("iss") != expected_issuer:
        raise LoginFailed(
            _l("The login answer did not come from Bürger-ID."), error="issuer_mismatch"
        )
    error = request.args.get("error")
    if error == "access_denied":
        raise LoginFailed(
            _l("The login was cancelled or refused on the phone. You can try again."),
            error="access_denied",
        )
    if error:
        raise LoginFailed(
            _l("Bürger-ID refused the login (%(error)s).", error=error[:64]), error="login_refused"
        )
    try:
        token = _client().authorize_access_token()
    except (OAuthError, JoseError, requests.RequestException, ValueError, KeyError) as exc:
        current_app.logger.warning("login failed: %r", exc)
        raise LoginFailed(
            _l("The login could not be completed. Please start again."), error="login_failed"
        ) from exc
    claims = token.get("userinfo")
    if not claims or not token.get("id_token"):
        raise LoginFailed(_l("Bürger-ID sent no ID token."), error="login_failed")
    return dict(claims), token["id_token"]


def logout_url(*, id_token: str, post_logout_redirect_uri: str, state: str) -> str | None:
    """Bürger-ID's end-session URL (RP-Initiated Logout 1.0 §2), or None if unreachable."""
    try:
        provider_metadata()
        created = _client().create_logout_url(
            post_logout_redirect_uri=post_logout_redirect_uri,
            id_token_hint=id_token,
            state=state,
            client_id=current_app.config["CLIENT_ID"],
        )
    except (LoginFailed, RuntimeError):
        return None
    return str(created["url"])
