"""The clerks package's errors (operator commands; English): one class per code."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from ..errors import IdServerError
from ..errors import NotFound

__all__ = ["ClerkNotFound", "InvalidClerk", "ResidentIsClerk"]


class InvalidClerk(IdServerError):
    """A clerk needs a known role and an e-mail address; the description says which is wrong."""

    error = "invalid_clerk"


class ClerkNotFound(NotFound):
    description = "no such clerk"


class ResidentIsClerk(IdServerError):
    """A clerk's own resident record stays while the clerk account is active."""

    status = 409
    error = "resident_is_clerk"
    description = _l("This resident is a clerk. The clerk account must be disabled first.")
