"""IdP-initiated Single Logout (SAML 2.0 Profiles §4.4): when a Bürger-ID session ends, every
SAML service provider it sent an assertion to hears of it, on the OIDC logout's rails::

    assertion issued (resume) ──▶ record_session_provider: SP, NameID, SessionIndex
    session ends (sessions.ended) ──▶ sessions_ended, same transaction, for each other SP:
         │  SOAP SingleLogoutService ──▶ outbox row (protocol "saml", oidc.logout.add_delivery)
         │                                 sent after commit, retried, audited: send_logout_request
         │  HTTP-Redirect one ──────────▶ iframe on the logged-out page: the signed LogoutRequest
         │  neither ────────────────────▶ nobody to tell (the SP's metadata offers no way)
         ▼
    the SP that asked for the logout (/saml/slo) gets its LogoutResponse instead, not a request

The LogoutRequest names the NameID and the SessionIndex of the assertion (Core §3.7.1), both
kept in ``saml_session_providers``; pysaml2 builds and signs it (``idp.logout_request``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import requests
from flask import current_app
from flask import g
from flask import has_request_context
from sqlalchemy import select
from sqlalchemy import update

from ..db import db
from ..oidc.claims import session_identifier
from ..oidc.logout import FrontChannelLogout
from ..oidc.logout import LogoutChannel
from ..oidc.logout import add_delivery
from ..oidc.logout import add_frontchannel_logout
from ..oidc.logout import origin_of
from ..oidc.models import LogoutDelivery
from . import idp
from .errors import SamlUnavailable
from .models import ServiceProvider
from .models import SessionServiceProvider
from .service import idp_settings

__all__ = [
    "SAML_CHANNEL",
    "exclude_initiator",
    "record_session_provider",
    "send_logout_request",
    "sessions_ended",
]

log = logging.getLogger(__name__)
INITIATOR_KEY = "saml_logout_initiator"
SOAP_ACTION = "http://www.oasis-open.org/committees/security"  # SAML 2.0 Bindings §3.2.3.3


def record_session_provider(
    *,
    session_id: str,
    sp_id: str,
    citizen_id: str,
    login_id: str,
    name_id: str,
    attributes: list[str],
) -> None:
    """Remember that ``session_id`` sent an assertion to ``sp_id``, in the caller's transaction
    (the one that starts the session: ``start_session(also=…)``; the caller commits)."""
    db.session.add(
        SessionServiceProvider(
            session_id=session_id,
            sp_id=sp_id,
            citizen_id=citizen_id,
            login_id=login_id,
            name_id=name_id,
            session_index=session_identifier(login_id),
            attributes=attributes,
        )
    )


def exclude_initiator(sp_id: str) -> None:
    """The SP whose LogoutRequest ends this request's session: answered, not asked again."""
    g.setdefault(INITIATOR_KEY, set()).add(sp_id)


def sessions_ended(session_ids: Collection[str], *, successor: str | None = None) -> None:
    """The ``sessions.ended`` hook for SAML: runs in the transaction that ends the sessions.

    With a ``successor`` the providers move to it (as ``oidc.logout``). Otherwise each SP of
    these sessions but the initiator is told by the first way its metadata offers: SOAP (an
    outbox row), HTTP-Redirect (an iframe of the logged-out page), or not at all.
    """
    session = db.session
    if successor is not None:
        session.execute(
            update(SessionServiceProvider)
            .where(SessionServiceProvider.session_id.in_(session_ids))
            .values(session_id=successor)
        )
        return
    rows = session.execute(
        select(SessionServiceProvider, ServiceProvider)
        .join(ServiceProvider, ServiceProvider.id == SessionServiceProvider.sp_id)
        .where(SessionServiceProvider.session_id.in_(session_ids))
        .order_by(SessionServiceProvider.id)
    ).all()
    initiators = g.get(INITIATOR_KEY, set()) if has_request_context() else set()
    rows = [row for row in rows if row.ServiceProvider.id not in initiators]
    if not rows:
        return
    try:
        settings = idp_settings()
    except SamlUnavailable:  # the session still ends; the SPs cannot be told without xmlsec1
        log.warning("SAML logout not propagated to %s service providers: no xmlsec1", len(rows))
        return
    seen: set[tuple[str, str]] = set()
    for entry, sp in rows:
        if (sp.id, entry.session_index) in seen:
            continue
        seen.add((sp.id, entry.session_index))
        services = idp.slo_services(settings, sp.entity_id)
        if "soap" in services:
            add_delivery(
                protocol="saml", client_id=sp.id, sid=entry.session_index, sub=entry.name_id
            )
        elif "redirect" in services and has_request_context():
            _, url = idp.logout_request(
                settings,
                sp_entity_id=sp.entity_id,
                binding=idp.BINDINGS["redirect"],
                destination=services["redirect"],
                name_id=entry.name_id,
                session_index=entry.session_index,
            )
            add_frontchannel_logout(
                FrontChannelLogout(uri=url, origin=origin_of(services["redirect"]))
            )


def send_logout_request(delivery: LogoutDelivery) -> str | None:
    """POST a signed LogoutRequest over the SOAP binding (Bindings §3.2); None if the SP
    answered with a LogoutResponse to it with status Success, else what went wrong."""
    sp = db.session.get(ServiceProvider, delivery.client_id)
    if sp is None:
        return "service provider no longer registered"
    try:
        settings = idp_settings()
    except SamlUnavailable:
        return "xmlsec1 missing"
    location = idp.slo_services(settings, sp.entity_id).get("soap")
    if location is None:
        return "service provider no longer takes SOAP logouts"
    request_id, body = idp.logout_request(
        settings,
        sp_entity_id=sp.entity_id,
        binding=idp.BINDINGS["soap"],
        destination=location,
        name_id=delivery.sub,
        session_index=delivery.sid,
    )
    timeout = current_app.config["LOGOUT_DELIVERY_TIMEOUT_SECONDS"]
    try:
        response = requests.post(
            location,
            data=body.encode(),
            timeout=timeout,
            allow_redirects=False,
            headers={
                "Content-Type": "text/xml; charset=utf-8",  # SOAP 1.1 (Bindings §3.2.2)
                "SOAPAction": SOAP_ACTION,
                "Cache-Control": "no-store",
            },
        )
    except requests.RequestException as exc:
        return type(exc).__name__
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    if not idp.read_soap_logout_response(settings, response.text, expected_request_id=request_id):
        return "no successful LogoutResponse"
    return None


SAML_CHANNEL = LogoutChannel(
    send=send_logout_request,
    delivered_event="saml_logout_delivered",
    failed_event="saml_logout_delivery_failed",
    party_key="sp_id",
)
