"""The portals' own errors, and the one place that turns any error into a friendly page."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask import render_template
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException

__all__ = ["CsrfRejected", "LoginFailed", "PortalError", "init_app"]

log = logging.getLogger(__name__)


class PortalError(Exception):
    """A refusal with a stable machine code and a message for the citizen."""

    status = 400
    error = "bad_request"
    title = _l("That did not work")

    def __init__(self, message: Any, *, error: str | None = None, status: int | None = None):
        super().__init__(str(message))
        self.message = message
        if error is not None:
            self.error = error
        if status is not None:
            self.status = status


class CsrfRejected(PortalError):
    """A form came without this session's CSRF token (expired session or a forged request)."""

    status = 400
    error = "csrf_rejected"
    title = _l("The form has expired")


class LoginFailed(PortalError):
    """Bürger-ID's answer to a login could not be accepted."""

    status = 400
    error = "login_failed"
    title = _l("Login failed")


HTTP_MESSAGES = {
    400: (_l("Bad request"), _l("The request could not be processed.")),
    403: (_l("Not allowed"), _l("You may not open this page.")),
    404: (_l("Page not found"), _l("This page does not exist (any more).")),
    405: (_l("Not allowed"), _l("This page cannot be used like that.")),
    413: (_l("Too large"), _l("What you sent is too large.")),
}


def _page(title: Any, message: Any, status: int, error: str) -> tuple[str, int]:
    return render_template(
        "error.html", title=title, message=message, status=status, error=error
    ), status


def init_app(app: Flask) -> None:
    @app.errorhandler(PortalError)
    def _portal_error(exc: PortalError) -> tuple[str, int]:
        return _page(exc.title, exc.message, exc.status, exc.error)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if exc.code is None or exc.code < 400:
            return exc
        title, message = HTTP_MESSAGES.get(
            exc.code, (_l("Error"), _l("The request could not be processed."))
        )
        return _page(title, message, exc.code, exc.name.lower().replace(" ", "_"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[str, int]:
        log.exception("unexpected error")
        return _page(
            _l("Something went wrong"),
            _l("An error occurred on our side. Please try again later."),
            500,
            "server_error",
        )
