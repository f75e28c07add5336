"""The desktop's login page and the phone's confirmation page.

The login never speaks OAuth or SAML (as in ory/hydra, whose login UI hands back to the
authorize handler): ``oidc`` or ``saml`` starts it with ``start_login`` and what to show about
the requester; once the login has ended, the computer's "continue" hands it back to the
requester's second leg, which answers the relying party. Those legs are plugged in by
``create_app`` (``init_app(app, resume={"oidc": …, "saml": …})``, by ``Requester.protocol``),
the way Authlib's server takes hooks: continue answers in the same request, so the relying
party sees one redirect (or one form post), as before the split.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import Row
from sqlalchemy.exc import DBAPIError

from .. import limits
from ..config import issuer_is_https
from ..db import db
from ..db import utcnow
from ..errors import LoginRejected
from ..errors import NotFound
from ..errors import is_transient
from ..errors import wants_json
from ..sessions import current_session
from ..web import CSP
from ..web import client_address
from ..web import use_language
from . import events
from . import qr
from . import service
from .errors import LoginEnded
from .errors import LoginNotFound
from .models import Login
from .models import Requester

log = logging.getLogger(__name__)

bp = Blueprint("crosslogin", __name__)

PHONE_COOKIE = "phone-{login_id}"
RESUME = "idserver.crosslogin.resume"
CLAIM_LABELS = {
    "sub": _l("a pseudonym that only this service knows you by"),
    "name": _l("your name"),
    "given_name": _l("your first name"),
    "family_name": _l("your family name"),
    "email": _l("your e-mail address"),
    "email_verified": None,
    "address": _l("your registered address"),
    "birthdate": _l("your date of birth"),
    "verified_claims": _l(
        "how your identity was checked at the citizens' office (document type, day, office)"
    ),
}


LOGIN_COOKIE = "login-{login_id}"
RENEW_GRACE_SECONDS = 15 * 60
# The login ``continue`` has just read, handed to the second leg it calls in the same request.
HANDED_OVER = "idserver.crosslogin.handed_over"


def init_app(app: Flask, *, resume: Mapping[str, Callable[[str], Any]]) -> None:
    """``resume[protocol](login_id)``: the requester's answer once a login has ended (its second
    leg), by the protocol that started it (``Requester.protocol``: ``oidc``, ``saml``)."""
    app.extensions[RESUME] = dict(resume)

    @app.teardown_request
    def _forget_reads(_exc: BaseException | None) -> None:
        # What a request read is good for that request only (tests may share an app context).
        g.pop(HANDED_OVER, None)
        service.forget_devices()


def login_cookie_name(login_id: str) -> str:
    """``__Host-`` cookies need https; plain localhost demos get the unprefixed name."""
    prefix = "__Host-" if issuer_is_https() else ""
    return prefix + LOGIN_COOKIE.format(login_id=login_id)


def phone_cookie(login_id: str) -> tuple[str, str]:
    """Name and path of the phone browser's binding cookie for ``login_id``.

    Over https it is ``__Host-phone-{id}`` on Path=/: the prefix forbids a Domain attribute, so
    no sibling host, http or https (a relying party under the same city domain), can plant one
    (RFC 6265bis §4.1.3.2); the login id in the name keeps it to its login. ``__Secure-`` with
    Path=/q/{id} would still let an https sibling plant it. Plain-http demos cannot use a
    prefix; their cookie is kept to the phone page by its path.
    """
    name = PHONE_COOKIE.format(login_id=login_id)
    if issuer_is_https():
        return "__Host-" + name, "/"
    return name, f"/q/{login_id}"


def start_login(*, client_id: str, params: dict[str, str], scope: str, requester: Requester) -> Any:
    """Start a login transaction for this browser and send it to the QR page.

    For a request that ``oidc`` has validated; ``params`` are kept for its second leg.
    """
    # End the request's reads first: the counter takes a connection of its own, and a request
    # holding one while it waits for another could drain the pool under a flood.
    db.session.commit()
    limits.consume("RATE_LIMIT_LOGIN", client_address(), scope="login")
    tx, browser_secret = service.create_transaction(
        client_id=client_id,
        params=params,
        scope=scope,
        requester=requester,
        desktop_ip=client_address(),
        user_agent=request.headers.get("User-Agent", ""),
    )
    response = redirect(f"{current_app.config['ISSUER']}/login/{tx.id}", code=303)
    response.set_cookie(
        login_cookie_name(tx.id),
        browser_secret,
        # Outlives the login, so its ended page can still offer a new code (``renew``).
        max_age=current_app.config["LOGIN_TTL_SECONDS"] + RENEW_GRACE_SECONDS,
        path="/",
        secure=issuer_is_https(),
        httponly=True,
        samesite="Lax",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def browser_login(login_id: str) -> Login:
    """The login ``login_id``, only for the browser that started it (else ``LoginNotFound``);
    its pages speak the language the requester asked for (the phone chooses its own)."""
    handed: Login | None = g.pop(HANDED_OVER, None)
    if handed is not None and handed.id == login_id:
        tx = handed  # read by ``continue`` a moment ago in this request, for this browser
    else:
        tx = service.for_browser(login_id, request.cookies.get(login_cookie_name(login_id)))
    use_language(tx.requesting.language)
    return tx


def forget_browser(response: Any, login_id: str) -> Any:
    """Drop the browser's login cookie: the login has answered (its back button finds the
    session instead, ``_logged_in_by``)."""
    response.delete_cookie(login_cookie_name(login_id), path="/")
    return response


def _logged_in_by(login_id: str) -> Login | None:
    """The login that started this browser's live session, if it is ``login_id``.

    A successful login drops its browser cookie; the back button then finds the session.
    """
    record = current_session()
    if record is None or record.login_id != login_id:
        return None
    return service.read_login(login_id)


def _status(tx: Login | Row[Any]) -> dict[str, Any]:
    """The desktop's view of its login (from the row or from ``STATUS_COLUMNS``)."""
    issuer = current_app.config["ISSUER"]
    key = qr.login_key(current_app.config["SECRET_KEY"], tx.id)
    step = qr.current_step(current_app.config["QR_STEP_SECONDS"])
    body: dict[str, Any] = {
        "login_id": tx.id,
        "phone_url": qr.frame_url(issuer, tx.id, key, step),
        "number": tx.number,
        "status": tx.state,
        "version": tx.version,
        "expires_at": int(tx.expires_at.timestamp()),
    }
    if tx.state in ("approved", "denied", "expired"):
        body["continue_url"] = f"{issuer}/login/{tx.id}/continue"
    if tx.state == "denied":
        body["reason"] = tx.deny_reason
    return body


