"""The activation page a resident opens on the phone from the letter, and the answer to a
finished enrolment (the phone API's and the pairing page's alike)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request

from ..web import no_store
from .service import Enrolment

bp = Blueprint("citizens", __name__)


@bp.get("/activate/<activation_id>")
def activate(activation_id: str) -> Any:
    """The page; the letter's link carries the code in the fragment, which its script reads.

    A link from a letter printed before the code moved to the fragment (``?code=…``) is sent
    on with the code in the fragment, so the code is not kept in the page or its address.
    """
    activation_id = activation_id[:36]
    code = request.args.get("code")
    if code is not None:
        kept = {key: value for key, value in request.args.items() if key != "code"}
        target = f"{current_app.config['ISSUER']}/activate/{quote(activation_id, safe='')}"
        target += (f"?{urlencode(kept)}" if kept else "") + f"#{urlencode({'code': code[:32]})}"
        moved = redirect(target, code=303)
        moved.headers["Cache-Control"] = "no-store"
        return moved
    return render_template("citizens/activate.html", activation_id=activation_id)


def enrolment_response(enrolment: Enrolment) -> Response:
    """201 with the new device and its one-time revocation code (activation and pairing alike)."""
    device = enrolment.credential
    response = jsonify(
        device={"id": device.id, "name": device.name, "kind": device.kind},
        revocation_code=enrolment.revocation_code,
    )
    response.status_code = 201
    return no_store(response)
