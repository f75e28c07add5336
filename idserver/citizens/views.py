"""The activation page a resident opens on the phone from the letter."""

from __future__ import annotations

from flask import Blueprint
from flask import render_template
from flask import request

bp = Blueprint("citizens", __name__)


@bp.get("/activate/<activation_id>")
def activate(activation_id: str) -> str:
    return render_template(
        "citizens/activate.html",
        activation_id=activation_id[:36],
        code=request.args.get("code", "")[:32],
    )