@bp.get("/login/<login_id>")
def desktop(login_id: str) -> Any:
    """The QR page; with ``Accept: application/json`` its status (``?seen=N`` waits for news)."""
    try:
        tx = browser_login(login_id)
    except NotFound:
        done = None if wants_json() else _logged_in_by(login_id)
        if done is None:
            raise
        return _already_logged_in_page(done)
    if wants_json():
        seen = request.args.get("seen", type=int)
        if seen == tx.version and tx.state in ("pending", "scanned"):
            return Response(
                stream_with_context(_status_after_change(tx, seen)),
                mimetype="application/json",
                headers={"Cache-Control": "no-store"},
            )
        response = jsonify(_status(tx))
        response.headers["Cache-Control"] = "no-store"
        return response
    if tx.state == "consumed":
        if _logged_in_by(tx.id) is not None:
            return _already_logged_in_page(tx)
        return _ended_page(tx, reason=_l("This login has already ended."))
    key = base64.urlsafe_b64encode(service.qr_key(tx)).rstrip(b"=").decode()
    page = render_template(
        "login/desktop.html",
        tx=tx,
        status=_status(tx),
        qr_key=key,
        step_seconds=current_app.config["QR_STEP_SECONDS"],
        server_time=int(time.time()),
        client_name=service.display_context(tx)["client_name"],
        on_phone=on_phone(request.headers.get("User-Agent", "")),
        ended_reason=_ended_message(tx) if tx.state in ("denied", "expired") else "",
    )
    # The cancel form's redirects end at the relying party: form-action must allow its origin.
    csp = CSP.format(form_targets=tx.requesting.form_origin)
    return Response(page, headers={"Cache-Control": "no-store", "Content-Security-Policy": csp})


# "Mobi" is what phone browsers put in their User-Agent (MDN, "Browser detection using the user
# agent"); Android tablets and iPads cannot scan their own screen either.
PHONE_USER_AGENT = re.compile(r"Mobi|Android|iPhone|iPad|iPod")


def on_phone(user_agent: str) -> bool:
    """Whether the login page is open on a phone or tablet: it offers logging in with this
    device first, since a phone cannot scan the QR code on its own screen (issue 14.4)."""
    return PHONE_USER_AGENT.search(user_agent[:500]) is not None


