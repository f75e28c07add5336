"""Bewohnerparkausweis: apply, see and cancel your permit; a public check for wardens."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import segno
from flask import Blueprint
from flask import Response
from flask import abort
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_babel import gettext as _

from ..web import current_resident
from ..web import external_url
from ..web import login_required
from . import service
from .models import Permit
from .tokens import public_jwks
from .zones import load_zones

bp = Blueprint("parking", __name__)
MAX_FIELD = 128


def _own_permit(permit_id: str) -> Permit:
    resident = current_resident()
    assert resident is not None
    permit = service.find_permit(permit_id, holder_sub=resident.sub)
    if permit is None:
        abort(404)
    return permit


def _index(status: int = 200, **form: Any) -> tuple[str, int]:
    resident = current_resident()
    context: dict[str, Any] = {"zones": load_zones().zones, "today": dt.date.today()}
    if resident is not None:
        permits = service.list_permits(resident.sub)
        context.update(
            zone=service.eligible_zone(resident.claims),
            address=resident.claims.get("address") or {},
            permits=permits,
            current=next((p for p in permits if p.status(context["today"]) == "valid"), None),
        )
    return render_template("parking/index.html", **context, **form), status


@bp.get("/")
def index() -> Any:
    return _index()


@bp.post("/permits")
@login_required
def apply() -> Any:
    resident = current_resident()
    assert resident is not None
    plate = request.form.get("plate", "")
    try:
        permit = service.issue_permit(holder_sub=resident.sub, claims=resident.claims, plate=plate)
    except service.InvalidPlate as exc:
        return _index(exc.status, plate=plate[:32], plate_error=exc.message)
    flash(_("Your permit %(number)s has been issued.", number=permit.number), "success")
    return redirect(url_for("parking.permit", permit_id=permit.id), 303)


def _check_url(permit: Permit) -> str:
    """What the QR code holds: the check page and the short signed reference, no token."""
    return external_url("parking.check", ref=service.permit_reference(permit))


@bp.get("/permits/<permit_id>")
@login_required
def permit(permit_id: str) -> Any:
    permit = _own_permit(permit_id)
    status = permit.status(dt.date.today())
    token = service.permit_token(permit) if status == "valid" else None
    reference = service.permit_reference(permit) if status == "valid" else None
    return render_template(
        "parking/permit.html", permit=permit, status=status, token=token, reference=reference
    )


@bp.get("/permits/<permit_id>/qr.svg")
@login_required
def permit_qr(permit_id: str) -> Response:
    """The QR code for the windscreen: a link to /check carrying the short signed reference."""
    permit = _own_permit(permit_id)
    if permit.status(dt.date.today()) != "valid":
        abort(404)
    buffer = io.BytesIO()
    segno.make(_check_url(permit), error="m").save(
        buffer, kind="svg", scale=4, border=2, xmldecl=False, title=permit.number
    )
    response = Response(buffer.getvalue(), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/permits/<permit_id>/cancel")
@login_required
def cancel(permit_id: str) -> Any:
    permit = _own_permit(permit_id)
    if service.cancel_permit(permit.id, holder_sub=permit.holder_sub):
        flash(_("Permit %(number)s has been cancelled.", number=permit.number), "success")
    else:
        flash(_("This permit was no longer active."), "info")
    return redirect(url_for("parking.permit", permit_id=permit.id), 303)


@bp.get("/check")
def check() -> str:
    """A scanned QR code (``ref``), a typed permit number (``number``) or a signed token."""
    reference = request.args.get("ref", "").strip()[:MAX_FIELD]
    number = request.args.get("number", "").strip()[:MAX_FIELD]
    token = request.args.get("token", "").strip()
    result = None
    if reference:
        result = service.check_permit_reference(reference)
    elif number:
        result = service.check_permit_number(number)
    elif token:
        result = service.check_permit_token(token)
    return render_template("parking/check.html", token=token, number=number, result=result)


@bp.get("/jwks.json")
def jwks() -> Response:
    """The public key wardens' devices use to verify permit tokens offline."""
    response = jsonify(public_jwks(service.signing_key()))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
