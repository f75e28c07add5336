"""SAML 2.0 endpoints: metadata, Web Browser SSO (HTTP-Redirect and HTTP-POST), Single Logout.

``/saml/sso`` owns both legs of an AuthnRequest, as ``/authorize`` does for OIDC; the QR login
in between is the same one (``crosslogin``), which never speaks SAML::

    SP ─▶ /saml/sso ── idp.parse_authn_request ─▶ service.accept_authn_request ─▶ /login/<id>
                                                                                  │ ended
    SP ◀─ signed Response (HTTP-POST) ◀──────────── resume ◀───────── /login/<id>/continue
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from saml2.samlp import STATUS_NO_AUTHN_CONTEXT
from saml2.samlp import STATUS_NO_PASSIVE
from saml2.samlp import STATUS_REQUEST_DENIED
from saml2.samlp import STATUS_REQUEST_UNSUPPORTED

from ..audit import record_event
from ..citizens.models import Citizen
from ..crosslogin import service as crosslogin
from ..crosslogin.errors import LoginEnded
from ..crosslogin.models import Requester
from ..crosslogin.views import browser_login
from ..crosslogin.views import forget_browser
from ..crosslogin.views import start_login
from ..db import db
from ..oidc.claims import pairwise_subject
from ..oidc.claims import session_identifier
from ..oidc.logout import frontchannel_logouts
from ..oidc.views import logged_out_page
from ..sessions import end_session
from ..sessions import start_session
from ..web import CSP
from . import idp
from . import levels
from .akdb import online_service_id_valid
from .attributes import attribute_values
from .attributes import claims_for
from .errors import SamlRejected
from .logout import exclude_initiator
from .logout import record_session_provider
from .service import AcceptedRequest
from .service import accept_authn_request
from .service import idp_settings
from .service import service_provider

bp = Blueprint("saml", __name__, url_prefix="/saml")
log = logging.getLogger(__name__)


@bp.get("/metadata")
def metadata() -> Response:
    """The IdP's signed EntityDescriptor (SAML 2.0 Metadata §2.3.2, signed per §3)."""
    xml = idp.signed_metadata(idp_settings())
    return Response(
        xml,
        mimetype="application/samlmetadata+xml",
        headers={"Cache-Control": "public, max-age=300"},
    )


def _message(name: str) -> tuple[str, str, dict[str, str | None]]:
    """(encoded message, binding, redirect signature parts) of this request."""
    if request.method == "POST":
        encoded = request.form.get(name)
        binding = idp.BINDINGS["post"]
        extra: dict[str, str | None] = {"relay_state": request.form.get("RelayState")}
    else:
        encoded = request.args.get(name)
        binding = idp.BINDINGS["redirect"]
        extra = {
            "relay_state": request.args.get("RelayState"),
            "sigalg": request.args.get("SigAlg"),
            "signature": request.args.get("Signature"),
        }
    if not encoded:
        raise SamlRejected()
    return encoded, binding, extra


@bp.route("/sso", methods=["GET", "POST"])
def sso() -> Any:
    """Validate the AuthnRequest, then hand the browser to a QR-code login transaction.

    A POST comes from the SP's page, so the CSRF check exempts it (as ``/authorize``).
    """
    encoded, binding, extra = _message("SAMLRequest")
    settings = idp_settings()
    parsed = idp.parse_authn_request(settings, encoded=encoded, binding=binding, **extra)
    accepted = accept_authn_request(parsed, settings)
    relay_state = extra.get("relay_state") or ""
    refusal = _refusal(parsed.message, accepted)
    if refusal is not None:
        # Answered before any login starts; the request ID is not kept (it gets this answer
        # again), so a refusal changes nothing.
        db.session.rollback()
        status, message = refusal
        answer = idp.error_response(
            settings,
            in_response_to=accepted.request_id,
            destination=accepted.acs_url,
            status=status,
            message=message,
        )
        return _post_to(accepted.acs_url, answer, relay_state)
    params = {
        "request_id": accepted.request_id,
        "acs_url": accepted.acs_url,
        "relay_state": relay_state,
        "sp_entity_id": accepted.sp.entity_id,
        "attributes": " ".join(accepted.attributes),
        "levels": " ".join(accepted.levels),
        "comparison": accepted.comparison or "",
    }
    return start_login(
        client_id=accepted.sp.id, params=params, scope="", requester=_requester(accepted)
    )


def _refusal(message: Any, accepted: AcceptedRequest) -> tuple[str, str] | None:
    """What a trusted request asks that no login here can give (SAML 2.0 Core §3.2.2.2):
    ``IsPassive`` (every login is the citizen's act on the phone), a level no login under
    this configuration reaches (``levels.answerable``), or an AKDB ``OnlineServiceId`` that is
    no identifier (``akdb.online_service_id_valid``). None: the login may start."""
    if not online_service_id_valid(accepted.online_service_id):
        return STATUS_REQUEST_UNSUPPORTED, "The OnlineServiceId is not a valid identifier."
    if str(message.is_passive).lower() in ("true", "1"):
        return STATUS_NO_PASSIVE, "Every Bürger-ID login needs the citizen's phone."
    if not levels.answerable(accepted.levels, accepted.comparison, current_app.config):
        return STATUS_NO_AUTHN_CONTEXT, "No Bürger-ID login here reaches the requested level."
    return None


