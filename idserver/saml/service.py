"""SAML service providers and the policy around each request: who may ask, once, when, where.

``saml.idp`` speaks the protocol (pysaml2); this module owns the ``saml_service_providers``
and ``saml_requests`` tables and decides what a request may have: replay (the request ID is
inserted once, the primary key refuses a second), the IssueInstant window, the ACS URL from the
SP's metadata, the attributes and the level.
"""

from __future__ import annotations

import calendar
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from defusedxml.ElementTree import fromstring
from flask import current_app
from saml2 import time_util
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..audit import record_event
from ..db import db
from ..db import utcnow
from ..keys import key_store
from . import idp
from .akdb import read_akdb_request
from .attributes import known
from .errors import AcsNotRegistered
from .errors import RequestExpired
from .errors import RequestReplayed
from .errors import SamlRejected
from .errors import UnknownServiceProvider
from .models import SamlRequest
from .models import ServiceProvider
from .models import SessionServiceProvider

__all__ = [
    "AcceptedRequest",
    "ServiceUsed",
    "accept_authn_request",
    "add_service_provider",
    "idp_settings",
    "remove_service_provider",
    "service_providers",
    "services_used",
]

METADATA_NS = "urn:oasis:names:tc:SAML:2.0:metadata"


def idp_settings() -> idp.IdpSettings:
    """The IdP as configured now: every registered SP's metadata and the SAML key."""
    idp.xmlsec_binary()  # SamlUnavailable (503) before anything is made or read
    key_pem, cert_pem = key_store().saml_credentials()
    metadata = tuple(
        db.session.scalars(select(ServiceProvider.metadata_xml).order_by(ServiceProvider.id))
    )
    return idp.IdpSettings(
        issuer=current_app.config["ISSUER"],
        sp_metadata=metadata,
        key_pem=key_pem,
        cert_pem=cert_pem,
        want_requests_signed=current_app.config["SAML_WANT_AUTHN_REQUESTS_SIGNED"],
    )


# -- registration -----------------------------------------------------------------------------
def _entity(metadata_xml: str) -> tuple[str, str]:
    """EntityID and a display name of an SP's EntityDescriptor (SAML 2.0 Metadata §2.3.2)."""
    try:
        root = fromstring(metadata_xml)
    except Exception as exc:  # defusedxml's and expat's errors alike
        raise SamlRejected(f"unreadable metadata: {exc}") from exc
    if root.tag != f"{{{METADATA_NS}}}EntityDescriptor" or not root.get("entityID"):
        raise SamlRejected("metadata must be one md:EntityDescriptor with an entityID")
    descriptor = root.find(f"{{{METADATA_NS}}}SPSSODescriptor")
    if descriptor is None:
        raise SamlRejected("metadata has no md:SPSSODescriptor")
    signing = [
        key
        for key in descriptor.findall(f"{{{METADATA_NS}}}KeyDescriptor")
        if key.get("use", "signing") == "signing"
    ]
    if not signing and current_app.config["SAML_WANT_AUTHN_REQUESTS_SIGNED"]:
        raise SamlRejected(
            "metadata has no signing certificate (md:KeyDescriptor), and requests must be signed"
        )
    names = root.findall(f"{{{METADATA_NS}}}Organization/{{{METADATA_NS}}}OrganizationDisplayName")
    entity_id = root.get("entityID", "")
    return entity_id, (names[0].text or "").strip() if names else entity_id


def add_service_provider(
    metadata_xml: str,
    *,
    source: str,
    name: str | None = None,
    actor: str = "operator",
    **audit: Any,
) -> ServiceProvider:
    """Register an SP from its metadata (audited); its metadata is replaced if it is known."""
    entity_id, display = _entity(metadata_xml)
    sp = db.session.scalars(
        select(ServiceProvider).where(ServiceProvider.entity_id == entity_id)
    ).first()
    if sp is None:
        sp = ServiceProvider(id="saml-" + secrets.token_urlsafe(12), entity_id=entity_id)
        db.session.add(sp)
    sp.name = (name or display)[:200]
    sp.metadata_xml = metadata_xml
    sp.source = source[:1000]
    db.session.flush()
    record_event("saml_sp_added", actor=actor, sp_id=sp.id, entity_id=entity_id, source=sp.source)
    db.session.commit()
    return sp


