"""Bewerberportal: open positions; applicants submit, follow and withdraw applications."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_babel import gettext as _

from ..web import current_resident
from ..web import login_required
from . import service
from .models import Application

bp = Blueprint("jobs", __name__)


@bp.get("/")
def index() -> str:
    resident = current_resident()
    applications = service.list_applications(resident.sub) if resident else []
    return render_template(
        "jobs/index.html",
        positions=service.open_positions(),
        applications=applications,
        titles={p.id: p.title for p in service.load_positions()},
    )


def _position_page(position_id: str, status: int = 200, **form: Any) -> tuple[str, int]:
    position = service.find_position(position_id)
    if position is None or not position.open:
        abort(404)
    resident = current_resident()
    existing = service.open_application(resident.sub, position.id) if resident else None
    return render_template(
        "jobs/position.html",
        position=position,
        existing=existing,
        minimum=service.COVER_LETTER_MIN,
        maximum=service.COVER_LETTER_MAX,
        **form,
    ), status


@bp.get("/positions/<position_id>")
def position(position_id: str) -> Any:
    return _position_page(position_id)


@bp.post("/positions/<position_id>/apply")
@login_required
def apply(position_id: str) -> Any:
    resident = current_resident()
    assert resident is not None
    letter = request.form.get("cover_letter", "")
    try:
        application = service.submit_application(
            applicant_sub=resident.sub,
            claims=resident.claims,
            position_id=position_id,
            cover_letter=letter,
        )
    except service.InvalidApplication as exc:
        return _position_page(
            position_id,
            exc.status,
            cover_letter=letter[: service.COVER_LETTER_MAX + 100],
            letter_error=exc.message,
        )
    flash(_("Thank you! Your application has been received."), "success")
    return redirect(url_for("jobs.application", application_id=application.id), 303)


def _own_application(application_id: str) -> Application:
    resident = current_resident()
    assert resident is not None
    application = service.find_application(application_id, applicant_sub=resident.sub)
    if application is None:
        abort(404)
    return application


@bp.get("/applications/<application_id>")
@login_required
def application(application_id: str) -> str:
    application = _own_application(application_id)
    return render_template(
        "jobs/application.html",
        application=application,
        position=service.find_position(application.position_id),
    )


@bp.post("/applications/<application_id>/withdraw")
@login_required
def withdraw(application_id: str) -> Any:
    application = _own_application(application_id)
    if service.withdraw_application(application.id, applicant_sub=application.applicant_sub):
        flash(_("Your application has been withdrawn."), "success")
    else:
        flash(_("This application had already been withdrawn."), "info")
    return redirect(url_for("jobs.application", application_id=application.id), 303)
