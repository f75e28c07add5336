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

from . import oidc
from .web import current_resident
from .web import external_url
from .web import local_path
from .web import login_required
from .web import sign_in
from .web import sign_out

bp = Blueprint("account", __name__)

PERSONAL_CLAIMS = (
    "name",
    "given_name",
    "family_name",
    "email",
    "email_verified",
    "birthdate",
    "address",
)
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
    claims, id_token = oidc.finish_login()
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
    personal = {k: resident.claims[k] for k in PERSONAL_CLAIMS if k in resident.claims}
    protocol = {k: v for k, v in resident.claims.items() if k not in PERSONAL_CLAIMS and k != "sub"}
    return render_template(
        "account/about.html",
        sub=resident.sub,
        personal=personal,
        protocol=protocol,
        client_id=current_app.config["CLIENT_ID"],
    )
