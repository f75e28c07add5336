"""OpenID Connect endpoints: discovery, JWKS, authorize, token, userinfo."""

from __future__ import annotations

import base64
import logging
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oidc.core.errors import RequestNotSupportedError
from authlib.oidc.core.errors import RequestURINotSupportedError
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask_babel import lazy_gettext as _l

from ..config import ACR_VALUES
from ..config import ID_TOKEN_ALGORITHMS
from ..keys import key_store
from ..sessions import end_session
from ..web import SUPPORTED_LANGUAGES
from .claims import SCOPE_CLAIMS
from .claims import SCOPES
from .models import AUTH_METHODS
from .server import ASSERTION_ALGORITHMS
from .server import authorization

bp = Blueprint("oidc", __name__)
log = logging.getLogger(__name__)


def redirect_with_error(redirect_uri: str, error: OAuth2Error) -> Any:
    """An error authorization response, with ``iss`` (RFC 9207 §2) and ``state``."""
    params = [("error", error.error), ("iss", current_app.config["ISSUER"])]
    if error.description:
        params.append(("error_description", error.description))
    if error.state:
        params.append(("state", error.state))
    return redirect(add_params_to_uri(redirect_uri, params), code=303)


def _metadata() -> dict[str, Any]:
    """What this server does, and only that: OIDC Discovery 1.0 §3 and RFC 8414 §2 share it."""
    issuer = current_app.config["ISSUER"]
    return dict(
        issuer=issuer,
        authorization_endpoint=f"{issuer}/authorize",
        token_endpoint=f"{issuer}/token",
        userinfo_endpoint=f"{issuer}/userinfo",
        jwks_uri=f"{issuer}/jwks.json",
        end_session_endpoint=f"{issuer}/logout",
        scopes_supported=list(SCOPES),
        claims_supported=sorted(
            {c for cs in SCOPE_CLAIMS.values() for c in cs}
            | {"iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr"}
        ),
        response_types_supported=["code"],
        response_modes_supported=["query"],
        grant_types_supported=["authorization_code"],
        subject_types_supported=["pairwise"],
        id_token_signing_alg_values_supported=list(ID_TOKEN_ALGORITHMS),
        token_endpoint_auth_methods_supported=list(AUTH_METHODS),
        token_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGORITHMS),
        code_challenge_methods_supported=["S256"],
        acr_values_supported=list(ACR_VALUES),
        authorization_response_iss_parameter_supported=True,
        request_parameter_supported=False,
        request_uri_parameter_supported=False,
        claims_parameter_supported=False,
        ui_locales_supported=list(SUPPORTED_LANGUAGES),
    )


def _metadata_response() -> Response:
    response = jsonify(_metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    return _metadata_response()


@bp.get("/.well-known/oauth-authorization-server")
def authorization_server_metadata() -> Response:
    """RFC 8414 §3 for an issuer without a path; the same document as OIDC discovery."""
    return _metadata_response()


@bp.get("/jwks.json")
def jwks() -> Response:
    response = jsonify(key_store().jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/authorize")
def authorize() -> Any:
    """Validate the request (Authlib), then hand the browser to a QR-code login transaction."""
    from ..crosslogin.views import begin_login

    server = authorization()
    try:
        grant = server.get_consent_grant(end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri:
            return redirect_with_error(error.redirect_uri, error)
        description = error.description or error.error
        return render_template(
            "error.html",
            error=error.error,
            description=_l(
                "The application that sent you here made a faulty request: %(why)s", why=description
            ),
            status=400,
        ), 400
    except ValueError:
        # Authlib refuses to build an error whose description would echo non-ASCII input
        # (RFC 6749 §4.1.2.1); the request is faulty either way, and nothing is echoed.
        return render_template(
            "error.html",
            error="invalid_request",
            description=_l("The application that sent you here made a faulty request."),
            status=400,
        ), 400
    # Discovery says request_parameter_supported/request_uri_parameter_supported are false: a
    # request object is refused, not silently ignored (OIDC Core 1.0 §6.1, §6.2).
    for name, unsupported in (
        ("request", RequestNotSupportedError),
        ("request_uri", RequestURINotSupportedError),
    ):
        if name in request.args:
            refusal = unsupported()
            refusal.state = request.args.get("state")
            return redirect_with_error(grant.redirect_uri, refusal)
    params = {key: request.args[key] for key in request.args}
    return begin_login(grant.client, params)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    """RP-initiated logout: ends the Bürger-ID session, then returns to the application."""
    server = authorization()
    try:
        end_request = server.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        # An id_token_hint that does not verify (not ours, altered, or a client_id that is not
        # its audience) vouches for nothing: no redirect (RP-Initiated Logout 1.0 §4). The
        # session ended is the browser's own, as on a logout without any hint, so a citizen
        # who asked to leave is not left logged in.
        end_session()
        log.info("logout request refused (%s): %s", error.error, error.description)
        return render_template(
            "error.html",
            error=error.error,
            description=_l(
                "You are logged out of Bürger-ID. The application's logout request could not "
                "be verified, so you are not sent back to it."
            ),
            status=400,
        ), 400
    response = server.create_endpoint_response("end_session", end_request)
    if response is not None:
        response.status_code = 303
        return response
    return render_template("logged_out.html")


def _basic_credentials_readable() -> bool:
    """RFC 6749 §2.3.1: Basic credentials are UTF-8 after base64; anything else cannot match."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return True
    try:
        base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:
        return False
    return True


@bp.post("/token")
def token() -> Response:
    if not _basic_credentials_readable():
        response = jsonify(
            error="invalid_client", error_description="Malformed client credentials."
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="token"'
        response.headers["Cache-Control"] = "no-store"
        return response
    return authorization().create_token_response()


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    return authorization().create_endpoint_response("userinfo")
