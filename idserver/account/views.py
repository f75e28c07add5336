"""The citizen's own pages at Bürger-ID.

- ``/account``: devices (rename, revoke), services logged in to (withdraw consent), log out;
  a browser without a session is sent through a QR/passkey login to Bürger-ID first.
- ``/account/pairings/…``: add another device, approved with a passkey (``account.pairing``).
- ``/pair/<id>``: what the new device opens from the QR code or link.
- ``/account/revocation-codes``: replace all valid revocation codes with one new code; needs a
  login from the last ``FRESH_LOGIN`` (a stolen phone's open session must not void the
  citizen's paper code).
- ``/lost``: block every device with the revocation code, without logging in.

Forms post and answer ``303 See Other``; JSON endpoints are for the pages' scripts. Every POST
carries the session's CSRF token (``idserver.csrf``: form field or ``X-CSRF-Token`` header).
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask_babel import lazy_gettext as _l
from sqlalchemy import func
from sqlalchemy import select
from werkzeug.wrappers import Response as WerkzeugResponse

from .. import limits
from ..citizens import service as citizens
from ..citizens.models import Citizen
from ..citizens.views import enrolment_response
from ..config import issuer_is_https
from ..config import whole_minutes
from ..crosslogin.views import CLAIM_LABELS
from ..db import db
from ..db import utcnow
from ..errors import IdServerError
from ..oidc.clients import self_client
from ..oidc.logout import frontchannel_logouts
from ..oidc.views import begin_login
from ..oidc.views import logged_out_page
from ..passkeys.models import Credential
from ..sessions import BrowserSession
from ..sessions import current_session
from ..sessions import end_session
from ..web import client_address
from ..web import no_store
from . import consents
from . import devices
from . import pairing as pairings
from .errors import PairingCancelled
from .errors import PairingExpired

bp = Blueprint("account", __name__)

PAIR_COOKIE = "pair-{pairing_id}"
LOST_DONE_KEY = "lost_done"
# How recent the login must be to replace the revocation codes (the session's start is its login).
FRESH_LOGIN = dt.timedelta(minutes=5)
REVOCATION_CODES_PAGE = "/account/revocation-codes"


class SessionRequired(IdServerError):
    status = 401
    error = "login_required"
    description = _l("Your Bürger-ID session has ended. Please reload the page and log in again.")


def login_to_self(next_page: str) -> Any:
    """Send the browser through a QR/passkey login to Bürger-ID itself, then to ``next_page``."""
    issuer = current_app.config["ISSUER"]
    params = {
        "response_type": "code",
        "client_id": self_client().client_id,
        "redirect_uri": f"{issuer}/account",
        "scope": "openid",
        "state": secrets.token_urlsafe(16),
        "next": next_page,
    }
    return begin_login(self_client(), params)


def require_session(next_page: str) -> Any:
    """The current session, or a response that logs the browser in first."""
    session = current_session()
    if session is None:
        return None, login_to_self(next_page)
    return session, None


def has_fresh_login(browser_session: BrowserSession) -> bool:
    """Whether the session's login (its start: a new login starts a new session) is recent."""
    return browser_session.created_at > utcnow() - FRESH_LOGIN


def _json_session() -> BrowserSession:
    """For the pages' scripts: the session, or 401 (a script cannot follow a login)."""
    found = current_session()
    if found is None:
        raise SessionRequired()
    return found


def _to(path: str) -> WerkzeugResponse:
    return redirect(current_app.config["ISSUER"] + path, code=303)


def _page(template: str, **context: Any) -> Response:
    return no_store(Response(render_template(template, **context)))


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise IdServerError(_l("Please send a JSON object."))
    return body


# -- overview, devices, services, logout ------------------------------------------------------
@bp.get("/account")
def overview() -> Any:
    browser_session, login = require_session("/account")
    if login is not None:
        return login
    return _overview(browser_session)


