"""The clerk console at ``/admin``: residents, activation letters, devices, the audit log, and
for administrators the relying parties (``/admin/clients``).

Every request needs a Bürger-ID session (a QR/passkey login to Bürger-ID itself) whose citizen
is an enabled clerk. Anonymous browsers are sent through that login first; anyone else gets a
403 page. Forms post with the session's CSRF token (``idserver.csrf``) and answer 303.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import limits
from ..account.views import require_session
from ..audit import verify_chain
from ..audit import verify_since_checkpoint
from ..audit.service import EVENTS
from ..citizens.models import PROOFING_DOCUMENTS
from ..citizens.service import CITIZEN_FIELDS
from ..citizens.service import POSTCODE
from ..citizens.service import activation_url
from ..clerks import active_clerk
from ..clerks import may
from ..errors import IdServerError
from ..oidc import clients as registry
from ..sessions import current_session
from ..web import SUPPORTED_LANGUAGES
from . import service
from .events import EVENT_LABELS
from .events import describe_actor
from .events import describe_event
from .letter import LETTER_LANGUAGE
from .letter import Sender
from .letter import activation_letter_pdf

bp = Blueprint("admin", __name__)

HOME = "/admin"
REQUIRED_FIELDS = ("given_name", "family_name", "birthdate", "street", "postcode", "city")
FIELD_LIMITS = {"postcode": 20, "email": 320}
LANGUAGE_NAMES = {"de": "Deutsch", "en": "English"}
# The identity documents the form offers (``citizens.models.PROOFING_DOCUMENTS``).
DOCUMENT_NAMES = {
    "id_card": _l("Identity card"),
    "passport": _l("Passport"),
    "residence_permit": _l("Residence permit"),
}


class NotAClerk(IdServerError):
    status = 403
    error = "not_a_clerk"
    description = _l("This page is only for staff of the citizens' office.")


class NotAllowed(IdServerError):
    status = 403
    error = "not_allowed"
    description = _l("Your role does not allow this. Please ask a supervisor.")


def _home() -> str:
    return current_app.config["ISSUER"] + HOME


@bp.before_request
def _require_clerk() -> Any:
    """Log anonymous browsers in (GET) or send them to the console's start (other methods)."""
    if request.method != "GET" and current_session() is None:
        return redirect(_home(), code=303)
    session, login = require_session(request.path)
    if login is not None:
        return login
    clerk = active_clerk(session.citizen_id)
    if clerk is None:
        raise NotAClerk()
    g.clerk = clerk
    return None


@bp.context_processor
def _console() -> dict[str, Any]:
    return {
        "clerk": g.get("clerk"),
        "municipality": current_app.config["MUNICIPALITY_NAME"],
        "may": lambda action: g.get("clerk") is not None and may(g.clerk, action),
    }


def _allow(action: str) -> None:
    if not may(g.clerk, action):
        raise NotAllowed()


DATE_FORMS = (  # ISO (what ``<input type=date>`` sends) and the German ``TT.MM.JJJJ``
    re.compile(r"(?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})"),
    re.compile(r"(?P<day>[0-9]{1,2})\.(?P<month>[0-9]{1,2})\.(?P<year>[0-9]{4})"),
)


class DateRefused(ValueError):
    """No date: not written as one, or written as one the calendar lacks (31.02.1980)."""


def _read_date(value: str) -> dt.date:
    """The date written in ``value``; ``DateRefused`` says to the clerk why there is none."""
    for form in DATE_FORMS:
        if match := form.fullmatch(value.strip()):
            try:
                return dt.date(int(match["year"]), int(match["month"]), int(match["day"]))
            except ValueError:
                raise DateRefused(
                    _("This date does not exist. Please check the day and month.")
                ) from None
    raise DateRefused(_("Please enter the date of birth as DD.MM.YYYY."))


