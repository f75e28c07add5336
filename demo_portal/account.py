"""Signing in with Bürger-ID, signing out everywhere, and what the portal was told about you."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from . import oidc
from .errors import LoginFailed
from .web import clear_session
from .web import current_resident
from .web import external_url
from .web import local_path
from .web import login_required
from .web import sign_in
from .web import sign_out

bp = Blueprint("account", __name__)

# The claims about the person (OIDC Core §5.1), in this order, with readable names.
PERSONAL_CLAIMS = {
    "name": _l("Name"),
    "given_name": _l("Given name"),
    "family_name": _l("Family name"),
    "email": _l("E-mail address"),
    "email_verified": _l("E-mail address confirmed"),
    "birthdate": _l("Date of birth"),
    "address": _l("Address"),
}
NEXT_KEY = "next"
LOGOUT_STATE_KEY = "logout_state"


@bp.get("/login")
def login() -> Any:
    """Off to Bürger-ID; ``next`` is where to return afterwards (a path on this portal)."""
    session[NEXT_KEY] = local_path(request.args.get("next"))
    return oidc.begin_login(external_url("account.callback"))


@bp.get("/callback")
def callback() -> Any:
    """The authorization response: checked, code redeemed, resident signed in."""
    target = local_path(session.get(NEXT_KEY))
    try:
        claims, id_token = oidc.finish_login()
    except LoginFailed:
        # A failed login leaves nobody signed in and nothing from before on the page (no
        # "signed in" notice beside "login failed"). The cookie is emptied; a server-side
        # session row of an earlier sign-in simply runs out (sessions.MAX_AGE).
        clear_session()
        raise
    sign_in(claims, id_token)
    flash(_("You are signed in with Bürger-ID."), "success")
    return redirect(target, 303)


@bp.post("/logout")
def logout() -> Any:
    """End the session here, then at Bürger-ID (OpenID Connect RP-Initiated Logout 1.0)."""
    resident = current_resident()
    sign_out()
    if resident is None:
        return redirect(external_url("account.logged_out"), 303)
    state = secrets.token_urlsafe(16)
    url = oidc.logout_url(
        id_token=resident.id_token,
        post_logout_redirect_uri=external_url("account.logged_out"),
        state=state,
    )
    if url is None:
        current_app.logger.warning("Bürger-ID unreachable; signed out of this portal only")
        return redirect(external_url("account.logged_out"), 303)
    session[LOGOUT_STATE_KEY] = state
    return redirect(url, 303)


@bp.get("/logged-out")
def logged_out() -> str:
    """Where Bürger-ID sends the browser back; ``state`` shows it came from our logout."""
    expected = session.pop(LOGOUT_STATE_KEY, None)
    confirmed = bool(expected) and request.args.get("state") == expected
    return render_template("account/logged_out.html", confirmed=confirmed)


@bp.get("/about")
@login_required
def about() -> str:
    """The pairwise ``sub`` and every claim this portal received."""
    resident = current_resident()
    assert resident is not None
    personal = [
        (name, label, resident.claims[name])
        for name, label in PERSONAL_CLAIMS.items()
        if name in resident.claims
    ]
    protocol = {k: v for k, v in resident.claims.items() if k not in PERSONAL_CLAIMS and k != "sub"}
    return render_template(
        "account/about.html",
        sub=resident.sub,
        personal=personal,
        protocol=protocol,
        client_id=current_app.config["CLIENT_ID"],
    )