def remove_service_provider(
    entity_or_id: str, *, actor: str = "operator", **audit: Any
) -> ServiceProvider:
    sp = db.session.scalars(
        select(ServiceProvider).where(
            (ServiceProvider.entity_id == entity_or_id) | (ServiceProvider.id == entity_or_id)
        )
    ).first()
    if sp is None:
        raise UnknownServiceProvider()
    db.session.delete(sp)
    record_event("saml_sp_removed", actor=actor, sp_id=sp.id, entity_id=sp.entity_id, **audit)
    db.session.commit()
    return sp


def service_providers() -> list[ServiceProvider]:
    return list(db.session.scalars(select(ServiceProvider).order_by(ServiceProvider.entity_id)))


def service_provider(entity_id: str) -> ServiceProvider:
    sp = db.session.scalars(
        select(ServiceProvider).where(ServiceProvider.entity_id == entity_id)
    ).first()
    if sp is None:
        raise UnknownServiceProvider()
    return sp


@dataclass(frozen=True)
class ServiceUsed:
    """An SP the citizen logged in to (``saml_session_providers``): for the account page."""

    sp_id: str
    name: str  # the operator's name, else the metadata's OrganizationDisplayName
    attributes: tuple[str, ...]  # every urn:oid: name released, first release first
    last_login: dt.datetime


def services_used(citizen_id: str) -> list[ServiceUsed]:
    """The SPs this citizen's sessions sent assertions to, latest login first.

    A record lives as long as its browser session (purged with it), as OIDC's tokens do.
    """
    rows = db.session.execute(
        select(
            SessionServiceProvider.sp_id,
            ServiceProvider.name,
            SessionServiceProvider.attributes,
            SessionServiceProvider.created_at,
        )
        .join(ServiceProvider, ServiceProvider.id == SessionServiceProvider.sp_id)
        .where(SessionServiceProvider.citizen_id == citizen_id)
        .order_by(SessionServiceProvider.created_at, SessionServiceProvider.id)
    ).all()
    found: dict[str, ServiceUsed] = {}
    for sp_id, name, attributes, created_at in rows:
        earlier = found.get(sp_id)
        names = list(earlier.attributes) if earlier else []
        names.extend(a for a in attributes or [] if a not in names)
        found[sp_id] = ServiceUsed(sp_id, name, tuple(names), created_at)
    return sorted(found.values(), key=lambda s: s.last_login, reverse=True)


# -- one AuthnRequest ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AcceptedRequest:
    sp: ServiceProvider
    request_id: str
    acs_url: str
    attributes: tuple[str, ...]  # urn:oid: names to release
    levels: tuple[str, ...]  # RequestedAuthnContext class refs
    comparison: str | None
    display_name: str  # AKDB OrganizationDisplayName, else the SP's name
    online_service_id: str  # AKDB OnlineServiceId as sent (checked by the caller), or ""


def _check_issue_instant(issue_instant: str | None) -> dt.datetime:
    """SAML 2.0 Core §3.2.1: IssueInstant, here within the configured window of now."""
    window = dt.timedelta(seconds=current_app.config["SAML_REQUEST_MAX_AGE_SECONDS"])
    try:
        issued = dt.datetime.fromtimestamp(
            calendar.timegm(time_util.str_to_time(issue_instant)), dt.UTC
        )
    except (TypeError, ValueError) as exc:
        raise SamlRejected() from exc
    now = utcnow()
    if not now - window <= issued <= now + window:
        raise RequestExpired()
    return issued