def _requester(accepted: AcceptedRequest) -> Requester:
    return Requester(
        name=accepted.display_name,
        claims=claims_for(accepted.attributes),
        proximity_policy=None,
        site_url=_origin(accepted.acs_url) + "/" if _origin(accepted.acs_url) else "",
        form_origin=_origin(accepted.acs_url),
        answers_endings=True,
        protocol="saml",
        online_service_id=accepted.online_service_id,
        required_level=(
            levels.answerable(accepted.levels, accepted.comparison, current_app.config)[0]
            if accepted.levels
            else None
        ),
    )


def _online_service(online_service_id: str) -> dict[str, str]:
    """The audit field, only when the request named a service (the viewer shows a dash else)."""
    return {"online_service_id": online_service_id} if online_service_id else {}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"


def _post_to(url: str, encoded: str, relay_state: str, name: str = "SAMLResponse") -> Response:
    """The HTTP-POST binding (SAML 2.0 Bindings §3.5): a form the browser posts to ``url``,
    without inline script (``js/form-post.js`` submits it)."""
    params = [(name, encoded)]
    if relay_state:
        params.append(("RelayState", relay_state))
    page = render_template("form_post.html", action=url, params=params)
    return Response(
        page,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": CSP.format(form_targets=_origin(url)),
        },
    )


def resume(login_id: str) -> Any:
    """The second leg: answer the SP of the login this browser started, once.

    Approved: a signed Response with a signed Assertion, NameID the pairwise pseudonym, the
    requested attributes, the achieved level. Ended otherwise: status ``RequestDenied``.
    """
    tx = browser_login(login_id)
    params = tx.request_params
    settings = idp_settings()
    if tx.state == "approved":
        if not crosslogin.consume(tx):
            raise LoginEnded()
        citizen = db.session.get(Citizen, tx.citizen_id)
        if citizen is None or tx.approved_at is None:
            raise LoginEnded()
        names = tuple(params["attributes"].split())
        level = levels.claimed(
            tx.level or "low",
            params.get("levels", "").split(),
            params.get("comparison") or None,
        )
        if level is None:  # approval checked required_level; "exact"/"maximum" leave none above
            raise LoginEnded()
        name_id = pairwise_subject(citizen.id, client_id=tx.client_id)
        answer = idp.authn_response(
            settings,
            sp_entity_id=params["sp_entity_id"],
            in_response_to=params["request_id"],
            destination=params["acs_url"],
            name_id=name_id,
            identity=attribute_values(citizen, names),
            level=level,
            authn_instant=int(tx.approved_at.timestamp()),
            session_index=session_identifier(tx.id),  # the session start_session makes below
        )
        record_event(
            "saml_assertion_issued",
            actor="system",
            subject=citizen.id,
            sp_id=tx.client_id,
            login_id=tx.id,
            attributes=list(names),
            # which of the SP's online services the login was for (AKDB OnlineServiceId)
            **_online_service(tx.requesting.online_service_id),
        )
        db.session.commit()
        response = _post_to(params["acs_url"], answer, params["relay_state"])
        forget_browser(response, tx.id)
        start_session(
            citizen_id=citizen.id,
            acr=tx.acr or crosslogin.ACR_PHONE,
            amr=list(tx.amr or []),
            login_id=tx.id,
            credential_pk=tx.credential_pk,
            # the session and the SP it answered in one transaction: a crash between them
            # would leave a session whose Single Logout misses this SP
            also=lambda session_id: record_session_provider(
                session_id=session_id,
                sp_id=tx.client_id,
                citizen_id=citizen.id,
                login_id=tx.id,
                name_id=name_id,
                attributes=list(names),
            ),
        )
        return response
    if tx.state in ("denied", "expired") and crosslogin.consume_denied(tx):
        answer = idp.error_response(
            settings,
            in_response_to=params["request_id"],
            destination=params["acs_url"],
            status=(
                STATUS_NO_AUTHN_CONTEXT
                if tx.deny_reason == "level_too_low"
                else STATUS_REQUEST_DENIED
            ),
            message="The login was not approved.",
        )
        return _post_to(params["acs_url"], answer, params["relay_state"])
    return redirect(f"{current_app.config['ISSUER']}/login/{tx.id}/continue", code=303)


@bp.route("/slo", methods=["GET", "POST"])
def slo() -> Any:
    """SP-initiated Single Logout (SAML 2.0 Profiles §4.4): ends the Bürger-ID session and
    answers with a signed LogoutResponse at the SP's SingleLogoutService.

    The session's other SPs and OIDC clients are told (``saml.logout``, ``oidc.logout``); when
    some of them are told in iframes, the logged-out page shows them and then posts the answer
    on to the SP (``js/logged-out.js``). A LogoutResponse an SP sends back from such an iframe
    ends here with an empty answer.
    """
    if request.values.get("SAMLResponse"):
        return Response(status=204, headers={"Cache-Control": "no-store"})
    encoded, binding, extra = _message("SAMLRequest")
    settings = idp_settings()
    parsed = idp.parse_logout_request(settings, encoded=encoded, binding=binding, **extra)
    sp = service_provider(parsed.issuer)
    post = idp.slo_endpoints(settings, parsed.issuer)
    if not post:
        raise SamlRejected("the service provider's metadata has no HTTP-POST SingleLogoutService")
    exclude_initiator(sp.id)
    end_session()
    answer = idp.logout_response(settings, request=parsed, binding=idp.BINDINGS["post"])
    relay_state = extra.get("relay_state") or ""
    if frontchannel_logouts():
        params = [("SAMLResponse", answer)]
        if relay_state:
            params.append(("RelayState", relay_state))
        return logged_out_page(post_to=post[0], post_params=params)
    return _post_to(post[0], answer, relay_state)