def _status_after_change(tx: Login, seen: int) -> Iterator[bytes]:
    """The long poll: the status once the login has changed, ended or the hold is over.

    The request is held until then (up to ``LONG_POLL_SECONDS``, never past the login's
    expiry), so a waiting desktop asks again only after news. While it waits, a blank goes out
    every ``LONG_POLL_KEEPALIVE_SECONDS`` (leading whitespace is valid JSON), so proxies keep
    the request open. Each read is one narrow query (``service.read_status``).
    """
    config = current_app.config
    timeout = min(
        config["LONG_POLL_SECONDS"], max(0.0, tx.expires_at.timestamp() - time.time()) + 0.5
    )
    db.session.close()  # a waiting desktop holds no database connection
    latest: Any = tx

    def read_version() -> int:
        nonlocal latest
        try:
            row = service.read_status(tx.id)
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            # The answer has begun (200), so no 503 now: wait on as if nothing changed; the
            # desktop asks again when the hold ends and meets the 503 then, if it lasts.
            log.info("long poll of login %s could not read its status: %s", tx.id, exc.orig)
            return seen
        if row is None:
            return -1
        latest = row
        return int(row.version)

    for version in events.watch_for_change(
        tx.id,
        read_version,
        seen=seen,
        timeout=timeout,
        heartbeat_seconds=config["LONG_POLL_KEEPALIVE_SECONDS"],
    ):
        if version is None:
            yield b" "
        elif version == -1:
            gone = LoginNotFound()
            yield current_app.json.dumps(
                {"error": gone.error, "error_description": str(gone.description)}
            ).encode()
            return
    if latest.state in ("pending", "scanned") and latest.expires_at <= utcnow():
        latest = browser_login(tx.id)  # ends it as expired
    yield current_app.json.dumps(_status(latest)).encode() + b"\n"


@bp.get("/login/<login_id>/continue")
def continue_login(login_id: str) -> Any:
    """Where the computer goes once the login has ended (or the back button brings it).

    An approved login, and one that ended unapproved while a relying party waits to be told,
    go back to the requester (``init_app``'s ``resume``), which consumes it and answers; the
    rest is said here.
    """
    try:
        tx = browser_login(login_id)
    except NotFound:
        done = _logged_in_by(login_id)
        if done is None:
            raise
        return _already_logged_in_page(done)
    issuer = current_app.config["ISSUER"]
    if tx.state == "approved" or (tx.state in ENDED and tx.requesting.answers_endings):
        # Nothing is written between this read and the second leg's: it need not read again.
        setattr(g, HANDED_OVER, tx)
        return current_app.extensions[RESUME][tx.requesting.protocol](tx.id)
    if tx.state in ENDED:
        # Logging in to Bürger-ID itself: there is no relying party to tell.
        service.consume_denied(tx)
        return _ended_page(tx, reason=_ended_message(tx))
    if tx.state in ("pending", "scanned"):
        return redirect(f"{issuer}/login/{tx.id}", code=303)
    if tx.approved_at is not None:
        if _logged_in_by(tx.id) is not None:
            return _already_logged_in_page(tx)
        # Approved and consumed, but no session came of it (the worker died between the two):
        # nothing usable is left, and the citizen starts again.
        raise LoginEnded()
    # Consumed: the answer went back already: offer a new code.
    return _ended_page(tx, reason=_l("This login has already ended."))


ENDED = ("denied", "expired")  # ended without approval, not yet answered


def _ended_message(tx: Login) -> Any:
    """What the person at the computer is told about a login that ended without approval."""
    if tx.state == "expired":
        return _l("The time for this login has run out. Please start again.")
    if tx.deny_reason == "wrong_number":
        return _l(
            "A wrong number was typed on the phone, so the login was cancelled. Please start again."
        )
    if tx.deny_reason == service.OTHER_NETWORK:
        return _l(
            "The phone that scanned the code is in a different network than this computer, and "
            "%(name)s only allows logins when both are in the same network. The login was "
            "cancelled. If it was your phone, connect it to the same Wi-Fi as this computer and "
            "start again.",
            name=_client_name(tx),
        )
    if tx.deny_reason == "cancelled":
        return _l("The login was cancelled on this computer.")
    if tx.deny_reason == service.OTHER_ACCOUNT:
        return _l(
            "The login was confirmed with a different person's Bürger-ID than %(name)s asked "
            "for, so it was cancelled and nobody was logged in. Please start again.",
            name=_client_name(tx),
        )
    if tx.deny_reason == "level_too_low":
        return _l(
            "The login does not reach the level of assurance %(name)s needs, so it was "
            "cancelled. %(name)s can tell you what it needs, for example an identity check in "
            "person at the citizens' office.",
            name=_client_name(tx),
        )
    return _l("The login was cancelled on the phone.")


def _client_name(tx: Login) -> str:
    return tx.requesting.name


def _ended_page(tx: Login, *, reason: Any) -> Any:
    """A login that has ended: why, a fresh code for the same request, and the way back."""
    page = render_template(
        "login/ended.html",
        tx=tx,
        reason=reason,
        client_name=_client_name(tx),
        back_url=_relying_party_site(tx),
    )
    return Response(page, status=400, headers={"Cache-Control": "no-store"})