def _acs_url(settings: idp.IdpSettings, sp: ServiceProvider, message: object) -> str:
    """The ACS to answer at: the one the request names, if the metadata lists it for
    HTTP-POST, by URL or index; else the metadata's default (SAML 2.0 Metadata §2.2.3)."""
    endpoints = idp.acs_endpoints(settings, sp.entity_id)
    url = getattr(message, "assertion_consumer_service_url", None)
    index = getattr(message, "assertion_consumer_service_index", None)
    binding = getattr(message, "protocol_binding", None)
    if binding and binding != idp.BINDINGS["post"]:
        raise AcsNotRegistered()
    if url:
        if url not in [e["location"] for e in endpoints]:
            raise AcsNotRegistered()
        return str(url)
    if index is not None:
        for endpoint in endpoints:
            if str(endpoint.get("index")) == str(index):
                return str(endpoint["location"])
        raise AcsNotRegistered()
    if not endpoints:
        raise AcsNotRegistered()
    default = next((e for e in endpoints if str(e.get("is_default")).lower() == "true"), None)
    return str((default or endpoints[0])["location"])


def _requested_levels(message: object) -> tuple[tuple[str, ...], str | None]:
    context = getattr(message, "requested_authn_context", None)
    if context is None:
        return (), None
    refs = tuple((ref.text or "").strip() for ref in context.authn_context_class_ref or [])
    return refs, context.comparison


def accept_authn_request(parsed: idp.ParsedRequest, settings: idp.IdpSettings) -> AcceptedRequest:
    """Everything checked that makes a request answerable, and its ID taken (single use).

    The ID is inserted last, in the caller's transaction: a request refused for any other
    reason leaves no row, and one accepted cannot be accepted again.
    """
    sp = service_provider(parsed.issuer)
    message = parsed.message
    issued = _check_issue_instant(message.issue_instant)
    acs_url = _acs_url(settings, sp, message)
    request_id = str(message.id or "")
    if not request_id or len(request_id) > 256:
        raise SamlRejected()
    akdb = read_akdb_request(parsed.xml)
    unknown_required = [name for name in akdb.required if not known(name)]
    if unknown_required:
        raise SamlRejected(f"unknown required attribute {unknown_required[0]}")
    requested = [name for name in akdb.requested if known(name)]
    for name in _metadata_requested(settings, sp.entity_id):
        if known(name) and name not in requested:
            requested.append(name)
    levels, comparison = _requested_levels(message)
    window = dt.timedelta(seconds=current_app.config["SAML_REQUEST_MAX_AGE_SECONDS"])
    db.session.execute(delete(SamlRequest).where(SamlRequest.expires_at <= utcnow()))
    try:
        with db.session.begin_nested():
            db.session.add(
                SamlRequest(sp_id=sp.id, request_id=request_id, expires_at=issued + 2 * window)
            )
    except IntegrityError as exc:
        raise RequestReplayed() from exc
    return AcceptedRequest(
        sp=sp,
        request_id=request_id,
        acs_url=acs_url,
        attributes=tuple(requested),
        levels=levels,
        comparison=comparison,
        display_name=akdb.organization_display_name or sp.name,
        online_service_id=akdb.online_service_id,
    )


def _metadata_requested(settings: idp.IdpSettings, entity_id: str) -> list[str]:
    """The RequestedAttribute names of the SP's AttributeConsumingService (metadata)."""
    server = idp.identity_provider(settings)
    try:
        spec = server.metadata.attribute_requirement(entity_id)
    except Exception:  # noqa: BLE001 -- no AttributeConsumingService: nothing requested
        return []
    names: list[str] = []
    for group in ("required", "optional"):
        for attribute in (spec or {}).get(group, []):
            name = attribute.get("name") if isinstance(attribute, dict) else None
            if name:
                names.append(str(name))
    return names
