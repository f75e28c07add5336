"""OpenID Connect endpoints: discovery, JWKS, authorize, token, userinfo.

``/authorize`` owns both legs of the authorization request, as ory/hydra's
``oauth2/handler.go`` does; the QR login in between never speaks OAuth::

    RP ─▶ GET/POST /authorize ── validate (Authlib) ──▶ begin_login ─▶ /login/<id> (crosslogin)
                                                                       │ approved, denied,
                                                                       ▼ expired, cancelled
    RP ◀─ code or access_denied ◀──────── resume ◀──────────── /login/<id>/continue

``resume`` is plugged into crosslogin (``create_app``), so continue answers in one response;
``/authorize/resume/<id>`` serves the same leg to a browser sent there directly.

The answer goes back in the query of the redirect URI, or, with ``response_mode=form_post``,
in a form the browser posts to it (``authorization_response``).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc9101.errors import InvalidRequestUriError
from authlib.oidc.core.errors import LoginRequiredError
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

from ..assurance import acr_for
from ..assurance import at_least
from ..assurance import issuable_acr_values
from ..assurance import issuable_levels
from ..assurance import required_level
from ..config import ID_TOKEN_ALGORITHMS
from ..crosslogin import service as crosslogin
from ..crosslogin.errors import LoginEnded
from ..crosslogin.models import Login
from ..crosslogin.models import Requester
from ..crosslogin.views import browser_login
from ..crosslogin.views import forget_browser
from ..crosslogin.views import start_login
from ..keys import key_store
from ..sessions import SELF_CLIENT_ID
from ..sessions import end_session
from ..sessions import safe_next
from ..sessions import start_session
from ..web import CSP
from ..web import SUPPORTED_LANGUAGES
from ..web import ui_language
from ..web import use_language
from .claims import CLAIMS_TARGETS
from .claims import SCOPE_CLAIMS
from .claims import SCOPES
from .claims import claim_names
from .claims import hinted_citizen
from .claims import requested_claims
from .errors import FaultyRequest
from .errors import PushedRequestRequired
from .errors import UnmetAuthenticationRequirements
from .errors import denial_for
from .logout import frontchannel_logouts
from .logout import origin_of
from .logout import record_session_client
from .models import AUTH_METHODS
from .models import GRANT_TYPES
from .models import OFFLINE_ACCESS
from .models import ActiveClient
from .pushed_requests import REQUEST_URI_PREFIX
from .pushed_requests import push_authorization_request
from .pushed_requests import take_pushed_request
from .server import ASSERTION_ALGORITHMS
from .server import Authentication
from .server import StoredAuthorizationRequest
from .server import authorization
from .verified_claims import discovery_metadata
from .verified_claims import essential_acr_values
from .verified_claims import requested_verified_claims

bp = Blueprint("oidc", __name__)
log = logging.getLogger(__name__)

ORIGIN_NETLOC = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?")
RESPONSE_MODES = ("query", "form_post")  # OAuth 2.0 Multiple Response Types §2.1, Form Post §2
PROMPTS = frozenset({"none", "login", "consent", "select_account"})  # OIDC Core 1.0 §3.1.2.1


def authorization_response(redirect_uri: str, params: list[tuple[str, str]], mode: str) -> Any:
    """``params`` back to the relying party: in the redirect URI's query (a 303), or with
    ``form_post`` as a form the browser posts to it (OAuth 2.0 Form Post Response Mode §2).

    The form page has no inline script (``js/form-post.js`` submits it; its button does without
    JavaScript), and its form-action allows the redirect URI's origin only.
    """
    origin = _origin(redirect_uri)
    if mode != "form_post" or not origin:
        return redirect(add_params_to_uri(redirect_uri, params), code=303)
    page = render_template("form_post.html", action=redirect_uri, params=params)
    return Response(
        page,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": CSP.format(form_targets=origin),
        },
    )


def response_mode(params: Any) -> str:
    """How the request wants its answer; an unsupported mode gets its refusal in the query."""
    mode = params.get("response_mode") or "query"
    return mode if mode in RESPONSE_MODES else "query"


def redirect_with_error(redirect_uri: str, error: OAuth2Error, mode: str = "query") -> Any:
    """An error authorization response, with ``iss`` (RFC 9207 §2) and ``state``."""
    params = [("error", error.error), ("iss", current_app.config["ISSUER"])]
    if error.description:
        params.append(("error_description", error.description))
    if error.state:
        params.append(("state", error.state))
    return authorization_response(redirect_uri, params, mode)


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
        backchannel_logout_supported=True,
        backchannel_logout_session_supported=True,
        frontchannel_logout_supported=True,
        frontchannel_logout_session_supported=True,
        scopes_supported=[*SCOPES, OFFLINE_ACCESS],
        claims_supported=sorted(
            {c for cs in SCOPE_CLAIMS.values() for c in cs}
            # every claim an ID token can carry (OIDC Core §2, §3.1.3.6; Back-Channel Logout §2)
            | {"iss", "aud", "azp", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid"}
            | {"at_hash"}
        ),
        response_types_supported=["code"],
        response_modes_supported=list(RESPONSE_MODES),
        grant_types_supported=list(GRANT_TYPES),
        subject_types_supported=["pairwise"],
        id_token_signing_alg_values_supported=list(ID_TOKEN_ALGORITHMS),
        token_endpoint_auth_methods_supported=list(AUTH_METHODS),
        token_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGORITHMS),
        revocation_endpoint=f"{issuer}/revoke",
        revocation_endpoint_auth_methods_supported=list(AUTH_METHODS),
        revocation_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGORITHMS),
        introspection_endpoint=f"{issuer}/introspect",
        introspection_endpoint_auth_methods_supported=list(AUTH_METHODS),
        introspection_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGORITHMS),
        code_challenge_methods_supported=["S256"],
        acr_values_supported=issuable_acr_values(current_app.config),
        authorization_response_iss_parameter_supported=True,
        pushed_authorization_request_endpoint=f"{issuer}/par",
        require_pushed_authorization_requests=bool(
            current_app.config["REQUIRE_PUSHED_AUTHORIZATION_REQUESTS"]
        ),
        request_parameter_supported=False,
        request_uri_parameter_supported=False,
        claims_parameter_supported=True,
        ui_locales_supported=list(SUPPORTED_LANGUAGES),
        **discovery_metadata(current_app.config["VERIFIED_CLAIMS_TRUST_FRAMEWORK"]),
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


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    """Validate the request (Authlib), then hand the browser to a QR-code login transaction.

    GET with the parameters in the query, or POST with them form-encoded (OIDC Core 1.0
    §3.1.2.1); a POST comes from the relying party's page, so the CSRF check exempts it. A
    ``request_uri`` from /par stands for the request its client pushed (RFC 9126 §4).
    """
    values = request.values  # the query, and a POST's form: what Authlib validates
    use_language(ui_language(values.get("ui_locales")))
    if str(values.get("request_uri", "")).startswith(REQUEST_URI_PREFIX):
        return _authorize_pushed(values)
    try:
        client, params = validated_request(values)
        if pushed_requests_required(client):
            raise _answered(PushedRequestRequired(), params, params["redirect_uri"])
    except (OAuth2Error, ValueError) as error:
        return _refused(error, values)
    return begin_login(client, params)


def _authorize_pushed(values: Any) -> Any:
    """/authorize with a pushed request's ``request_uri``: that request, used up now, exactly as
    if its parameters had come in the query; any other parameter but ``client_id`` is ignored
    (RFC 9126 §4). An unknown, expired, used or another client's one is refused on a page and
    changes nothing."""
    params = take_pushed_request(
        values.get("request_uri"), expected_client_id=values.get("client_id")
    )
    if params is None:
        refusal = InvalidRequestUriError()
        return render_template(
            "error.html",
            error=refusal.error,
            description=_l(
                "This login link has expired or has already been used. Please go back to the "
                "application and start the login again."
            ),
            status=400,
        ), 400
    use_language(ui_language(params.get("ui_locales")))
    try:
        client, params = validated_request(params, request=StoredAuthorizationRequest(params))
    except (OAuth2Error, ValueError) as error:
        return _refused(error, params)
    return begin_login(client, params)


def validated_request(values: Any, *, request: Any = None) -> tuple[ActiveClient, dict[str, str]]:
    """The client and parameters of a valid authorization request: what /authorize checks
    before a login starts, and /par before it stores a request.

    ``values`` are the request's parameters (``request``: an ``OAuth2Request`` holding them,
    else Flask's request). Raises Authlib's ``OAuth2Error``, with ``redirect_uri`` set where the
    refusal may go back to the client, or ``ValueError`` where Authlib refuses to describe the
    input.
    """
    grant = authorization().get_consent_grant(request=request, end_user=None)
    client: ActiveClient = grant.client
    # Discovery says request_parameter_supported/request_uri_parameter_supported are false: a
    # request object is refused, not silently ignored (OIDC Core 1.0 §6.1, §6.2).
    for name, unsupported in (
        ("request", RequestNotSupportedError),
        ("request_uri", RequestURINotSupportedError),
    ):
        if name in values:
            raise _answered(unsupported(), values, grant.redirect_uri)
    # The first of repeated parameters, as Authlib reads them.
    params = values.to_dict() if hasattr(values, "to_dict") else dict(values)
    refusal = _refusal(params) or _claims_refusal(client, params)
    if hasattr(values, "getlist") and len(values.getlist("acr_values")) > 1:
        # RFC 6749 §3.1; Authlib does not look at it
        refusal = InvalidRequestError("Repeated 'acr_values' parameter.")
    if refusal is not None:
        raise _answered(refusal, params, grant.redirect_uri)
    return client, params


def _answered(error: OAuth2Error, values: Any, redirect_uri: str) -> OAuth2Error:
    """``error`` as the answer to a request whose ``redirect_uri`` has been checked."""
    error.state = values.get("state")
    error.redirect_uri = redirect_uri
    return error


def _refused(error: OAuth2Error | ValueError, values: Any) -> Any:
    """A refused authorization request: back to the client where its redirect URI is known,
    otherwise a page for the person (RFC 6749 §4.1.2.1)."""
    if isinstance(error, ValueError):
        # Authlib refuses to build an error whose description would echo non-ASCII input
        # (RFC 6749 §4.1.2.1); the request is faulty either way, and nothing is echoed.
        faulty = FaultyRequest()
        return render_template(
            "error.html", error=faulty.error, description=faulty.description, status=faulty.status
        ), faulty.status
    if error.redirect_uri:
        return redirect_with_error(error.redirect_uri, error, response_mode(values))
    description = error.description or error.error
    return render_template(
        "error.html",
        error=error.error,
        description=_l(
            "The application that sent you here made a faulty request: %(why)s", why=description
        ),
        status=400,
    ), 400


def pushed_requests_required(client: ActiveClient) -> bool:
    """Must ``client`` push its requests to /par (RFC 9126 §5, §6)? Bürger-ID's own login
    pages never pass through /authorize."""
    return bool(
        current_app.config["REQUIRE_PUSHED_AUTHORIZATION_REQUESTS"]
        or client.require_pushed_authorization_requests
    )


def _refusal(params: dict[str, str]) -> OAuth2Error | None:
    """What Authlib leaves unchecked in a request: the error it gets, or None.

    ``max_age`` is a number of seconds (OIDC Core 1.0 §3.1.2.1); any value is satisfied, as
    every login here is a fresh one on the phone, and the ID token always has ``auth_time``.
    ``prompt=none`` is answered by Authlib (``login_required``, or ``invalid_request`` with
    other values), here too where spaces surround it; unknown values are refused, as ory/hydra
    does. An empty parameter counts as absent (RFC 6749 §3.1).
    """
    max_age = params.get("max_age")
    if max_age and not (max_age.isascii() and max_age.isdigit()):
        return InvalidRequestError("'max_age' must be a non-negative integer.")
    prompts = (params.get("prompt") or "").split()
    if not set(prompts) <= PROMPTS:
        return InvalidRequestError("Unknown 'prompt' value.")
    if prompts == ["none"]:
        return LoginRequiredError()
    mode = params.get("response_mode")
    if mode and mode not in RESPONSE_MODES:
        return InvalidRequestError("Unsupported 'response_mode'; use 'query' or 'form_post'.")
    if mode == "form_post" and not _origin(params.get("redirect_uri")):
        return InvalidRequestError("The 'form_post' response mode needs an http or https URI.")
    try:
        requested_verified_claims(params.get("claims"))
    except ValueError as exc:
        return InvalidRequestError(f"{exc}.")
    return _level_refusal(params)


def requested_acr_values(params: dict[str, str]) -> list[str]:
    """The ``acr`` values the request asks for: an essential ``acr`` claim in ``claims``
    (OIDC Core 1.0 §5.5.1.1) if there is one, else ``acr_values`` (§3.1.2.1)."""
    try:
        essential = essential_acr_values(params.get("claims"))
    except ValueError:
        essential = []
    return essential or (params.get("acr_values") or "").split()


def _level_refusal(params: dict[str, str]) -> OAuth2Error | None:
    """``acr_values`` no login here can meet: unknown values only, or a level above every one
    this configuration can issue (``assurance.issuable_levels``), refused before any login."""
    level, unknown = required_level(requested_acr_values(params))
    if unknown:
        return UnmetAuthenticationRequirements(
            description="None of the requested 'acr_values' is known here"
        )
    if level is not None and not any(
        at_least(issuable, level) for issuable in issuable_levels(current_app.config)
    ):
        return UnmetAuthenticationRequirements()
    return None


def _claims_refusal(client: ActiveClient, params: dict[str, str]) -> OAuth2Error | None:
    """A ``claims`` parameter that is not a JSON object of objects (OIDC Core §5.5)."""
    try:
        requested_claims(params.get("claims"), allowed_scope=client.scope)
    except InvalidRequestError as refusal:
        return refusal
    return None


def begin_login(client: ActiveClient, params: dict[str, str]) -> Any:
    """The first leg's end: a QR-code login for a validated request, told who asks."""
    scope = client.get_allowed_scope(params.get("scope", ""))
    requester = requester_for(client, params)
    return start_login(client_id=client.client_id, params=params, scope=scope, requester=requester)


