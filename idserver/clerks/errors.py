"""The clerks package's errors (operator commands; English): one class per code."""

from __future__ import annotations

from ..errors import IdServerError
from ..errors import NotFound

__all__ = ["ClerkNotFound", "InvalidClerk"]


class InvalidClerk(IdServerError):
    """A clerk needs a known role and an e-mail address; the description says which is wrong."""

    error = "invalid_clerk"


class ClerkNotFound(NotFound):
    description = "no such clerk"