# -- residents ----------------------------------------------------------------------------
@bp.get(HOME)
def residents() -> Any:
    """Search residents by name, postcode and birthdate."""
    if not may(g.clerk, "search") and may(g.clerk, "manage_clients"):
        return redirect(f"{_home()}/clients", code=303)  # an administrator's start page
    _allow("search")
    args = request.args
    name = args.get("name", "").strip()[:200]
    postcode = args.get("postcode", "").strip()[:20]
    raw_birthdate = args.get("birthdate", "").strip()[:20]
    birthdate, errors = None, {}
    if raw_birthdate:
        try:
            birthdate = _read_date(raw_birthdate)
        except DateRefused as refused:
            errors["birthdate"] = str(refused)
    query = service.ResidentQuery(name=name, postcode=postcode, birthdate=birthdate)
    page = None
    if not query.empty and not errors:
        # Per clerk, against enumerating residents (OWASP ASVS 5.0 V2.4.1); a refusal is a 429.
        limits.consume("RATE_LIMIT_CLERK_SEARCH", g.clerk.id, scope="clerk_search")
        page = service.search_residents(g.clerk, query, page=service.page_number(args.get("page")))
    return render_template(
        "admin/residents.html",
        form={"name": name, "postcode": postcode, "birthdate": raw_birthdate},
        errors=errors,
        page=page,
    )


@bp.get(f"{HOME}/residents/new")
def new_resident() -> str:
    _allow("register")
    return render_template("admin/resident_new.html", form={}, errors={}, documents=_documents())


def _documents() -> list[tuple[str, Any]]:
    return [(name, DOCUMENT_NAMES[name]) for name in PROOFING_DOCUMENTS]