def requester_for(client: ActiveClient, params: dict[str, str]) -> Requester:
    """Everything the login pages and the phone show or enforce about ``client`` for this
    request, given once when the login starts: the login never looks the client up.

    The claims listed are the scope's and those of the ``claims`` parameter (OIDC Core §5.5),
    which only names claims the client may get: the phone lists everything that can be
    released, and the essential ones as such.
    """
    wanted = requested_claims(params.get("claims"), allowed_scope=client.scope)
    by_scope = claim_names(client.get_allowed_scope(params.get("scope", "")))
    if current_app.config["VERIFIED_CLAIMS_TRUST_FRAMEWORK"] and any(
        requested_verified_claims(params.get("claims"), target=target) for target in CLAIMS_TARGETS
    ):
        by_scope.append("verified_claims")  # the phone says how the identity was checked
    return Requester(
        name=client.name,
        claims=tuple(dict.fromkeys((*by_scope, *wanted.names))),
        essential_claims=wanted.essential,
        # login_hint: the pairwise sub this client got earlier; an unknown one names nobody.
        expected_citizen_id=hinted_citizen(params.get("login_hint"), client_id=client.client_id),
        proximity_policy=client.proximity_policy,
        site_url=_site_url(client),
        form_origin=_origin(params.get("redirect_uri")),
        # Bürger-ID's own pages wait for no error: their login says how it ended.
        answers_endings=client.client_id != SELF_CLIENT_ID,
        language=ui_language(params.get("ui_locales")),
        required_level=required_level(requested_acr_values(params))[0],
    )