def _overview(
    browser_session: BrowserSession, *, status: int = 200, rejected: dict[str, Any] | None = None
) -> Response:
    """The account page; ``rejected`` re-shows a refused rename at its field (device id,
    entered value, error text), without the round trip that would lose them."""
    citizen = db.session.get(Citizen, browser_session.citizen_id)
    current = devices.session_credential(browser_session)
    services = consents.list_all_services(browser_session.citizen_id)
    labels = {
        service.client_id: [CLAIM_LABELS[c] for c in service.claims if CLAIM_LABELS.get(c)]
        for service in services
    }
    response = _page(
        "account/overview.html",
        citizen=citizen,
        devices=devices.list_devices(browser_session.citizen_id, current=current),
        services=services,
        claim_labels=labels,
        revocation_codes=citizens.count_revocation_codes(browser_session.citizen_id),
        rejected=rejected,
    )
    response.status_code = status
    return response


@bp.post("/account/devices/<int:device_id>/rename")
def rename_device(device_id: int) -> Any:
    browser_session, login = require_session("/account")
    if login is not None:
        return login
    entered = request.form.get("name")
    try:
        devices.rename_device(browser_session.citizen_id, device_id, entered)
    except IdServerError as exc:
        if exc.error != "invalid_name":
            raise
        # Shown again at the field with what was typed (WCAG 3.3.1), not as a redirect.
        rejected = {"device_id": device_id, "name": entered or "", "error": str(exc.description)}
        return _overview(browser_session, status=422, rejected=rejected)
    # The message is shown inside the renamed device's entry (see ``_messages.html``).
    flash(str(_l("The device has been renamed.")), f"at:device-{device_id}")
    return _to(f"/account#device-{device_id}")


@bp.get("/account/devices/<int:device_id>/revoke")
def confirm_revoke_device(device_id: int) -> Any:
    browser_session, login = require_session("/account")
    if login is not None:
        return login
    device = devices.find_device(browser_session.citizen_id, device_id)
    usable = db.session.scalar(
        select(func.count())
        .select_from(Credential)
        .where(
            Credential.citizen_id == browser_session.citizen_id,
            Credential.revoked_at.is_(None),
        )
    )
    return _page(
        "account/revoke.html",
        device=device,
        current=devices.session_credential(browser_session) == device.id,
        last=usable == 1,
    )


@bp.post("/account/devices/<int:device_id>/revoke")
def revoke_device(device_id: int) -> Any:
    browser_session, login = require_session("/account")
    if login is not None:
        return login
    current = devices.session_credential(browser_session)
    devices.revoke_device(browser_session.citizen_id, device_id)
    if current == device_id:
        # The device this session was logged in with is gone: so is the session.
        end_session()
        flash(str(_l("The device has been removed. You have been logged out.")), "success")
        return _to("/account/logged-out")
    flash(str(_l("The device has been removed.")), "success")
    return _to("/account")


@bp.get("/account/services/<client_id>/withdraw")
def confirm_withdraw_consent(client_id: str) -> Any:
    """What withdrawing will do, and the button that does it (works without JavaScript)."""
    browser_session, login = require_session("/account")
    if login is not None:
        return login
    service = consents.find_service(browser_session.citizen_id, client_id[:64])
    labels = [CLAIM_LABELS[c] for c in service.claims if CLAIM_LABELS.get(c)]
    return _page("account/withdraw.html", service=service, claim_labels=labels)


@bp.post("/account/services/<client_id>/withdraw")
def withdraw_consent(client_id: str) -> Any:
    browser_session, login = require_session("/account")
    if login is not None:
        return login
    service = consents.find_service(browser_session.citizen_id, client_id[:64])
    if request.form.get("confirm") != "yes":
        # Only the confirmation page's button withdraws; anything else is asked first.
        return _to(f"/account/services/{service.client_id}/withdraw")
    consents.withdraw_consent(browser_session.citizen_id, service.client_id)
    flash(
        str(
            _l(
                "Done. The service can no longer fetch your data from Bürger-ID. If you log in "
                "there again, it will receive your data again."
            )
        ),
        "at:services",
    )
    return _to("/account#services")


