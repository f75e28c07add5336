"""Signing in and out of the SAML portal: the same pages as ``account``, spoken in SAML 2.0.

::

    /login ── signed AuthnRequest (HTTP-Redirect) ──▶ Bürger-ID /saml/sso ─▶ QR, phone
    /saml/acs ◀── signed Response (HTTP-POST) ──────── Bürger-ID
    /logout ── signed LogoutRequest (HTTP-Redirect) ─▶ Bürger-ID /saml/slo
    /saml/slo ◀── signed LogoutResponse (HTTP-POST) ── Bürger-ID

The outstanding AuthnRequest is kept in the portal's database (``saml_requests``), found by the
RelayState that travels with it: the answer is POSTed cross-site, so it cannot rely on the
session cookie. A row is used once (deleted by the login it completes) and lives ten minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Column
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select

from . import csrf
from . import saml_sp
from .account import PERSONAL_CLAIMS
from .db import UTCDateTime
from .db import db
from .db import utcnow
from .errors import LoginFailed
from .web import clear_session
from .web import current_resident
from .web import external_url
from .web import local_path
from .web import login_required
from .web import sign_in
from .web import sign_out

__all__ = ["bp", "init_app", "outstanding_table"]

bp = Blueprint("account", __name__)

TABLE = "saml_requests"
REQUEST_LIFETIME = dt.timedelta(minutes=10)
LOGOUT_STATE_KEY = "logout_state"
SAML_KEY = "saml"  # the claim holding NameID qualifiers and SessionIndex, for the logout
# Which SAML attributes stand for which of the about page's rows.
ADDRESS_PARTS = ("street", "postcode", "city")


def outstanding_table(metadata: MetaData) -> Table:
    """AuthnRequests awaiting their answer, by the SHA-256 of their RelayState."""
    existing = metadata.tables.get(TABLE)
    if existing is not None:
        return existing
    return Table(
        TABLE,
        metadata,
        Column("relay_state_hash", String(64), primary_key=True),
        Column("request_id", String(128), nullable=False),
        Column("next_path", String(512), nullable=False),
        Column("expires_at", UTCDateTime, nullable=False, index=True),
    )


def _table() -> Table:
    return outstanding_table(current_app.config["PORTAL"].metadata)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _unreachable(exc: Exception) -> LoginFailed:
    current_app.logger.warning("Bürger-ID's SAML metadata unavailable: %r", exc)
    return LoginFailed(
        _l("Bürger-ID cannot be reached right now. Please try again in a moment."),
        error="provider_unreachable",
        status=503,
    )


@bp.get("/saml/metadata")
def metadata() -> Response:
    """This service provider's metadata, as the city registers it at Bürger-ID."""
    return Response(saml_sp.sp_metadata(), mimetype="application/samlmetadata+xml")


@bp.get("/login")
def login() -> Any:
    """A signed AuthnRequest to Bürger-ID; the request id waits in the database."""
    relay_state = secrets.token_urlsafe(24)
    try:
        request_id, url = saml_sp.authn_redirect(
            relay_state, current_app.config["PORTAL"].display_name
        )
    except Exception as exc:  # noqa: BLE001 -- metadata unreachable or unusable
        raise _unreachable(exc) from exc
    table, now = _table(), utcnow()
    db.session.execute(delete(table).where(table.c.expires_at <= now))
    db.session.execute(
        insert(table).values(
            relay_state_hash=_hash(relay_state),
            request_id=request_id,
            next_path=local_path(request.args.get("next"))[:512],
            expires_at=now + REQUEST_LIFETIME,
        )
    )
    db.session.commit()
    return redirect(url, 303)