def _site_url(client: ActiveClient) -> str:
    """Where "back" leads without an answer: the client's first redirect URI's origin."""
    if client.client_id == SELF_CLIENT_ID:
        return f"{current_app.config['ISSUER']}/account"
    origin = _origin(client.redirect_uris[0]) if client.redirect_uris else ""
    return origin + "/" if origin else ""


def _origin(uri: object) -> str:
    """scheme://host[:port] of a registered redirect URI, or "" if it is not plainly one."""
    if not isinstance(uri, str):
        return ""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not ORIGIN_NETLOC.fullmatch(parts.netloc):
        return ""
    return f"{parts.scheme}://{parts.netloc}"


@bp.get("/authorize/resume/<login_id>")
def resume(login_id: str) -> Any:
    """The second leg: answer the relying party of the login this browser started.

    Each answer is taken once, by a conditional UPDATE (``crosslogin.service.consume`` or
    ``consume_denied``), before it is made: an approved login gives a code and starts the
    browser's session, an unapproved ending ``access_denied``. Anything else (still running,
    already answered, nobody waiting) changes nothing here and goes back to the login page.
    """
    tx = browser_login(login_id)
    if tx.state == "approved":
        if not crosslogin.consume(tx):  # answered already, or its device was revoked since
            raise LoginEnded()
        return _grant(tx)
    if tx.state in ("denied", "expired") and tx.requesting.answers_endings:
        denial = denial_for(
            state=tx.state,
            deny_reason=tx.deny_reason,
            oauth_state=tx.request_params.get("state"),
        )
        if crosslogin.consume_denied(tx):
            # The login cookie stays (until it runs out): back on the login page, the browser
            # is offered a new code.
            return redirect_with_error(
                tx.request_params["redirect_uri"], denial, response_mode(tx.request_params)
            )
    return redirect(f"{current_app.config['ISSUER']}/login/{tx.id}/continue", code=303)


