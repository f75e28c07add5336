"""``/api/v1``: enrolment and login approval for phones, as JSON.

Every request body is a JSON object; every refusal is ``{"error", "error_description"}``
with a 4xx status. The OpenAPI document is served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from flask_babel import lazy_gettext as _l

from ..citizens import service as citizens
from ..citizens.views import enrolment_response
from ..crosslogin import service as crosslogin
from ..crosslogin.models import LoginState
from ..errors import IdServerError
from ..web import client_address
from ..web import no_store

bp = Blueprint("api", __name__, url_prefix="/api/v1")

BINDING_HEADER = "X-Login-Binding"


def _body() -> dict[str, Any]:
    if not request.is_json:
        raise IdServerError(_l("Please send a JSON object."), status=415)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise IdServerError(_l("Please send a JSON object."))
    return body


@bp.post("/enrolments")
def begin_enrolment() -> Response:
    body = _body()
    started = citizens.begin_enrolment(
        body.get("activation_id"), body.get("code"), address=client_address()
    )
    return no_store(jsonify(started))


@bp.post("/enrolments/<enrolment_id>")
def finish_enrolment(enrolment_id: str) -> Response:
    body = _body()
    enrolment = citizens.finish_enrolment(
        enrolment_id,
        body.get("credential"),
        name=body.get("name"),
        via="activation",
        redeem=citizens.use_activation_code,
    )
    return enrolment_response(enrolment)


@bp.post("/logins/<login_id>/scan")
def scan(login_id: str) -> Response:
    """Open a login from a scanned QR frame; the first phone gets the binding."""
    body = _body()
    tx, binding = crosslogin.mark_scanned(
        login_id,
        t=body.get("t"),
        h=body.get("h"),
        binding=body.get("binding"),
        phone_ip=client_address(),
    )
    return no_store(
        jsonify(
            binding=binding,
            status=tx.state,
            context=crosslogin.display_context(tx),
            warnings=crosslogin.phone_warnings(tx),
        )
    )


@bp.get("/logins/<login_id>")
def read_login(login_id: str) -> Response:
    """The context the phone shows; never the number."""
    tx = crosslogin.for_phone(login_id, request.headers.get(BINDING_HEADER))
    return no_store(
        jsonify(
            status=tx.state,
            context=crosslogin.display_context(tx),
            warnings=crosslogin.phone_warnings(tx),
        )
    )


@bp.post("/logins/<login_id>/challenge")
def challenge(login_id: str) -> Response:
    body = _body()
    issued = crosslogin.issue_challenge(
        login_id, binding=body.get("binding"), number=body.get("number")
    )
    return no_store(jsonify(issued))


@bp.post("/logins/<login_id>/approve")
def approve(login_id: str) -> Response:
    body = _body()
    tx = crosslogin.approve(
        login_id,
        binding=body.get("binding"),
        number=body.get("number"),
        credential=body.get("credential"),
    )
    return no_store(jsonify(status=tx.state))


@bp.post("/logins/<login_id>/deny")
def deny(login_id: str) -> Response:
    body = _body()
    crosslogin.deny(login_id, binding=body.get("binding"))
    return no_store(jsonify(status=LoginState.DENIED))


@bp.get("/openapi.json")
def openapi() -> Response:
    path = os.path.join(os.path.dirname(__file__), "openapi.json")
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    return jsonify(document)