def _validate_proofing(form: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    """The identity check in person the clerk recorded: document type and day, at this office
    (``IDSERVER_OFFICE_NAME``); nothing if no document was chosen."""
    document = form.get("proofing_document", "")
    if not document:
        return {}
    if document not in PROOFING_DOCUMENTS:
        errors["proofing_document"] = _("Please choose a document from the list.")
        return {}
    if not form.get("proofed_on"):
        errors["proofed_on"] = _("Please enter the day the document was checked.")
        return {}
    try:
        day = _read_date(form["proofed_on"])
    except DateRefused:
        errors["proofed_on"] = _("Please enter the day as DD.MM.YYYY.")
        return {}
    if day > dt.date.today():
        errors["proofed_on"] = _("This day is in the future.")
        return {}
    return {
        "proofing_document": document,
        "proofed_on": day,
        "proofing_office": current_app.config["OFFICE_NAME"],
    }


def _validate_resident(form: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name in REQUIRED_FIELDS:
        if not form.get(name):
            errors[name] = _("Please fill in this field.")
        elif len(form[name]) > FIELD_LIMITS.get(name, 200):
            errors[name] = _("This is too long.")
    if "postcode" not in errors and not POSTCODE.fullmatch(form["postcode"]):
        errors["postcode"] = _("Please enter the postcode with its five digits.")
    if form.get("birthdate") and "birthdate" not in errors:
        try:
            birthdate = _read_date(form["birthdate"])
        except DateRefused as refused:
            errors["birthdate"] = str(refused)
        else:
            if birthdate > dt.date.today() or birthdate.year < 1880:
                errors["birthdate"] = _("This date of birth is not possible.")
            else:
                form["birthdate"] = birthdate.isoformat()
    email = form.get("email", "")
    if email and ("@" not in email or len(email) > FIELD_LIMITS["email"] or " " in email):
        errors["email"] = _("Please enter a valid e-mail address, or leave the field empty.")
    return errors


@bp.post(f"{HOME}/residents")
def register_resident() -> Any:
    _allow("register")
    form = {name: request.form.get(name, "").strip() for name in CITIZEN_FIELDS}
    errors = _validate_resident(form)
    proofing_form = {
        name: request.form.get(name, "").strip()[:20]
        for name in ("proofing_document", "proofed_on")
    }
    proofing = _validate_proofing(proofing_form, errors)
    if not errors:
        try:
            citizen = service.register_resident(g.clerk, **form, **proofing)
        except IdServerError as exc:
            errors["form"] = str(exc.description)
    if errors:
        page = render_template(
            "admin/resident_new.html",
            form={**form, **proofing_form},
            errors=errors,
            documents=_documents(),
        )
        return page, 400
    flash(_("The resident has been registered. You can now print an activation letter."))
    return redirect(f"{_home()}/residents/{citizen.id}", code=303)


@bp.get(f"{HOME}/residents/<citizen_id>")
def resident(citizen_id: str) -> str:
    _allow("view_resident")
    citizen = service.resident(citizen_id)
    service.record_resident_view(g.clerk, citizen)
    return render_template(
        "admin/resident.html",
        citizen=citizen,
        devices=service.devices_of(citizen),
        codes=service.activation_codes_of(citizen),
        device_state=service.device_state,
        code_state=service.code_state,
        languages=[(lang, LANGUAGE_NAMES[lang]) for lang in SUPPORTED_LANGUAGES],
        letter_language=LETTER_LANGUAGE,
        is_clerk=active_clerk(citizen.id) is not None,
        document_names=DOCUMENT_NAMES,
    )


@bp.post(f"{HOME}/residents/<citizen_id>/letter")
def activation_letter(citizen_id: str) -> Response:
    """Issue a new activation code and hand it out as a printable PDF letter (never stored)."""
    _allow("issue_letter")
    citizen = service.resident(citizen_id)
    language = request.form.get("language", LETTER_LANGUAGE)
    if language not in SUPPORTED_LANGUAGES:
        language = LETTER_LANGUAGE
    record, code = service.issue_letter_code(g.clerk, citizen)
    config = current_app.config
    pdf = activation_letter_pdf(
        citizen=citizen,
        code=code,
        activation_url=activation_url(record),
        expires_at=record.expires_at,
        sender=Sender(
            municipality=config["MUNICIPALITY_NAME"],
            office=config["OFFICE_NAME"],
            street=config["OFFICE_STREET"],
            postcode=config["OFFICE_POSTCODE"],
            city=config["OFFICE_CITY"],
            contact=config["OFFICE_CONTACT"],
        ),
        font_dir=config["LETTER_FONT_DIR"],
        language=language,
    )
    # Shown when the resident's page is next loaded (the console's script reloads it at once).
    flash(
        _(
            "A new activation letter has been issued. The code is valid until %(date)s.",
            date=format_datetime(record.expires_at, "short"),
        )
    )
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="activation-letter-{record.id[:8]}.pdf"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post(f"{HOME}/residents/<citizen_id>/revoke-devices")
def revoke_devices(citizen_id: str) -> Any:
    _allow("revoke_devices")
    citizen = service.resident(citizen_id)
    devices, sessions = service.revoke_all_devices(g.clerk, citizen)
    flash(
        _(
            "%(devices)s device(s) revoked and %(sessions)s session(s) ended.",
            devices=devices,
            sessions=sessions,
        )
    )
    return redirect(f"{_home()}/residents/{citizen.id}", code=303)


@bp.post(f"{HOME}/residents/<citizen_id>/delete")
def delete_resident(citizen_id: str) -> Any:
    _allow("delete_resident")
    citizen = service.resident(citizen_id)
    if request.form.get("confirm") != "yes":
        flash(_("Please tick the box to confirm the deletion."), "error")
        return redirect(f"{_home()}/residents/{citizen.id}", code=303)
    if service.mark_resident_deleted(g.clerk, citizen):
        days = current_app.config["RETENTION_DAYS"]
        flash(
            _(
                "The resident has been marked deleted. Their data will be erased in %(days)s days.",
                days=days,
            )
        )
    else:
        flash(_("This resident had already been deleted."))
    return redirect(f"{_home()}/residents/{citizen.id}", code=303)


# -- the audit log ------------------------------------------------------------------------
@bp.get(f"{HOME}/audit")
def audit() -> str:
    """The audit log, newest first, with the result of verifying the chain.

    From the newest signed checkpoint on, so a view costs the same however long the log grows;
    ``?verify=all`` walks the whole chain.
    """
    _allow("view_audit")
    event = request.args.get("event", "")
    event = event if event in EVENTS else ""
    subject = request.args.get("subject", "").strip()[:80]
    whole = request.args.get("verify") == "all"
    problems, checkpoint = (verify_chain(), None) if whole else verify_since_checkpoint()
    page = service.audit_page(
        g.clerk,
        event=event or None,
        subject=subject or None,
        page=service.page_number(request.args.get("page")),
    )
    return render_template(
        "admin/audit.html",
        page=page,
        problems=problems,
        checkpoint=checkpoint,
        events=sorted((str(EVENT_LABELS.get(name, name)), name) for name in EVENTS),
        describe_event=describe_event,
        describe_actor=describe_actor,
        form={"event": event, "subject": subject},
    )


# -- relying parties (administrators) -----------------------------------------------------
# The same changes as `idserver client …` (``oidc.clients``), audited with the clerk as actor.
def _clerk_actor() -> str:
    return f"clerk:{g.clerk.id}"


def _client_page(client_id: str) -> str:
    return f"{_home()}/clients/{client_id}"


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


@bp.get(f"{HOME}/clients")
def clients() -> str:
    """Every relying party with its state, deleted ones too."""
    _allow("manage_clients")
    return render_template(
        "admin/clients.html", clients=registry.list_clients(include_deleted=True)
    )


@bp.get(f"{HOME}/clients/<client_id>")
def client(client_id: str) -> str:
    _allow("manage_clients")
    registered = registry.find_client(client_id)
    return render_template("admin/client.html", registered=registered, form=None, error=None)


@bp.post(f"{HOME}/clients/<client_id>/addresses")
def update_client_addresses(client_id: str) -> Any:
    """Replace the redirect URIs and post-logout redirect URIs (one per line), checked as by
    ``idserver client update``; one invalid address and nothing is stored."""
    _allow("manage_clients")
    registered = registry.find_client(client_id)
    form = {
        "redirect_uris": request.form.get("redirect_uris", "")[:5000],
        "post_logout_redirect_uris": request.form.get("post_logout_redirect_uris", "")[:5000],
    }
    try:
        registry.update_client(
            registered.client_id,
            actor=_clerk_actor(),
            redirect_uris=_lines(form["redirect_uris"]),
            post_logout_redirect_uris=_lines(form["post_logout_redirect_uris"]),
        )
    except IdServerError as exc:
        error = _("These addresses cannot be saved: %(why)s", why=exc.description)
        page = render_template("admin/client.html", registered=registered, form=form, error=error)
        return page, 400
    flash(_("The addresses have been saved."))
    return redirect(_client_page(registered.client_id), code=303)


@bp.post(f"{HOME}/clients/<client_id>/disable")
def disable_client(client_id: str) -> Any:
    _allow("manage_clients")
    registered = registry.disable_client(client_id, actor=_clerk_actor())
    flash(_("The service has been disabled. Its logins and tokens no longer work."))
    return redirect(_client_page(registered.client_id), code=303)


@bp.post(f"{HOME}/clients/<client_id>/enable")
def enable_client(client_id: str) -> Any:
    _allow("manage_clients")
    registered = registry.enable_client(client_id, actor=_clerk_actor())
    flash(_("The service has been enabled again."))
    return redirect(_client_page(registered.client_id), code=303)


@bp.post(f"{HOME}/clients/<client_id>/rotate-secret")
def rotate_client_secret(client_id: str) -> Any:
    """A new client secret, shown on this one answer only (never stored in clear)."""
    _allow("manage_clients")
    registered = registry.find_client(client_id)
    if request.form.get("confirm") != "yes":
        flash(_("Please tick the box to confirm the new secret."), "error")
        return redirect(_client_page(registered.client_id), code=303)
    try:
        secret = registry.rotate_client_secret(registered.client_id, actor=_clerk_actor())
    except IdServerError:
        flash(_("This service signs its requests with its own keys and has no secret."), "error")
        return redirect(_client_page(registered.client_id), code=303)
    response = Response(
        render_template("admin/client_secret.html", registered=registered, secret=secret)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post(f"{HOME}/clients/<client_id>/delete")
def delete_client(client_id: str) -> Any:
    """Out of service for good; the row, the citizens' consent records and the audit log stay."""
    _allow("manage_clients")
    registered = registry.find_client(client_id)
    if request.form.get("confirm") != "yes":
        flash(_("Please tick the box to confirm the deletion."), "error")
        return redirect(_client_page(registered.client_id), code=303)
    registry.delete_client(registered.client_id, actor=_clerk_actor())
    flash(_("The service has been deleted."))
    return redirect(_client_page(registered.client_id), code=303)