def _grant(tx: Login) -> Any:
    """The authorization response for a login just consumed; then the browser's session.

    OIDC Core 1.0 §3.1.2.5 with ``iss`` (RFC 9207 §2). The code, the session and the client
    it logged in to are one transaction, committed after the login's consume (crosslogin
    commits that first, so a login is answered once): a worker that dies in between leaves a
    consumed login with neither code nor session, which the login page reports as ended
    (never as logged in).
    """
    if tx.citizen_id is None or tx.approved_at is None:
        raise LoginEnded()  # a citizen removed since (the login's reference is set NULL)
    auth = Authentication(
        citizen_id=tx.citizen_id,
        auth_time=int(tx.approved_at.timestamp()),
        amr=list(tx.amr or []),
        acr=acr_for(tx.level or "low", requested_acr_values(tx.request_params)),
        login_id=tx.id,
        credential_pk=tx.credential_pk,
    )
    params = tx.request_params
    if tx.client_id == SELF_CLIENT_ID:
        # Logging in to Bürger-ID itself (account or clerk pages): a session, no code.
        _start_session(auth, method=tx.acr)
        return forget_browser(redirect(safe_next(params.get("next")), code=303), tx.id)
    server = authorization()
    oauth_request = StoredAuthorizationRequest(params)
    grant = server.get_authorization_grant(oauth_request)
    response = server.create_authorization_response(
        request=oauth_request, grant_user=auth, grant=grant
    )
    response.status_code = 303
    if response_mode(params) == "form_post":
        redirect_uri = params["redirect_uri"]
        response = authorization_response(
            redirect_uri, _added_params(response.headers["Location"], redirect_uri), "form_post"
        )
    forget_browser(response, tx.id)

    def record_client(session_id: str) -> None:
        record_session_client(
            session_id=session_id,
            client_id=tx.client_id,
            citizen_id=auth.citizen_id,
            login_id=tx.id,
        )

    # One commit: the code (stored, not yet committed, by the grant), the session and the
    # client it logged in to, after the login was consumed.
    _start_session(auth, method=tx.acr, also=record_client)
    return response


