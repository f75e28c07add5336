"""Hundesteuer-Anmeldung: a form prefilled from the SAML attributes, and the dogs registered."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_babel import gettext as _
from sqlalchemy import select

from ..db import db
from ..web import current_resident
from ..web import login_required
from .models import Registration

bp = Blueprint("dogtax", __name__)

NAME_MAX = 60


def _owner_fields() -> dict[str, str]:
    resident = current_resident()
    claims = resident.claims if resident else {}
    return {
        name: str(claims.get(name) or "")
        for name in ("given_name", "family_name", "birthdate", "street", "postcode", "city")
    }


def _registrations() -> list[Registration]:
    resident = current_resident()
    if resident is None:
        return []
    query = select(Registration).where(Registration.owner_sub == resident.sub)
    return list(db.session.scalars(query.order_by(Registration.registered_at)))


def _page(status: int = 200, **form: Any) -> tuple[str, int]:
    return render_template(
        "dogtax/index.html",
        owner=_owner_fields(),
        registrations=_registrations(),
        today=dt.date.today().isoformat(),
        form=form,
    ), status


@bp.get("/")
def index() -> Any:
    return _page()


@bp.post("/register")
@login_required
def register() -> Any:
    resident = current_resident()
    assert resident is not None
    dog_name = request.form.get("dog_name", "").strip()
    breed = request.form.get("breed", "").strip()
    since_text = request.form.get("kept_since", "").strip()
    errors: dict[str, str] = {}
    if not dog_name or len(dog_name) > NAME_MAX or not dog_name.isprintable():
        errors["dog_name"] = _(
            "Please enter the dog's name (at most %(max)d characters).", max=NAME_MAX
        )
    if not breed or len(breed) > NAME_MAX or not breed.isprintable():
        errors["breed"] = _("Please enter the breed (at most %(max)d characters).", max=NAME_MAX)
    try:
        kept_since = dt.date.fromisoformat(since_text)
        if kept_since > dt.date.today() or kept_since.year < 1990:
            raise ValueError(since_text)
    except ValueError:
        errors["kept_since"] = _("Please enter the date since when you keep the dog.")
    if errors:
        return _page(
            422,
            dog_name=dog_name[:NAME_MAX],
            breed=breed[:NAME_MAX],
            kept_since=since_text[:10],
            errors=errors,
        )
    owner = _owner_fields()
    birthdate = None
    if owner["birthdate"]:
        try:
            birthdate = dt.date.fromisoformat(owner["birthdate"])
        except ValueError:
            birthdate = None
    db.session.add(
        Registration(
            owner_sub=resident.sub,
            owner_name=f"{owner['given_name']} {owner['family_name']}".strip(),
            owner_birthdate=birthdate,
            owner_address=f"{owner['street']}, {owner['postcode']} {owner['city']}",
            dog_name=dog_name,
            breed=breed,
            kept_since=kept_since,
        )
    )
    db.session.commit()
    flash(_("Thank you! %(dog)s is registered for the dog tax.", dog=dog_name), "success")
    return redirect(url_for("dogtax.index"), 303)
