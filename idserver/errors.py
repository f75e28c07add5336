"""The project's own errors, and the one place that turns them into responses.

Every refusal carries a stable machine code (``error``) and a human message
(``error_description``, German or English through Flask-Babel). APIs answer JSON; browsers get a
page that says what happened and what to do next.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask import Response
from flask import jsonify
from flask import make_response
from flask import render_template
from flask import request
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from .logs import current_route

log = logging.getLogger(__name__)


class IdServerError(Exception):
    """Base class: an ``error`` code, an HTTP status and a human description."""

    status: int = 400
    error: str = "invalid_request"
    description: Any = _l("The request could not be processed.")

    def __init__(
        self, description: Any = None, *, error: str | None = None, status: int | None = None
    ) -> None:
        if description is not None:
            self.description = description
        if error is not None:
            self.error = error
        if status is not None:
            self.status = status
        super().__init__(f"{self.error}: {self.description}")


class NotFound(IdServerError):
    status = 404
    error = "not_found"
    description = _l("This page or object does not exist (any more).")


class ActivationRejected(IdServerError):
    """An activation code was wrong, used, expired or blocked."""

    error = "invalid_activation_code"


class EnrolmentRejected(IdServerError):
    """A WebAuthn registration was refused (WebAuthn L3 §7.1)."""

    error = "enrolment_rejected"


class LoginRejected(IdServerError):
    """A login transaction or WebAuthn assertion was refused (WebAuthn L3 §7.2)."""

    error = "login_rejected"


class RateLimited(IdServerError):
    status = 429
    error = "too_many_requests"
    description = _l("Too many attempts. Please wait a while and try again.")


class TemporarilyUnavailable(IdServerError):
    """A service this request needs (the database) is briefly out of reach: ask again soon.

    RFC 9110 §15.6.4 (503, ``Retry-After``); the code is OAuth's (RFC 6749 §4.1.2.1). Nothing
    was changed: the request's transaction did not commit.
    """

    status = 503
    error = "temporarily_unavailable"
    description = _l("The service is briefly unavailable. Please try again in a few seconds.")
    retry_after = 5


def is_transient(exc: BaseException) -> bool:
    """A database error that says "not now" rather than "wrong": lost or refused connections,
    a restart, a deadlock or lock timeout (SQLAlchemy's ``OperationalError``/``InterfaceError``
    and any error after which the connection was invalidated)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.endpoint in OAUTH_JSON_ENDPOINTS:
        return True
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


# Machine-to-machine endpoints: their clients read JSON errors (RFC 6749 §5.2, RFC 6750 §3).
OAUTH_JSON_ENDPOINTS = (
    "oidc.token",
    "oidc.revoke",
    "oidc.introspect",
    "oidc.userinfo",
    "oidc.pushed_authorization_request",
)

# Werkzeug's own descriptions are English only: the statuses a person can meet get ours.
HTTP_DESCRIPTIONS = {
    404: NotFound.description,
    405: _l("This address cannot be used this way. Please go back and try again."),
    413: _l("The data sent is too large."),
}


def error_response(error: str, description: Any, status: int) -> Response | tuple[Any, int]:
    if wants_json():
        response = jsonify(error=error, error_description=str(description))
        response.status_code = status
        response.headers["Cache-Control"] = "no-store"
        return response
    page = render_template("error.html", error=error, description=description, status=status)
    return page, status


def init_app(app: Flask) -> None:
    @app.errorhandler(IdServerError)
    def _own(exc: IdServerError) -> Any:
        log.info("refused %s %s: %s", request.method, current_route(), exc.error)
        return error_response(exc.error, exc.description, exc.status)

    @app.errorhandler(DBAPIError)
    def _database(exc: DBAPIError) -> Any:
        if not is_transient(exc):
            return _unexpected(exc)
        # The driver's message only: the statement and its parameters may hold secrets.
        reason = exc.orig if exc.orig is not None else type(exc).__name__
        log.warning("database unavailable on %s %s: %s", request.method, request.path, reason)
        unavailable = TemporarilyUnavailable()
        response = make_response(
            error_response(unavailable.error, unavailable.description, unavailable.status)
        )
        response.headers["Retry-After"] = str(unavailable.retry_after)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        code = exc.code or 500
        names = {404: "not_found", 405: "method_not_allowed", 429: "too_many_requests"}
        error = names.get(code, "invalid_request" if code < 500 else "server_error")
        description = HTTP_DESCRIPTIONS.get(code, exc.description or exc.name)
        return error_response(error, description, code)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, current_route())
        return error_response("server_error", _l("Something went wrong on our side."), 500)