def _added_params(location: str, redirect_uri: str) -> list[tuple[str, str]]:
    """The parameters Authlib appended to ``redirect_uri`` (after any query of its own)."""
    own = len(parse_qsl(urlsplit(redirect_uri).query, keep_blank_values=True))
    return parse_qsl(urlsplit(location).query, keep_blank_values=True)[own:]


def _start_session(
    auth: Authentication, *, method: str | None, also: Callable[[str], None] | None = None
) -> str:
    """The browser's session at Bürger-ID; its ``acr`` names how the citizen logged in.
    ``also(session_id)`` runs in the same transaction (``sessions.start_session``)."""
    return start_session(
        citizen_id=auth.citizen_id,
        acr=method or crosslogin.ACR_PHONE,
        amr=auth.amr,
        login_id=auth.login_id,
        credential_pk=auth.credential_pk,
        also=also,
    )


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
    if response is not None and not frontchannel_logouts():
        response.status_code = 303
        return response
    return logged_out_page(continue_to=response.headers["Location"] if response else None)


def logged_out_page(
    *,
    continue_to: str | None = None,
    post_to: str | None = None,
    post_params: list[tuple[str, str]] | None = None,
) -> Response:
    """The logged-out page, with an iframe per front-channel client of the ended session
    (Front-Channel Logout 1.0 §3; SAML HTTP-Redirect LogoutRequests, saml.logout); its CSP
    frames exactly those origins, on this page only. ``post_to``: a form that carries an answer
    on to the application once the iframes have loaded (``js/logged-out.js``, the SAML
    LogoutResponse to the SP that asked)."""
    frames = frontchannel_logouts()
    page = render_template(
        "logged_out.html",
        frames=frames,
        continue_to=continue_to,
        post_to=post_to,
        post_params=post_params or [],
    )
    origins = " ".join(sorted({frame.origin for frame in frames}))
    csp = CSP.format(form_targets=origin_of(post_to) if post_to else "")
    if origins:
        csp += f"; frame-src {origins}"
    return Response(page, headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"})


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


def _unreadable_credentials() -> Response:
    malformed = InvalidClientError(description="Malformed client credentials.")
    response = jsonify(error=malformed.error, error_description=malformed.description)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="token"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/token")
def token() -> Response:
    if not _basic_credentials_readable():
        return _unreadable_credentials()
    return authorization().create_token_response()


# Client authentication travels with a pushed request; it is no part of the request kept.
CLIENT_AUTH_PARAMETERS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})