@bp.post("/account/logout")
def logout() -> Any:
    end_session()
    if frontchannel_logouts():  # their iframes are on this answer's page, not after a redirect
        return logged_out_page()
    return _to("/account/logged-out")


@bp.get("/account/logged-out")
def logged_out() -> Any:
    return _page("account/logged_out.html")


# -- revocation codes ------------------------------------------------------------------------
@bp.get(REVOCATION_CODES_PAGE)
def confirm_replace_revocation_codes() -> Any:
    """Explains what replacing does; an older login is sent to log in again first."""
    browser_session, login = require_session(REVOCATION_CODES_PAGE)
    if login is not None:
        return login
    if not has_fresh_login(browser_session):
        return login_to_self(REVOCATION_CODES_PAGE)
    return _page(
        "account/revocation_codes.html",
        count=citizens.count_revocation_codes(browser_session.citizen_id),
        fresh_minutes=int(FRESH_LOGIN.total_seconds() // 60),
    )


@bp.post(REVOCATION_CODES_PAGE)
def replace_revocation_codes() -> Any:
    """Void all the citizen's revocation codes for one new code, shown in this answer only.

    The answer is the page itself, not a redirect: the code is never stored in plain text, not
    even in the (signed, readable) session cookie. A login that is not fresh changes nothing
    and goes back to the confirmation page, which asks for a new login.
    """
    browser_session, login = require_session(REVOCATION_CODES_PAGE)
    if login is not None:
        return login
    if not has_fresh_login(browser_session):
        return _to(REVOCATION_CODES_PAGE)
    code = citizens.replace_revocation_codes(browser_session.citizen_id)
    return _page("account/revocation_code_new.html", code=code)


# -- adding a device: the enrolled side -------------------------------------------------------
@bp.post("/account/pairings")
def start_pairing() -> Any:
    browser_session, login = require_session("/account")
    if login is not None:
        return login
    started = pairings.create_pairing(browser_session.citizen_id)
    return _to(f"/account/pairings/{started.id}")


@bp.get("/account/pairings/<pairing_id>")
def pairing_page(pairing_id: str) -> Any:
    browser_session, login = require_session(f"/account/pairings/{pairing_id[:64]}")
    if login is not None:
        return login
    found = pairings.for_citizen(pairing_id, browser_session.citizen_id)
    issuer = current_app.config["ISSUER"]
    return _page(
        "account/pairing.html",
        pairing=found,
        status=pairings.status(found),
        join_url=f"{issuer}/pair/{found.id}",
        valid_minutes=whole_minutes("PAIRING_TTL_SECONDS"),
    )


@bp.get("/account/pairings/<pairing_id>/status")
def pairing_status(pairing_id: str) -> Any:
    found = pairings.for_citizen(pairing_id, _json_session().citizen_id)
    return no_store(jsonify(pairings.status(found)))


@bp.post("/account/pairings/<pairing_id>/options")
def pairing_options(pairing_id: str) -> Any:
    found = pairings.for_citizen(pairing_id, _json_session().citizen_id)
    started = pairings.begin_approval(found, number=_json_body().get("number"))
    return no_store(jsonify(started))


@bp.post("/account/pairings/<pairing_id>/approve")
def pairing_approve(pairing_id: str) -> Any:
    found = pairings.for_citizen(pairing_id, _json_session().citizen_id)
    body = _json_body()
    approved = pairings.approve(
        found,
        number=body.get("number"),
        ceremony_id=body.get("ceremony_id"),
        credential=body.get("credential"),
    )
    return no_store(jsonify(pairings.status(approved)))


@bp.post("/account/pairings/<pairing_id>/cancel")
def pairing_cancel(pairing_id: str) -> Any:
    browser_session, login = require_session("/account")
    if login is not None:
        return login
    found = pairings.for_citizen(pairing_id, browser_session.citizen_id)
    pairings.cancel(found, reason="cancelled")
    flash(str(_l("Adding the device was cancelled.")), "success")
    return _to("/account")


# -- adding a device: the new device ----------------------------------------------------------
def _pair_cookie(pairing_id: str) -> tuple[str, str]:
    """Name and path of the new device's binding cookie: ``__Host-`` on Path=/ over https, so
    no sibling host can plant one (as ``crosslogin.views.phone_cookie``); plain-http demos get
    the unprefixed name kept to the pairing's pages by its path."""
    name = PAIR_COOKIE.format(pairing_id=pairing_id)
    if issuer_is_https():
        return "__Host-" + name, "/"
    return name, f"/pair/{pairing_id}"


def _binding(pairing_id: str) -> str | None:
    return request.cookies.get(_pair_cookie(pairing_id)[0])


@bp.get("/pair/<pairing_id>")
def join(pairing_id: str) -> Any:
    """What the new device opens: continue (claim), then the number, then register."""
    found = pairings.find_pairing(pairing_id)
    if pairings.holds_binding(found, _binding(pairing_id)):
        if found.state in (pairings.PairingState.CANCELLED, pairings.PairingState.EXPIRED):
            cancelled = found.state == pairings.PairingState.CANCELLED
            ended = PairingCancelled if cancelled else PairingExpired
            raise ended(_l("Adding this device was cancelled or has expired. Please start again."))
        return _page("account/join.html", pairing=found, step=found.state)
    pairings.check_claimable(found)
    return _page("account/join.html", pairing=found, step="claim")


@bp.post("/pair/<pairing_id>/claim")
def claim(pairing_id: str) -> Any:
    found, binding = pairings.claim(pairing_id, binding=_binding(pairing_id))
    response = _to(f"/pair/{found.id}")
    name, path = _pair_cookie(found.id)
    response.set_cookie(
        name,
        binding,
        max_age=current_app.config["PAIRING_TTL_SECONDS"] + 60,
        path=path,
        secure=issuer_is_https(),
        httponly=True,
        samesite="Strict",
    )
    return response


@bp.get("/pair/<pairing_id>/status")
def join_status(pairing_id: str) -> Any:
    found = pairings.for_device(pairing_id, _binding(pairing_id))
    return no_store(jsonify(pairings.status(found)))


@bp.post("/pair/<pairing_id>/enrolment/options")
def join_options(pairing_id: str) -> Any:
    found = pairings.for_device(pairing_id, _binding(pairing_id))
    return no_store(jsonify(pairings.begin_device_enrolment(found)))


@bp.post("/pair/<pairing_id>/enrolment")
def join_finish(pairing_id: str) -> Any:
    found = pairings.for_device(pairing_id, _binding(pairing_id))
    body = _json_body()
    enrolment = pairings.finish_device_enrolment(
        found,
        enrolment_id=body.get("enrolment_id"),
        credential=body.get("credential"),
        name=body.get("name"),
    )
    return enrolment_response(enrolment)


# -- lost phone -------------------------------------------------------------------------------
@bp.get("/lost")
def lost() -> Any:
    return _page("account/lost.html")


@bp.post("/lost")
def lost_submit() -> Any:
    """Wrong, unknown and used codes get the same answer (``devices.revoke_devices_with_code``)."""
    # Every try counts, right or wrong, per address; the limit is the activation one.
    limits.consume("RATE_LIMIT_ACTIVATION", client_address(), scope="revocation")
    citizen_id = devices.revoke_devices_with_code(request.form.get("code"))
    if citizen_id is None:
        flash(
            str(
                _l(
                    "This code did not work. Please check it and try again. If you have used it "
                    "before, your devices are already blocked."
                )
            ),
            "error",
        )
        return _to("/lost")
    session[LOST_DONE_KEY] = True
    return _to("/lost/done")


@bp.get("/lost/done")
def lost_done() -> Any:
    if not session.pop(LOST_DONE_KEY, False):
        return _to("/lost")
    return _page("account/lost_done.html")