@bp.post("/saml/acs")
def acs() -> Any:
    """Bürger-ID's Response: checked by pysaml2 against the outstanding request, then used up."""
    relay_state = request.form.get("RelayState", "")
    encoded = request.form.get("SAMLResponse", "")
    table = _table()
    row = db.session.execute(
        select(table.c.request_id, table.c.next_path).where(
            table.c.relay_state_hash == _hash(relay_state), table.c.expires_at > utcnow()
        )
    ).first()
    failed = LoginFailed(
        _l("The login could not be completed. Please start again."), error="login_failed"
    )
    if row is None or not encoded:
        clear_session()
        raise failed
    try:
        answer = saml_sp.read_response(encoded, request_id=row.request_id)
    except Exception as exc:  # noqa: BLE001 -- pysaml2 raises many kinds; all mean "refused"
        current_app.logger.warning("SAML response refused: %r", exc)
        clear_session()
        raise failed from exc
    used = db.session.execute(delete(table).where(table.c.relay_state_hash == _hash(relay_state)))
    db.session.commit()
    if used.rowcount != 1:  # type: ignore[attr-defined]  # a concurrent replay
        clear_session()
        raise failed
    claims: dict[str, Any] = {"sub": answer.name_id, **answer.attributes}
    if all(part in answer.attributes for part in ADDRESS_PARTS):
        claims["address"] = {
            "street_address": answer.attributes["street"],
            "postal_code": answer.attributes["postcode"],
            "locality": answer.attributes["city"],
            "formatted": f"{answer.attributes['street']}\n"
            f"{answer.attributes['postcode']} {answer.attributes['city']}",
        }
    claims["name"] = " ".join(
        part for part in (claims.get("given_name"), claims.get("family_name")) if part
    )
    claims[SAML_KEY] = {
        "name_id": answer.name_id,
        "name_qualifier": answer.name_qualifier,
        "sp_name_qualifier": answer.sp_name_qualifier,
        "session_index": answer.session_index,
        "level": answer.level,
    }
    sign_in(claims, id_token="")
    flash(_("You are signed in with Bürger-ID."), "success")
    return redirect(row.next_path, 303)


@bp.post("/logout")
def logout() -> Any:
    """End the session here, then at Bürger-ID (SAML 2.0 Single Logout, SP-initiated)."""
    resident = current_resident()
    sign_out()
    if resident is None or SAML_KEY not in resident.claims:
        return redirect(external_url("account.logged_out"), 303)
    state = secrets.token_urlsafe(16)
    try:
        url = saml_sp.logout_redirect(resident.claims[SAML_KEY], state)
    except Exception:  # noqa: BLE001 -- Bürger-ID unreachable: signed out here only
        current_app.logger.warning("Bürger-ID unreachable; signed out of this portal only")
        return redirect(external_url("account.logged_out"), 303)
    session[LOGOUT_STATE_KEY] = state
    return redirect(url, 303)


@bp.post("/saml/slo")
def slo() -> Any:
    """Bürger-ID's LogoutResponse; the logout here happened already."""
    expected = session.pop(LOGOUT_STATE_KEY, None)
    try:
        ok = saml_sp.read_logout_response(request.form.get("SAMLResponse", ""))
    except Exception as exc:  # noqa: BLE001 -- unsigned, forged or malformed
        current_app.logger.warning("SAML logout response refused: %r", exc)
        ok = False
    confirmed = ok and bool(expected) and request.form.get("RelayState") == expected
    return render_template("account/logged_out.html", confirmed=confirmed)


@bp.get("/logged-out")
def logged_out() -> str:
    return render_template("account/logged_out.html", confirmed=False)


@bp.get("/about")
@login_required
def about() -> str:
    """The persistent NameID and every attribute this portal received."""
    resident = current_resident()
    assert resident is not None
    personal = [
        (name, label, resident.claims[name])
        for name, label in PERSONAL_CLAIMS.items()
        if name in resident.claims
    ]
    technical = resident.claims.get(SAML_KEY) or {}
    return render_template(
        "account/about.html",
        sub=resident.sub,
        personal=personal,
        protocol={"AuthnContextClassRef": technical.get("level")},
        client_id=saml_sp.entity_id(),
    )


def init_app(app: Flask) -> None:
    saml_sp.init_app(app)
    # Posted by Bürger-ID's page (cross-site in production): the signed SAML message is the
    # proof, and the answer to a login is found by its RelayState, not by the session.
    csrf.exempt(app, "account.acs", "account.slo")