@bp.post("/par")
def pushed_authorization_request() -> Response:
    """RFC 9126 §2: the client pushes its authorization request with its client
    authentication; it is validated as at /authorize and kept for a single use there.

    201 with ``request_uri`` and ``expires_in`` (§2.2); errors as JSON like the token
    endpoint's (§2.3), and nothing is stored. ``prompt=none`` is a valid request whose answer,
    ``login_required``, goes to the redirect URI when the request is used, as without PAR.
    """
    if not _basic_credentials_readable():
        return _unreadable_credentials()
    server = authorization()
    oauth_request = server.create_oauth2_request(request)
    try:
        client = server.authenticate_pushing_client(oauth_request)
        params = _pushed_params(client)
        with contextlib.suppress(LoginRequiredError):  # answered at /authorize, see above
            client, params = validated_request(params, request=StoredAuthorizationRequest(params))
    except OAuth2Error as error:
        return _json_error(error)
    except ValueError:
        return _json_error(InvalidRequestError("The request holds values that cannot be used."))
    request_uri, expires_in = push_authorization_request(client_id=client.client_id, params=params)
    response = jsonify(request_uri=request_uri, expires_in=expires_in)
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


def _pushed_params(client: ActiveClient) -> dict[str, str]:
    """The authorization request in a /par body (form-encoded, RFC 9126 §2.1), without the
    client authentication; ``client_id`` is the authenticated client's."""
    form = request.form
    if any(len(form.getlist(name)) > 1 for name in form):
        raise InvalidRequestError("Repeated parameters are not allowed (RFC 6749 §3.1).")
    if "request_uri" in form:
        raise InvalidRequestError("'request_uri' cannot be pushed (RFC 9126 §2.1).")
    params = {name: value for name, value in form.items() if name not in CLIENT_AUTH_PARAMETERS}
    if params.setdefault("client_id", client.client_id) != client.client_id:
        raise InvalidRequestError("'client_id' is not the authenticated client's.")
    return params


def _json_error(error: OAuth2Error) -> Response:
    """An error of a back-channel endpoint: RFC 6749 §5.2 JSON, ``state`` and redirect never."""
    response = jsonify(error=error.error, error_description=str(error.description or error.error))
    response.status_code = error.status_code or 400
    for name, value in error.get_headers():
        if name.lower() == "www-authenticate":
            response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/revoke")
def revoke() -> Response:
    """RFC 7009 token revocation, for the authenticated client's own tokens."""
    if not _basic_credentials_readable():
        return _unreadable_credentials()
    return authorization().create_endpoint_response("revocation")


@bp.post("/introspect")
def introspect() -> Response:
    """RFC 7662 token introspection, for the authenticated client's own tokens."""
    if not _basic_credentials_readable():
        return _unreadable_credentials()
    return authorization().create_endpoint_response("introspection")


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    return authorization().create_endpoint_response("userinfo")