def _already_logged_in_page(tx: Login) -> Any:
    """The back button after a successful login: no error, a link onward."""
    page = render_template(
        "login/already.html", client_name=_client_name(tx), onward_url=_relying_party_site(tx)
    )
    return Response(page, headers={"Cache-Control": "no-store"})


def _relying_party_site(tx: Login) -> str:
    """Where "back" leads without an answer: the requester's site, else our start page."""
    return tx.requesting.site_url or f"{current_app.config['ISSUER']}/"


@bp.post("/login/<login_id>/cancel")
def cancel(login_id: str) -> Any:
    """The person at the computer gives up: the login ends and the application is told."""
    tx = browser_login(login_id)
    if tx.state in ("pending", "scanned"):
        with contextlib.suppress(LoginRejected):  # the phone ended it a moment earlier
            service.cancel_on_desktop(tx)
    # Already ended (expired, denied, used): continue has the application told, or says so.
    return redirect(f"{current_app.config['ISSUER']}/login/{tx.id}/continue", code=303)


@bp.post("/login/<login_id>/renew")
def renew(login_id: str) -> Any:
    """ "Show a new code": a fresh login for the same authorization request, this browser only.

    The old login must have ended without approval; the new one is counted like any other
    (``RATE_LIMIT_LOGIN``) and gets its own browser cookie.
    """
    tx = browser_login(login_id)
    if tx.state in ("pending", "scanned", "approved"):
        return redirect(f"{current_app.config['ISSUER']}/login/{tx.id}", code=303)
    if tx.approved_at is not None and _logged_in_by(tx.id) is not None:
        return _already_logged_in_page(tx)
    response = start_login(
        client_id=tx.client_id,
        params=dict(tx.request_params),
        scope=tx.scope,
        requester=tx.requesting,
    )
    # The old login can no longer answer the application: the new one will.
    service.consume_denied(tx)
    return response


@bp.post("/login/<login_id>/passkey/options")
def passkey_options(login_id: str) -> Response:
    tx = browser_login(login_id)
    return jsonify(service.begin_desktop_passkey(tx))


@bp.post("/login/<login_id>/passkey")
def passkey_finish(login_id: str) -> Response:
    tx = browser_login(login_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise LoginRejected(_l("The answer from the browser was malformed."))
    service.approve_on_desktop(
        tx, ceremony_id=body.get("ceremony_id"), credential=body.get("credential")
    )
    return jsonify(
        status="approved", continue_url=f"{current_app.config['ISSUER']}/login/{tx.id}/continue"
    )


def _opened_by_the_starting_browser(login_id: str) -> bool:
    """Whether this request carries the login cookie of the browser that started ``login_id``."""
    if not request.cookies.get(login_cookie_name(login_id)):
        return False
    try:
        browser_login(login_id)
    except NotFound:
        return False
    return True


@bp.get("/q/<login_id>")
def phone(login_id: str) -> Any:
    """What the phone opens from the QR code: who asks, what they get, type the number."""
    if request.args.get("here") != "1" and _opened_by_the_starting_browser(login_id):
        # The "Can't scan the code?" link, opened on the computer itself: binding the login to
        # this browser would lock out the real phone. Explain, change nothing — once the frame
        # is known to be good, so a forged, stale or ended one still gets its own answer.
        tx = service.check_frame(login_id, t=request.args.get("t"), h=request.args.get("h"))
        page = render_template(
            "login/phone_on_computer.html",
            tx=tx,
            client_name=_client_name(tx),
            here_url=url_for(
                "crosslogin.phone",
                login_id=login_id,
                t=request.args.get("t"),
                h=request.args.get("h"),
                here="1",
            ),
        )
        return Response(page, headers={"Cache-Control": "no-store"})
    cookie, cookie_path = phone_cookie(login_id)
    tx, binding = service.mark_scanned(
        login_id,
        t=request.args.get("t"),
        h=request.args.get("h"),
        binding=request.cookies.get(cookie),
        phone_ip=client_address(),
    )
    context = service.display_context(tx)
    essential = set(context.get("essential_claims") or ())
    labels = [
        (str(CLAIM_LABELS[c]), c in essential) for c in context["claims"] if CLAIM_LABELS.get(c)
    ]
    page = render_template(
        "login/phone.html", tx=tx, context=context, claim_labels=labels, binding=binding
    )
    response = Response(page, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        cookie,
        binding,
        max_age=current_app.config["LOGIN_TTL_SECONDS"],
        path=cookie_path,
        secure=issuer_is_https(),
        httponly=True,
        samesite="Strict",
    )
    return response
